//! The console's pages: login and logout, the campaigns list and its
//! control buttons.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{asset_names, now_ms, session, session_cookie, AssetNames, Session, UiState};
use crate::api::auth::live_key_name;
use crate::api::campaigns::{move_campaign, STATUSES};
use crate::api::error::ApiError;
use crate::domain::{CampaignStatus, StatusCause, StatusChange, StatusMove};
use crate::store::apikeys::hash_key;
use crate::store::PageRequest;

/// Campaigns on one page of the list.
const PAGE_SIZE: i64 = 100;

#[derive(Template)]
#[template(path = "login.html", config = "src/ui/askama.toml")]
struct LoginPage {
    assets: AssetNames,
    error: Option<String>,
}

/// A control button of a campaign.
pub(super) struct Action {
    pub verb: &'static str,
    pub label: &'static str,
    pub class: &'static str,
    pub confirm: bool,
}

const ACTIONS: [(StatusMove, Action); 5] = [
    (
        StatusMove::Start,
        Action {
            verb: "start",
            label: "Start",
            class: "",
            confirm: false,
        },
    ),
    (
        StatusMove::Pause,
        Action {
            verb: "pause",
            label: "Pause",
            class: "",
            confirm: false,
        },
    ),
    (
        StatusMove::Resume,
        Action {
            verb: "resume",
            label: "Resume",
            class: "",
            confirm: false,
        },
    ),
    (
        StatusMove::Stop,
        Action {
            verb: "stop",
            label: "Stop",
            class: "danger",
            confirm: true,
        },
    ),
    (
        StatusMove::Stop,
        Action {
            verb: "force-stop",
            label: "Force stop",
            class: "danger",
            confirm: true,
        },
    ),
];

/// The control buttons a campaign in `status` shows.
pub(super) fn actions_for(status: &str) -> Vec<&'static Action> {
    let current = CampaignStatus::parse(status);
    ACTIONS
        .iter()
        .filter(|(m, _)| current.is_some_and(|st| m.allowed(st)))
        .map(|(_, a)| a)
        .collect()
}

struct CampaignItem {
    id: String,
    name: String,
    status: String,
    reason: Option<String>,
    updated: String,
    updated_iso: String,
    actions: Vec<&'static Action>,
}

#[derive(Template)]
#[template(path = "campaigns.html", config = "src/ui/askama.toml")]
struct CampaignsPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    notice: Option<String>,
    error: Option<String>,
    filter: String,
    statuses: Vec<(&'static str, bool)>,
    campaigns: Vec<CampaignItem>,
    next: Option<String>,
}

pub(super) fn render(t: &impl Template) -> Result<Html<String>, ApiError> {
    t.render().map(Html).map_err(ApiError::internal)
}

/// A page with a form: 422 when it shows errors beside its fields, else 200.
pub(super) fn form_page(t: &impl Template, invalid: bool) -> Result<Response, ApiError> {
    let status = if invalid {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, render(t)?).into_response())
}

pub(super) fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

