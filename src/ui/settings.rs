//! Settings: API keys (create, shown once; revoke: its requests and console
//! sessions stop at once), webhooks with their delivery state and last
//! error, and the do-not-call list (add, look up, remove; numbers checked
//! as `POST /v1/dnc` checks them).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{form_page, mutation, to_login};
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::dnc::number_field;
use crate::api::error::ApiError;
use crate::store::PageRequest;

struct KeyItem {
    id: String,
    name: String,
    prefix: String,
    created: String,
    revoked: Option<String>,
}

struct WebhookItem {
    url: String,
    events: String,
    state: String,
    delivered: i64,
    last_error: String,
}

#[derive(Template)]
#[template(path = "settings.html", config = "src/ui/askama.toml")]
struct SettingsPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    notice: Option<String>,
    new_key: Option<String>,
    keys: Vec<KeyItem>,
    key_name_value: String,
    key_error: Option<String>,
    webhooks: Vec<WebhookItem>,
    number_value: String,
    number_error: Option<String>,
    lookup: Option<String>,
}

fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// What a settings page shows besides the lists.
#[derive(Default)]
struct Said {
    notice: Option<String>,
    new_key: Option<String>,
    key_name_value: String,
    key_error: Option<String>,
    number_value: String,
    number_error: Option<String>,
    lookup: Option<String>,
}

async fn page(s: &UiState, headers: &HeaderMap, said: Said) -> Result<Response, ApiError> {
    let Some(sess) = session(s, headers).await? else {
        return Ok(to_login());
    };
    let keys = s
        .store
        .list_api_keys()
        .await?
        .into_iter()
        .map(|k| KeyItem {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created: day(k.created_at),
            revoked: k.revoked_at.map(day),
        })
        .collect();
    let hooks = s
        .store
        .list_webhooks(&PageRequest {
            size: 200,
            after: None,
        })
        .await?;
    let webhooks = hooks
        .items
        .into_iter()
        .map(|w| WebhookItem {
            url: w.url,
            events: w.event_types.join(", "),
            state: if !w.enabled {
                format!(
                    "disabled: {}",
                    w.disabled_reason.unwrap_or_else(|| "by request".into())
                )
            } else if w.failures > 0 {
                format!("retrying ({} failures in a row)", w.failures)
            } else {
                "delivering".into()
            },
            delivered: w.delivered_count,
            last_error: match (w.last_error, w.last_error_at) {
                (Some(e), Some(at)) => format!("{e} ({})", day(at)),
                (Some(e), None) => e,
                _ => "—".into(),
            },
        })
        .collect();
    let invalid = said.key_error.is_some() || said.number_error.is_some();
    form_page(
        &SettingsPage {
            assets: asset_names(),
            csrf: sess.row.csrf,
            key_name: sess.row.key_name,
            notice: said.notice,
            new_key: said.new_key,
            keys,
            key_name_value: said.key_name_value,
            key_error: said.key_error,
            webhooks,
            number_value: said.number_value,
            number_error: said.number_error,
            lookup: said.lookup,
        },
        invalid,
    )
}

pub(super) async fn settings(
    State(s): State<UiState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    page(
        &s,
        &headers,
        Said {
            notice: q.get("notice").cloned(),
            ..Said::default()
        },
    )
    .await
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub(super) async fn create_key(
    State(s): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<KeyForm>,
) -> Result<Response, ApiError> {
    if let Err(r) = mutation(&s, &headers, &f.csrf).await {
        return Ok(r);
    }
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        let said = Said {
            key_name_value: f.name.clone(),
            key_error: Some("a key needs a name of 1 to 100 characters".into()),
            ..Said::default()
        };
        return page(&s, &headers, said).await;
    }
    let (_, key) = s.store.create_api_key(name, now_ms()).await?;
    // Shown on this answer only (not in a URL, not kept).
    let said = Said {
        notice: Some(format!("Created the key {name}.")),
        new_key: Some(key),
        ..Said::default()
    };
    page(&s, &headers, said).await
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn revoke_key(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, ApiError> {
    if let Err(r) = mutation(&s, &headers, &f.csrf).await {
        return Ok(r);
    }
    let notice = if s.store.revoke_api_key(&id, now_ms()).await? {
        "The key is revoked."
    } else {
        "That key was revoked already."
    };
    // Revoking the key of this very session ends it: the redirect then
    // lands on the login page.
    Ok(Redirect::to(&format!(
        "/ui/settings?notice={}",
        form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
    ))
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct DncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    op: String,
}

pub(super) async fn dnc(
    State(s): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<DncForm>,
) -> Result<Response, ApiError> {
    if let Err(r) = mutation(&s, &headers, &f.csrf).await {
        return Ok(r);
    }
    let number = match number_field("number", &f.number) {
        Ok(n) => n,
        Err(e) => {
            let said = Said {
                number_value: f.number.clone(),
                number_error: Some(e.reason),
                ..Said::default()
            };
            return page(&s, &headers, said).await;
        }
    };
    let lookup = match f.op.as_str() {
        "add" => {
            let reason: String = f.reason.trim().chars().take(200).collect();
            s.store.add_dnc(&number, &reason, now_ms()).await?;
            format!("{number} is on the do-not-call list.")
        }
        "remove" => {
            if s.store.delete_dnc(&number).await? {
                format!("{number} was removed from the do-not-call list.")
            } else {
                format!("{number} was not on the do-not-call list.")
            }
        }
        _ => match s.store.get_dnc(&number).await? {
            Some((reason, at)) if reason.is_empty() => {
                format!("{number} is on the do-not-call list since {}.", day(at))
            }
            Some((reason, at)) => format!(
                "{number} is on the do-not-call list since {} ({reason}).",
                day(at)
            ),
            None => format!("{number} is not on the do-not-call list."),
        },
    };
    let said = Said {
        number_value: number,
        lookup: Some(lookup),
        ..Said::default()
    };
    page(&s, &headers, said).await
}
