//! The REST API (axum): one router per resource, one error type
//! ([`error::ApiError`]), API-key auth on every `/v1` route. Handlers
//! validate (through `domain`) and persist (through `store`); they make no
//! dialing decisions. Every error response, including unknown routes, wrong
//! methods and axum's own rejections, has the API's error shape.

pub mod auth;
pub mod calls;
pub mod campaigns;
pub mod conversations;
mod csv_lines;
pub mod dnc;
pub mod documents;
pub mod error;
pub mod events;
pub mod extract;
pub mod import;
pub mod messages;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod suppressions;
pub mod targets;
pub mod templates;
pub mod tracking;
pub mod trunks;
pub mod twilio;
pub mod unsubscribe;
pub mod webhooks;
pub mod whatsapp_webhook;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{middleware, Json, Router};
use serde_json::json;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::UtoipaMethodRouterExt as _;
use utoipa_axum::routes;

use self::auth::AuthState;
use self::error::ApiError;
use self::openapi::ApiRouter;
use crate::store::Store;

/// What the API needs from the rest of herald.
#[derive(Clone)]
pub struct ApiDeps {
    pub store: Store,
    /// Names of the configured trunks (campaigns must name one).
    pub trunks: Arc<Vec<String>>,
    pub json_body_limit: usize,
    pub csv_body_limit: u64,
    /// SHA-256 of HERALD_BOOTSTRAP_API_KEY, when set.
    pub bootstrap_key_hash: Option<Arc<str>>,
    pub events: crate::events::EventBus,
    /// Agents and the live calls' controls.
    pub runtime: crate::agent::AgentRuntime,
    /// Ends long-lived responses (event streams) at shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Keep-alive interval of event streams.
    pub sse_keep_alive: std::time::Duration,
    /// Notified when webhooks are created or deleted.
    pub webhook_changes: Arc<tokio::sync::Notify>,
    pub metrics: metrics::MetricsSources,
    /// Whether /metrics needs an API key.
    pub metrics_require_api_key: bool,
    /// The message channels' defaults and their senders' wake-ups.
    pub messaging: crate::message::service::Messaging,
    /// The WhatsApp webhook's settings, when the channel runs.
    pub whatsapp_webhook: Option<crate::message::channels::WhatsappWebhook>,
    /// Where contacts' messages go (conversations, keywords).
    pub inbox: crate::notify::inbox::Inbox,
}

pub fn router(deps: ApiDeps) -> Router {
    let metrics_need_key = deps.metrics_require_api_key;
    let cell = openapi::DocCell::default();
    let (api, doc) = documented(&deps)
        .merge(openapi::routes(cell.clone()))
        .split_for_parts();
    cell.set(&openapi::finish(doc, metrics_need_key));
    let auth = AuthState::new(deps.store.clone(), deps.bootstrap_key_hash.clone());
    api.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(deps.json_body_limit))
        .layer(middleware::from_fn(error::json_errors))
        .layer(TraceLayer::new_for_http())
        // The console answers in HTML, outside the JSON error layer.
        .merge(crate::ui::router(crate::ui::UiState {
            store: deps.store.clone(),
            auth,
            events: deps.events.clone(),
            trunks: deps.trunks.clone(),
            runtime: deps.runtime.clone(),
            csv_limit: deps.csv_body_limit,
            shutdown: deps.shutdown.clone(),
            sources: deps.metrics.clone(),
            messaging: deps.messaging.clone(),
        }))
}

/// Every JSON route, with its description.
fn documented(deps: &ApiDeps) -> ApiRouter {
    let deps = deps.clone();
    let auth = AuthState::new(deps.store.clone(), deps.bootstrap_key_hash.clone());
    let notify = notifications::NotifyState {
        store: deps.store.clone(),
        messaging: deps.messaging.clone(),
        trunks: deps.trunks.clone(),
        transports: deps.metrics.transports.clone(),
    };
    // The notification platform's own paths, for clients written against it.
    let seed = (notifications::router(notify.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            auth::require_api_key,
        ));
    let v1 = ApiRouter::new()
        .merge(documents::outdials(deps.store.clone()))
        .merge(documents::outplans(deps.store.clone()))
        .merge(documents::agents(deps.store.clone(), deps.runtime.clone()))
        .merge(targets::router(
            deps.store.clone(),
            deps.json_body_limit,
            deps.csv_body_limit,
        ))
        .merge(campaigns::router(
            deps.store.clone(),
            deps.trunks.clone(),
            deps.events.clone(),
        ))
        .merge(dnc::router(deps.store.clone()))
        .merge(trunks::router(deps.metrics.clone()))
        .merge(calls::router(
            deps.store.clone(),
            deps.trunks.clone(),
            deps.runtime.clone(),
        ))
        .merge(events::router(
            deps.store.clone(),
            deps.sse_keep_alive,
            deps.shutdown.clone(),
        ))
        .merge(webhooks::router(
            deps.store.clone(),
            deps.webhook_changes.clone(),
        ))
        .merge(templates::router(deps.store.clone()))
        .merge(messages::router(deps.store.clone(), deps.messaging.clone()))
        .merge(suppressions::router(deps.store.clone()))
        .merge(notifications::router(notify.clone()))
        .merge(conversations::router(
            deps.store.clone(),
            deps.messaging.clone(),
        ))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            auth::require_api_key,
        ));
    let mut scrape = metrics::router(deps.store.clone(), deps.metrics.clone());
    if deps.metrics_require_api_key {
        scrape = scrape.layer(middleware::from_fn_with_state(
            auth.clone(),
            auth::require_api_key,
        ));
    }
    ApiRouter::new()
        .routes(routes!(healthz).with_state(deps.store.clone()))
        .merge(scrape)
        .merge(unsubscribe::router(deps.store.clone()))
        .merge(tracking::router(deps.store.clone()))
        .merge(whatsapp_webhook::router(
            deps.inbox.clone(),
            deps.whatsapp_webhook.clone(),
        ))
        .nest("/v1", v1)
        .nest(openapi::SEED_PREFIX, seed)
        .merge(twilio::router(
            auth.clone(),
            deps.store.clone(),
            deps.runtime.clone(),
        ))
}

/// Whether herald and its database answer.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Up, with its database.", body = openapi::schemas::Health),
        (status = 503, description = "The database does not answer.", body = openapi::schemas::Health)))]
async fn healthz(State(store): State<Store>) -> impl IntoResponse {
    match store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
    }
}