pub(super) async fn login_page(
    State(s): State<UiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if session(&s, &headers).await?.is_some() {
        return Ok(Redirect::to("/ui/campaigns").into_response());
    }
    Ok(render(&LoginPage {
        assets: asset_names(),
        error: None,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    key: String,
}

pub(super) async fn login(
    State(s): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let key = f.key.trim();
    let hash = hash_key(key);
    let name = if key.is_empty() {
        None
    } else {
        live_key_name(&s.auth, &hash).await?
    };
    let Some(name) = name else {
        let page = render(&LoginPage {
            assets: asset_names(),
            error: Some("That API key is not valid: it was revoked or never issued.".into()),
        })?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let (token, _csrf) = s
        .store
        .open_ui_session(&hash, &name, now_ms(), super::SESSION_TTL_MS)
        .await?;
    Ok((
        [(header::SET_COOKIE, session_cookie(&headers, &token))],
        Redirect::to("/ui/campaigns"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
    /// `campaign`: the button was on the campaign's own page.
    #[serde(default)]
    back: Option<String>,
}

/// A mutation's session, its CSRF token checked: the session, or the
/// answer (to the login page without one, 403 with a wrong token).
pub(super) async fn mutation(
    s: &UiState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Response> {
    let sess = match session(s, headers).await {
        Ok(Some(sess)) => sess,
        Ok(None) => return Err(to_login()),
        Err(e) => return Err(e.into_response()),
    };
    if !csrf_matches(csrf, &sess.row.csrf) {
        return Err(csrf_refused());
    }
    Ok(sess)
}

/// Whether a form's token is the session's (compared in constant time).
pub(super) fn csrf_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The answer to a mutation without the session's CSRF token.
pub(super) fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            "<!doctype html><title>Refused</title><h1>Refused</h1><p>The form's CSRF token is \
             missing or wrong (a stale page, or a form sent from another site). \
             <a href=\"/ui/campaigns\">Reload the console</a> and try again.</p>",
        ),
    )
        .into_response()
}

pub(super) async fn logout(
    State(s): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    let sess = match mutation(&s, &headers, &f.csrf).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    s.store.close_ui_session(&sess.token).await?;
    Ok((
        [(header::SET_COOKIE, session_cookie(&headers, ""))],
        Redirect::to("/ui/login"),
    )
        .into_response())
}

pub(super) async fn campaigns(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let mut error = q.get("error").cloned();
    let filter = q
        .get("status")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let status = match filter.as_str() {
        "" => None,
        f if STATUSES.contains(&f) => Some(f),
        f => {
            error = Some(format!(
                "No status {f:?}: showing every campaign. The statuses are {}.",
                STATUSES.join(", ")
            ));
            None
        }
    };
    let page = PageRequest::parse(Some(PAGE_SIZE), q.get("page_token").map(String::as_str))
        .unwrap_or(PageRequest {
            size: PAGE_SIZE as u32,
            after: None,
        });
    let list = s.store.list_campaigns(status, &page).await?;
    let campaigns = list
        .items
        .into_iter()
        .map(|c| {
            let actions = actions_for(&c.status);
            let updated = chrono::DateTime::from_timestamp_millis(c.updated_at).unwrap_or_default();
            CampaignItem {
                id: c.id,
                name: c.name,
                status: c.status,
                reason: c.status_reason,
                updated: updated.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                updated_iso: updated.to_rfc3339(),
                actions,
            }
        })
        .collect();
    Ok(render(&CampaignsPage {
        assets: asset_names(),
        csrf: sess.row.csrf,
        key_name: sess.row.key_name,
        notice: q.get("notice").cloned(),
        error,
        filter: status.unwrap_or("").to_string(),
        statuses: STATUSES
            .iter()
            .map(|&st| (st, Some(st) == status))
            .collect(),
        campaigns,
        next: list.next_page_token,
    })?
    .into_response())
}

pub(super) async fn campaign_action(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    let sess = match mutation(&s, &headers, &f.csrf).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let (m, reason, cause) = match verb.as_str() {
        "start" => (StatusMove::Start, None, None),
        "pause" => (StatusMove::Pause, Some("paused from the console"), None),
        "resume" => (StatusMove::Resume, None, None),
        "stop" => (StatusMove::Stop, Some("stopped from the console"), None),
        "force-stop" => (
            StatusMove::Stop,
            Some("force"),
            Some(StatusCause::ForceStop),
        ),
        _ => return Ok((StatusCode::NOT_FOUND, Html("no such action")).into_response()),
    };
    let said = verb.replace('-', " ");
    // Back to the page the button was on: the list, or the campaign's page.
    let back = if f.back.as_deref() == Some("campaign") {
        format!("/ui/campaigns/{id}")
    } else {
        "/ui/campaigns".to_string()
    };
    let by = format!("console:{}", sess.row.key_name);
    let change = StatusChange {
        m,
        reason,
        cause,
        by: &by,
    };
    let target = match move_campaign(&s.store, &s.events, &id, &said, &change).await {
        Ok(c) => format!(
            "{back}?notice={}",
            enc(&format!("{}: {}", c.name, c.status))
        ),
        Err(e) if e.status.is_client_error() => format!("{back}?error={}", enc(&e.message)),
        Err(e) => return Err(e),
    };
    Ok(Redirect::to(&target).into_response())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
