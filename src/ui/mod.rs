//! The manager console under `/ui`: server-rendered pages (askama templates
//! in `src/ui/templates`, checked at compile time) with htmx, its files
//! vendored in `src/ui/assets` and served from the binary under names that
//! carry a hash of their content (cached for a year, replaced by a new name
//! when they change).
//!
//! Login exchanges an API key for a session ([`crate::store::ui_sessions`]):
//! an HttpOnly, SameSite=Strict cookie (Secure when the request came over
//! HTTPS through a proxy) that names the key; the key is checked on every
//! request the way `X-API-Key` is, so revoking it ends its sessions. Every
//! mutation carries the session's CSRF token. Actions go through the same
//! store moves as REST.

mod calls;
mod chart;
mod conversations;
mod history;
mod lists;
mod live;
mod messages;
mod new_campaign;
mod pages;
mod settings;
mod status_text;
mod template_editor;

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::Digest;

use crate::api::auth::{live_key_name, AuthState};
use crate::api::error::ApiError;
use crate::store::ui_sessions::UiSession;
use crate::store::Store;

/// The session cookie's name.
pub const COOKIE: &str = "herald_session";
/// How long a session lasts after login.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;

#[derive(Clone)]
pub struct UiState {
    pub store: Store,
    pub auth: AuthState,
    pub events: crate::events::EventBus,
    /// The configured trunks' names.
    pub trunks: std::sync::Arc<Vec<String>>,
    /// Builds and keeps agents made from the console.
    pub runtime: crate::agent::AgentRuntime,
    /// Largest CSV upload, in bytes (`api.csv_body_limit_bytes`).
    pub csv_limit: u64,
    /// Ends the console's event streams when herald stops.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The message channels (the worker panel sends through them).
    pub messaging: crate::message::service::Messaging,
    /// Live counts of trunks and agents, and the trunks' limits.
    pub sources: crate::api::metrics::MetricsSources,
}

pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/campaigns") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/campaigns") }))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/campaigns", get(pages::campaigns))
        .route(
            "/ui/campaigns/new",
            get(new_campaign::new_form).post(new_campaign::create),
        )
        .route("/ui/campaigns/{id}", get(live::campaign_page))
        .route("/ui/campaigns/{id}/stream", get(live::stream))
        .route("/ui/campaigns/{id}/targets", get(history::targets))
        .route("/ui/targets/{id}", get(history::target))
        .route("/ui/campaigns/{id}/pacing", post(live::pacing))
        .route("/ui/campaigns/{id}/{verb}", post(pages::campaign_action))
        .route(
            "/ui/lists",
            get(lists::lists)
                .post(lists::upload)
                // The upload's size is bounded by `csv_limit` as it is read.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/ui/calls", get(calls::calls))
        .route("/ui/calls/{id}/reschedule", post(calls::reschedule))
        .route("/ui/calls/{id}/cancel", post(calls::cancel))
        .route("/ui/messages", get(messages::messages))
        .route("/ui/templates", post(template_editor::create))
        .route("/ui/templates/new", get(template_editor::new_template))
        .route("/ui/templates/preview", post(template_editor::preview_form))
        .route(
            "/ui/templates/{id}",
            get(template_editor::template).post(template_editor::update),
        )
        .route(
            "/ui/templates/{id}/{verb}",
            post(template_editor::set_status),
        )
        .route(
            "/ui/conversations",
            get(conversations::conversations).post(conversations::open),
        )
        .route("/ui/conversations/window", get(conversations::window))
        .route("/ui/conversations/{id}", get(conversations::conversation))
        .route(
            "/ui/conversations/{id}/thread",
            get(conversations::thread_part),
        )
        .route("/ui/conversations/{id}/reply", post(conversations::reply))
        .route("/ui/conversations/{id}/close", post(conversations::close))
        .route("/ui/settings", get(settings::settings))
        .route("/ui/settings/keys", post(settings::create_key))
        .route("/ui/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/ui/settings/dnc", post(settings::dnc))
        .route("/ui/assets/{name}", get(asset))
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// One vendored or own file served to the browser.
struct Asset {
    name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The served names of the console's files.
pub struct AssetNames {
    pub css: String,
    pub htmx: String,
    pub sse: String,
    pub js: String,
    pub uplot: String,
    pub uplot_css: String,
    pub chart: String,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    let hashed = |stem: &str, ext: &str, bytes: &'static [u8], content_type| Asset {
        name: format!(
            "{stem}.{}.{ext}",
            &hex::encode(sha2::Sha256::digest(bytes))[..10]
        ),
        content_type,
        bytes,
    };
    vec![
        hashed(
            "console",
            "css",
            include_bytes!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        // htmx 2.0.11 from the npm package `htmx.org` (licence: assets/htmx.LICENSE).
        hashed(
            "htmx-2.0.11",
            "min.js",
            include_bytes!("assets/htmx-2.0.11.min.js"),
            "text/javascript; charset=utf-8",
        ),
        // Its SSE extension 2.2.4, from `htmx-ext-sse` (assets/htmx-ext-sse.LICENSE).
        hashed(
            "htmx-ext-sse-2.2.4",
            "min.js",
            include_bytes!("assets/htmx-ext-sse-2.2.4.min.js"),
            "text/javascript; charset=utf-8",
        ),
        // Times in the viewer's zone too.
        hashed(
            "console",
            "js",
            include_bytes!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        // uPlot 1.6.32 from the npm package `uplot` (assets/uPlot.LICENSE).
        hashed(
            "uPlot-1.6.32",
            "iife.min.js",
            include_bytes!("assets/uPlot-1.6.32.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        hashed(
            "uPlot-1.6.32",
            "min.css",
            include_bytes!("assets/uPlot-1.6.32.min.css"),
            "text/css; charset=utf-8",
        ),
        // The live page's chart, drawn with uPlot from the event stream.
        hashed(
            "chart",
            "js",
            include_bytes!("assets/chart.js"),
            "text/javascript; charset=utf-8",
        ),
    ]
});

pub fn asset_names() -> AssetNames {
    AssetNames {
        css: ASSETS[0].name.clone(),
        htmx: ASSETS[1].name.clone(),
        sse: ASSETS[2].name.clone(),
        js: ASSETS[3].name.clone(),
        uplot: ASSETS[4].name.clone(),
        uplot_css: ASSETS[5].name.clone(),
        chart: ASSETS[6].name.clone(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, Html("no such file")).into_response(),
    }
}

/// The cookie's token, if the request carries one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 200)
}

/// A request's live session: its cookie's session, unexpired, opened with a
/// key that is still live.
pub struct Session {
    pub token: String,
    pub row: UiSession,
}

pub async fn session(s: &UiState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = cookie_token(headers) else {
        return Ok(None);
    };
    let Some(row) = s.store.ui_session(&token, now_ms()).await? else {
        return Ok(None);
    };
    // Looked up every time (no cache): a revoked key's pages close at once.
    if live_key_name(&s.auth, &row.key_hash).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(Session { token, row }))
}

/// Whether the request's session cookie names a live session of a live
/// key (the API's event streams take it in place of `X-API-Key`).
pub async fn cookie_opens(auth: &AuthState, headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(token) = cookie_token(headers) else {
        return Ok(false);
    };
    let Some(row) = auth.store.ui_session(&token, now_ms()).await? else {
        return Ok(false);
    };
    Ok(live_key_name(auth, &row.key_hash).await?.is_some())
}

/// The `Set-Cookie` value of a new session (or of a cleared one, `token`
/// empty).
fn session_cookie(headers: &HeaderMap, token: &str) -> HeaderValue {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_TTL_MS / 1000
    };
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie text is ASCII")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An epoch-millisecond time as the console's lists show it, in UTC.
fn utc_time(ms: i64) -> String {
    crate::store::from_ms(ms)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A urlencoded form's fields (the last of a repeated name wins).
fn form_values(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}
