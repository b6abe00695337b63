//! `/v1/providers/whatsapp/webhook`, called by the Cloud API, not by API
//! clients (no API key): `GET` answers the subscription check
//! (`hub.verify_token`, `hub.challenge`); `POST` must carry a valid
//! `X-Hub-Signature-256` over its raw body (401 otherwise), and its
//! statuses go to the WhatsApp sender as delivery reports (`delivered` and
//! `read` deliver, `failed` fails; a status never moves a message back; a
//! `read` also sets the message's `read_at` once, with `message.read`),
//! its contacts' messages are kept (they open the 24-hour window).
//! Answered 200 only once all of it is kept, so the Cloud API sends again
//! what a crash lost.

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::parse_json;
use super::openapi::{schemas as doc, ApiRouter};
use crate::message::channels::WhatsappWebhook;
use crate::message::transport::{DeliveryReport, PeerReply, ReportKey, ReportStatus};
use crate::message::whatsapp::{parse_webhook, signature_ok};
use crate::notify::inbox::{Inbound, Inbox};

#[derive(Clone)]
struct HookState {
    inbox: Inbox,
    hook: Option<WhatsappWebhook>,
}

pub fn router(inbox: Inbox, hook: Option<WhatsappWebhook>) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(verify, receive))
        .with_state(HookState { inbox, hook })
}

fn off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "channel_unavailable",
        "the whatsapp channel is not configured on this server ([channels.whatsapp])",
    )
}

/// Compares without an early exit, so timing does not tell how much matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The Cloud API's subscription check: answers `hub.challenge` when
/// `hub.verify_token` is the configured one.
#[utoipa::path(get, path = "/v1/providers/whatsapp/webhook", tag = "whatsapp",
    params(("hub.mode" = Option<String>, Query, description = "subscribe"),
        ("hub.verify_token" = Option<String>, Query), ("hub.challenge" = Option<String>, Query)),
    responses((status = 200, description = "hub.challenge, as text.", content_type = "text/plain", body = String),
        (status = 403, description = "Wrong mode or token.", body = doc::ErrorRef),
        (status = 404, description = "The WhatsApp channel is off.", body = doc::ErrorRef)))]
async fn verify(
    State(s): State<HookState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<String> {
    let hook = s.hook.as_ref().ok_or_else(off)?;
    let token = q.get("hub.verify_token").map(String::as_str).unwrap_or("");
    if q.get("hub.mode").map(String::as_str) != Some("subscribe")
        || hook.verify_token.is_empty()
        || !same(token, &hook.verify_token)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "hub.mode must be subscribe and hub.verify_token must match channels.whatsapp.verify_token",
        ));
    }
    Ok(q.get("hub.challenge").cloned().unwrap_or_default())
}

/// The Cloud API's messages and statuses, signed with the app secret
/// (`X-Hub-Signature-256`).
#[utoipa::path(post, path = "/v1/providers/whatsapp/webhook", tag = "whatsapp",
    request_body(content = doc::AnyObject, description = "The Cloud API's webhook payload."),
    responses((status = 200, description = "Taken.", body = doc::Ok),
        (status = 401, description = "The signature is missing or wrong.", body = doc::ErrorRef),
        (status = 404, description = "The WhatsApp channel is off.", body = doc::ErrorRef),
        (status = 503, description = "herald is stopping; send it again.", body = doc::ErrorRef)))]
async fn receive(
    State(s): State<HookState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let hook = s.hook.as_ref().ok_or_else(off)?;
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if hook.app_secret.is_empty() || !signature_ok(&hook.app_secret, &body, sig) {
        return Err(ApiError::unauthorized(
            "X-Hub-Signature-256 is missing or does not match the body",
        ));
    }
    let w = parse_webhook(&parse_json(&body)?);
    let now = chrono::Utc::now().timestamp_millis();
    for m in w.messages {
        s.inbox
            .receive(Inbound {
                channel: "whatsapp",
                provider_id: Some(m.id),
                from: m.from,
                to: m.to,
                body: m.body,
                at: m.at.unwrap_or(now).min(now),
            })
            .await?;
    }
    for st in &w.statuses {
        let status = match st.status.as_str() {
            "delivered" | "read" => ReportStatus::Delivered,
            "failed" => ReportStatus::Failed,
            // `sent` is what the send's answer already said.
            _ => continue,
        };
        let report = DeliveryReport {
            key: ReportKey::Provider(st.id.clone()),
            status,
            reply: PeerReply {
                code: st.error_code.clone().or_else(|| Some(st.status.clone())),
                text: st.error_title.clone(),
            },
            address: None,
        };
        if !hook.reports.report(report).await {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "herald is stopping; send the webhook again",
            ));
        }
        if st.status == "read" {
            // Read is kept apart from the status (which stays delivered).
            s.inbox
                .store
                .record_read(&st.id, st.at.unwrap_or(now).min(now), now)
                .await?;
        }
    }
    Ok(Json(json!({"ok": true})))
}
