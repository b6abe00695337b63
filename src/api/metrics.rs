//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`],
//! plus gauges read at scrape time (target counts per campaign and state,
//! webhook outbox depth, calls in flight, agent sessions in use).

use utoipa_axum::routes;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::error::ApiResult;
use super::openapi::ApiRouter;
use crate::campaign::trunks::AgentSessions;
use crate::message::health::HealthBoard;
use crate::message::transport::Transport;
use crate::metrics::{HealthGauge, ScrapeGauges};
use crate::store::Store;

/// A trunk's calls in flight, by its name.
pub type TrunkLive = dyn Fn(&str) -> Option<u32> + Send + Sync;

/// Where the scrape-time gauges come from.
#[derive(Clone)]
pub struct MetricsSources {
    /// Calls in flight on this node.
    pub live_calls: Arc<dyn Fn() -> usize + Send + Sync>,
    /// Calls in flight on a trunk (`None` where telephony does not count
    /// them per trunk).
    pub trunk_live: Arc<TrunkLive>,
    /// Each configured trunk's limits: (max_concurrent_calls, max_calls_per_second).
    pub trunk_limits: Arc<std::collections::BTreeMap<String, (u32, u32)>>,
    /// A registering trunk's registration.
    pub trunk_registration: Arc<TrunkRegistration>,
    /// What `GET /v1/trunks` shows of each trunk's configuration.
    pub trunk_view: Arc<std::collections::BTreeMap<String, super::trunks::TrunkView>>,
    pub agents: AgentSessions,
    /// (channel, transport) of each message channel that runs.
    pub transports: Arc<Vec<(&'static str, Arc<dyn Transport>)>>,
    /// The channels' and providers' health.
    pub health: HealthBoard,
}

/// A trunk's registration, by name (`None`: it does not register).
pub type TrunkRegistration =
    dyn Fn(&str) -> Option<crate::sip::register::Registration> + Send + Sync;

#[derive(Clone)]
struct MetricsState {
    store: Store,
    sources: MetricsSources,
}

pub fn router(store: Store, sources: MetricsSources) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(scrape))
        .with_state(MetricsState { store, sources })
}

/// Each channel's health, then each of its failover providers'.
fn health_gauges(sources: &MetricsSources) -> Vec<HealthGauge> {
    let now = chrono::Utc::now().timestamp_millis();
    let gauge = |channel: &str,
                 provider: Option<&str>,
                 transport: &str,
                 ready: bool,
                 healthy: Option<bool>| {
        let key = match provider {
            Some(p) => format!("{channel}/{p}"),
            None => channel.to_string(),
        };
        let v = sources.health.snapshot(&key, now);
        HealthGauge {
            channel: channel.to_string(),
            provider: provider.map(str::to_string),
            transport: transport.to_string(),
            ready,
            healthy: healthy.unwrap_or(v["healthy"] == true),
            failure_ratio_5m: v["failure_rate_5m"].as_f64().unwrap_or(0.0),
            last_success: v["last_success_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis() as f64 / 1000.0),
        }
    };
    let mut out = Vec::new();
    for (c, t) in sources.transports.iter() {
        out.push(gauge(c, None, t.name(), t.ready(), None));
        for p in t.providers() {
            out.push(gauge(c, Some(&p.name), p.transport, p.ready, Some(p.up)));
        }
    }
    out
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String)))]
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
        message_health: health_gauges(&s.sources),
        trunk_registered: s
            .sources
            .trunk_limits
            .keys()
            .filter_map(|t| {
                let r = (s.sources.trunk_registration)(t)?;
                Some((
                    t.clone(),
                    r.state == crate::sip::register::RegState::Registered,
                ))
            })
            .collect(),
    };
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.store.metrics().render(&gauges),
    ))
}
