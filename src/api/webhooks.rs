//! Webhooks: `POST/GET /v1/webhooks`, `GET/DELETE /v1/webhooks/{id}`.
//! The secret is write-only: accepted on create, used to sign deliveries,
//! never returned or logged. Delivery itself is `crate::webhooks`.

use utoipa_axum::routes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::error::{ApiError, ApiResult};
use super::extract::{ts, ts_opt, IdPath, JsonBody, ListQuery};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::config::Secret;
use crate::domain::fields::Fields;
use crate::domain::FieldError;
use crate::store::events::EVENT_TYPES;
use crate::store::global_events::GLOBAL_EVENT_TYPES;
use crate::store::webhooks::WebhookRow;
use crate::store::Store;

/// Shortest secret accepted.
const MIN_SECRET: usize = 16;
const MAX_SECRET: usize = 512;
const MAX_URL: usize = 2048;

#[derive(Clone)]
struct WebhookState {
    store: Store,
    /// Wakes the dispatcher when webhooks come or go.
    changed: Arc<Notify>,
}

pub fn router(store: Store, changed: Arc<Notify>) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, remove))
        .with_state(WebhookState { store, changed })
}

/// The API shape of a webhook: everything but the secret.
pub fn webhook_json(w: &WebhookRow) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "event_types": w.event_types,
        "status": if w.enabled { "enabled" } else { "disabled" },
        "disabled_reason": w.disabled_reason,
        "disabled_at": ts_opt(w.disabled_at),
        "last_error": w.last_error,
        "last_error_at": ts_opt(w.last_error_at),
        "last_success_at": ts_opt(w.last_success_at),
        "failing_since": ts_opt(w.failing_since),
        "consecutive_failures": w.failures,
        "next_attempt_at": ts_opt((w.next_attempt_at > 0).then_some(w.next_attempt_at)),
        "delivered_count": w.delivered_count,
        "created_at": ts(w.created_at),
    })
}

fn validate_url(u: &str) -> Result<String, FieldError> {
    let u = u.trim();
    if u.len() > MAX_URL {
        return Err(FieldError::new(
            "url",
            format!("is longer than {MAX_URL} characters"),
        ));
    }
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| FieldError::new("url", "must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(FieldError::new("url", "has no host"));
    }
    reqwest::Url::parse(u)
        .map_err(|e| FieldError::new("url", format!("is not a valid URL: {e}")))?;
    Ok(u.to_string())
}

fn validate_types(f: &Fields<'_>) -> Result<Vec<String>, FieldError> {
    let Some(list) = f.array_opt("event_types")? else {
        return Ok(vec!["*".to_string()]);
    };
    if list.is_empty() {
        return Err(FieldError::new(
            "event_types",
            "must name at least one event type (or \"*\")",
        ));
    }
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let field = format!("event_types[{i}]");
        let t = v
            .as_str()
            .ok_or_else(|| FieldError::new(&field, "must be a string"))?;
        if t != "*" && !EVENT_TYPES.contains(&t) && !GLOBAL_EVENT_TYPES.contains(&t) {
            return Err(FieldError::new(
                &field,
                format!(
                    "unknown event type {t:?}; one of \"*\", {}, {}",
                    EVENT_TYPES.join(", "),
                    GLOBAL_EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

/// Subscribes a URL to events, delivered signed and retried until they are taken.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = doc::WebhookInput,
    responses((status = 201, description = "Subscribed.", body = doc::Webhook)))]
async fn create(
    State(s): State<WebhookState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["url", "event_types", "secret"])?;
    let url = validate_url(f.str_req("url")?)?;
    let event_types = validate_types(&f)?;
    let secret = f.str_req("secret")?;
    if secret.len() < MIN_SECRET || secret.len() > MAX_SECRET {
        return Err(FieldError::new(
            "secret",
            format!("must be {MIN_SECRET} to {MAX_SECRET} characters long"),
        )
        .into());
    }
    let w = s
        .store
        .insert_webhook(
            &url,
            &event_types,
            &Secret(secret.to_string()),
            chrono::Utc::now().timestamp_millis(),
        )
        .await?;
    s.changed.notify_one();
    Ok((StatusCode::CREATED, Json(webhook_json(&w))))
}

/// The webhooks and how their deliveries go.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(Paging),
    responses((status = 200, description = "A page of webhooks.", body = doc::Page<doc::Webhook>)))]
async fn list(
    State(s): State<WebhookState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = s.store.list_webhooks(&ListQuery(q).page()?).await?;
    Ok(Json(
        serde_json::to_value(page.map(|w| webhook_json(&w))).expect("page serializes"),
    ))
}

/// One webhook.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    responses((status = 200, description = "The webhook.", body = doc::Webhook)))]
async fn read(State(s): State<WebhookState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let w = s
        .store
        .get_webhook(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "webhook", &id))?;
    Ok(Json(webhook_json(&w)))
}

/// Unsubscribes; undelivered events are dropped.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    responses((status = 204, description = "Deleted.")))]
async fn remove(State(s): State<WebhookState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    if s.store.delete_webhook(&id).await? {
        s.changed.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook", &id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(validate_url("https://example.com/hook").is_ok());
        assert!(validate_url("http://127.0.0.1:9/x").is_ok());
        assert_eq!(validate_url("ftp://x").unwrap_err().field, "url");
        assert_eq!(validate_url("http:///x").unwrap_err().field, "url");
    }

    #[test]
    fn event_types_are_checked_by_index() {
        let v = json!({"event_types": ["attempt.ended", "nope"]});
        let e = validate_types(&Fields::new(&v, "").unwrap()).unwrap_err();
        assert_eq!(e.field, "event_types[1]");
        let v = json!({});
        assert_eq!(
            validate_types(&Fields::new(&v, "").unwrap()).unwrap(),
            vec!["*"]
        );
    }
}
