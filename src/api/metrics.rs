//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`],
//! plus gauges read at scrape time (target counts per campaign and state,
//! webhook outbox depth, calls in flight, agent sessions in use).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::error::ApiResult;
use crate::campaign::trunks::AgentSessions;
use crate::message::transport::Transport;
use crate::metrics::ScrapeGauges;
use crate::store::Store;

/// Where the scrape-time gauges come from.
#[derive(Clone)]
pub struct MetricsSources {
    /// Calls in flight on this node.
    pub live_calls: Arc<dyn Fn() -> usize + Send + Sync>,
    pub agents: AgentSessions,
    /// (channel, transport) of each message channel that runs.
    pub transports: Arc<Vec<(&'static str, Arc<dyn Transport>)>>,
}

#[derive(Clone)]
struct MetricsState {
    store: Store,
    sources: MetricsSources,
}

pub fn router(store: Store, sources: MetricsSources) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(MetricsState { store, sources })
}

async fn scrape(State(s): State<MetricsState>) -> ApiResult<impl IntoResponse> {
    let gauges = ScrapeGauges {
        calls_in_flight: (s.sources.live_calls)() as u64,
        agent_sessions: s
            .sources
            .agents
            .snapshot()
            .into_iter()
            .map(|(a, n)| (a, u64::from(n)))
            .collect(),
        campaign_targets: s.store.campaign_target_counts().await?,
        webhook_outbox: s.store.webhook_outbox_depths().await?,
        messages: s.store.message_counts().await?,
        message_transports: s
            .sources
            .transports
            .iter()
            .map(|(c, t)| (c.to_string(), t.name().to_string(), t.ready()))
            .collect(),
    };
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.store.metrics().render(&gauges),
    ))
}
