//! `/v1/emails` and `/v1/sms`: accept a message (rendered now, from a
//! template version or raw content), read, list, change while queued,
//! cancel, delete. (The one-click unsubscribe URL is `unsubscribe.rs`.)
//!
//! Must not: send (the channel's worker does, `message::worker`).

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, ts, ts_opt, IdPath, JsonBody, ListQuery};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::fields::{merge_patch, Fields};
use crate::domain::FieldError;
use crate::message::request::{EmailRequest, SmsRequest};
use crate::message::service::Messaging;
use crate::message::status::MessageChannel;
use crate::store::messages::{Accepted, MessageFilter, MessageRow, NewMessage};
use crate::store::{Store, StoreError};

pub(crate) mod compose;
use compose::{email_row, sms_row, unavailable, whatsapp_row};

#[derive(Clone)]
struct MsgState {
    store: Store,
    messaging: Messaging,
}

pub fn router(store: Store, messaging: Messaging) -> ApiRouter {
    let s = MsgState { store, messaging };
    ApiRouter::new()
        .routes(routes!(create_email, list_emails))
        .routes(routes!(read_email, change_email, remove_email))
        .routes(routes!(cancel_email))
        .routes(routes!(create_sms, list_sms))
        .routes(routes!(read_sms, change_sms, remove_sms))
        .routes(routes!(cancel_sms))
        .routes(routes!(create_whatsapp, list_whatsapp))
        .routes(routes!(read_whatsapp, change_whatsapp))
        .routes(routes!(cancel_whatsapp))
        .with_state(s)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn accept(
    s: &MsgState,
    row: NewMessage,
    channel: MessageChannel,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let accepted = s
        .store
        .accept_message(&row, now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) if m == "idempotency_key_reused" => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this idempotency_key was used with another request body",
            )
            .with_details(json!({"field": "idempotency_key"})),
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "a request with this idempotency_key is being accepted; retry",
            ),
            other => other.into(),
        })?;
    let (m, fresh) = match accepted {
        Accepted::New(m) => (m, true),
        Accepted::Existing(m) => (m, false),
    };
    if fresh {
        s.messaging.wake(channel);
    }
    Ok((StatusCode::ACCEPTED, Json(message_json(&m, None))))
}

/// Queues an e-mail (202: accepted; its status follows).
#[utoipa::path(post, path = "/emails", tag = "e-mail", request_body = doc::EmailInput,
    responses((status = 202, description = "Accepted (or the first message again, for a repeated idempotency_key).", body = doc::Message),
        (status = 409, description = "A request with this idempotency_key is being accepted; retry.", body = doc::ErrorRef)))]
async fn create_email(
    State(s): State<MsgState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let retries = s
        .messaging
        .email
        .as_ref()
        .ok_or_else(|| unavailable("email"))?
        .max_retries;
    let req = EmailRequest::parse(&body, retries)?;
    let id = crate::store::new_id();
    let row = email_row(
        &s.store,
        &s.messaging,
        &Default::default(),
        &id,
        &req,
        now(),
    )
    .await?;
    accept(&s, row, MessageChannel::Email).await
}

/// Queues an SMS (202: accepted; its status follows).
#[utoipa::path(post, path = "/sms", tag = "sms", request_body = doc::TextInput,
    responses((status = 202, description = "Accepted (or the first message again, for a repeated idempotency_key).", body = doc::Message),
        (status = 409, description = "A request with this idempotency_key is being accepted; retry.", body = doc::ErrorRef)))]
async fn create_sms(
    State(s): State<MsgState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let retries = s
        .messaging
        .sms
        .as_ref()
        .ok_or_else(|| unavailable("sms"))?
        .max_retries;
    let req = SmsRequest::parse(&body, retries)?;
    let id = crate::store::new_id();
    let row = sms_row(
        &s.store,
        &s.messaging,
        &Default::default(),
        &id,
        &req,
        now(),
    )
    .await?;
    accept(&s, row, MessageChannel::Sms).await
}

/// Queues a WhatsApp message (202: accepted; its status follows).
#[utoipa::path(post, path = "/whatsapp", tag = "whatsapp", request_body = doc::TextInput,
    responses((status = 202, description = "Accepted (or the first message again, for a repeated idempotency_key).", body = doc::Message),
        (status = 409, description = "A request with this idempotency_key is being accepted; retry.", body = doc::ErrorRef)))]
async fn create_whatsapp(
    State(s): State<MsgState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let retries = s
        .messaging
        .whatsapp
        .as_ref()
        .ok_or_else(|| unavailable("whatsapp"))?
        .max_retries;
    let req = SmsRequest::parse(&body, retries)?;
    let id = crate::store::new_id();
    let row = whatsapp_row(
        &s.store,
        &s.messaging,
        &Default::default(),
        &id,
        &req,
        now(),
    )
    .await?;
    accept(&s, row, MessageChannel::Whatsapp).await
}

/// One message, with its tries.
#[utoipa::path(get, path = "/whatsapp/{id}", tag = "whatsapp",
    responses((status = 200, description = "The message.", body = doc::Message)))]
async fn read_whatsapp(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    read(s, id, "whatsapp").await
}

/// WhatsApp messages, newest first.
#[utoipa::path(get, path = "/whatsapp", tag = "whatsapp", params(Paging, ("status" = Option<String>, Query), ("template_id" = Option<String>, Query), ("recipient" = Option<String>, Query),
        ("created_after" = Option<String>, Query, description = "RFC 3339."), ("created_before" = Option<String>, Query, description = "RFC 3339.")),
    responses((status = 200, description = "A page of messages, newest first.", body = doc::Page<doc::Message>)))]
async fn list_whatsapp(
    State(s): State<MsgState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list(s, q, "whatsapp").await
}

/// Changes a queued message (a merge patch of its request).
#[utoipa::path(patch, path = "/whatsapp/{id}", tag = "whatsapp", request_body = doc::MergePatch,
    responses((status = 200, description = "Changed.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn change_whatsapp(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    JsonBody(p): JsonBody,
) -> ApiResult<Json<Value>> {
    change(s, id, p, MessageChannel::Whatsapp).await
}

/// Cancels a queued message.
#[utoipa::path(post, path = "/whatsapp/{id}/cancel", tag = "whatsapp", request_body(content = Option<doc::Reason>, description = "Optional."),
    responses((status = 200, description = "Cancelled.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn cancel_whatsapp(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cancel(s, id, body, "whatsapp").await
}

/// The API's view of a message; `attempts` when read one at a time.
pub fn message_json(m: &MessageRow, attempts: Option<Vec<Value>>) -> Value {
    let request: Value = serde_json::from_str(&m.request).unwrap_or(Value::Null);
    let rendered: Value = serde_json::from_str(&m.rendered).unwrap_or(Value::Null);
    let mut o = Map::new();
    o.insert("id".into(), json!(m.id));
    o.insert("channel".into(), json!(m.channel));
    o.insert("status".into(), json!(m.status));
    o.insert("reason".into(), json!(m.reason));
    let pick = |o: &mut Map<String, Value>, from: &Value, keys: &[&str]| {
        for k in keys {
            if let Some(v) = from.get(*k).filter(|v| !v.is_null()) {
                o.insert((*k).into(), v.clone());
            }
        }
    };
    if m.channel == "email" {
        pick(
            &mut o,
            &rendered,
            &["from", "to", "cc", "bcc", "reply_to", "subject"],
        );
        pick(&mut o, &request, &["category"]);
        o.insert("message_id".into(), json!(m.rfc_message_id));
        if rendered.get("tracking").is_some_and(|t| !t.is_null()) {
            o.insert("opens".into(), json!(m.opens));
            o.insert("clicks".into(), json!(m.clicks));
        }
    } else {
        pick(
            &mut o,
            &rendered,
            &[
                "from", "to", "body", "encoding", "segments", "type", "template",
            ],
        );
    }
    pick(
        &mut o,
        &request,
        &["template_variables", "send_window", "idempotency_key"],
    );
    o.insert("template_id".into(), json!(m.template_id));
    o.insert("template_version".into(), json!(m.template_version));
    o.insert(
        "scheduled_at".into(),
        request.get("scheduled_at").cloned().unwrap_or(Value::Null),
    );
    o.insert("max_retries".into(), json!(m.max_retries));
    o.insert("tries".into(), json!(m.tries));
    o.insert("provider_id".into(), json!(m.provider_id));
    o.insert("provider".into(), json!(m.provider));
    if m.channel == "whatsapp" {
        o.insert("read_at".into(), ts_opt(m.read_at));
    }
    o.insert(
        "next_attempt_at".into(),
        if m.status == "queued" {
            ts(m.due_at)
        } else {
            Value::Null
        },
    );
    o.insert("created_at".into(), ts(m.created_at));
    o.insert("updated_at".into(), ts(m.updated_at));
    o.insert("sent_at".into(), ts_opt(m.sent_at));
    o.insert("final_at".into(), ts_opt(m.final_at));
    if let Some(a) = attempts {
        o.insert("attempts".into(), Value::Array(a));
    }
    Value::Object(o)
}

async fn load(s: &MsgState, id: &str, channel: &str) -> ApiResult<MessageRow> {
    let noun = match channel {
        "email" => "e-mail",
        "whatsapp" => "WhatsApp message",
        _ => "SMS",
    };
    match s.store.get_message(id).await {
        Ok(m) if m.channel == channel => Ok(m),
        Ok(_) | Err(StoreError::NotFound) => Err(ApiError::not_found(noun, id)),
        Err(e) => Err(e.into()),
    }
}

async fn read(s: MsgState, id: String, channel: &str) -> ApiResult<Json<Value>> {
    let m = load(&s, &id, channel).await?;
    let attempts = s
        .store
        .message_attempts(&id)
        .await?
        .into_iter()
        .map(|a| {
            json!({"attempt": a.attempt, "started_at": ts(a.started_at), "ended_at": ts_opt(a.ended_at),
                   "result": a.result, "code": a.code, "text": a.text, "provider": a.provider})
        })
        .collect();
    Ok(Json(message_json(&m, Some(attempts))))
}

/// One message, with its tries.
#[utoipa::path(get, path = "/emails/{id}", tag = "e-mail",
    responses((status = 200, description = "The message.", body = doc::Message)))]
async fn read_email(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    read(s, id, "email").await
}

/// One message, with its tries.
#[utoipa::path(get, path = "/sms/{id}", tag = "sms",
    responses((status = 200, description = "The message.", body = doc::Message)))]
async fn read_sms(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    read(s, id, "sms").await
}

fn timestamp_filter(q: &ListQuery, key: &str) -> Result<Option<i64>, FieldError> {
    q.get(key)
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    FieldError::new(key, format!("must be an RFC 3339 timestamp, got {v:?}"))
                })
        })
        .transpose()
}

async fn list(s: MsgState, q: HashMap<String, String>, channel: &str) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    if let Some(st) = q.get("status") {
        if crate::message::status::MessageStatus::parse(st).is_none() {
            return Err(FieldError::new(
                "status",
                format!("must be one of queued, sending, sent, delivered, bounced, failed, cancelled; got {st:?}"),
            )
            .into());
        }
    }
    let recipient = q.get("recipient").map(|r| {
        if channel == "email" {
            r.to_ascii_lowercase()
        } else {
            r.to_string()
        }
    });
    let filter = MessageFilter {
        status: q.get("status"),
        template_id: q.get("template_id"),
        recipient: recipient.as_deref(),
        created_after: timestamp_filter(&q, "created_after")?,
        created_before: timestamp_filter(&q, "created_before")?,
    };
    let page = s.store.list_messages(channel, &filter, &q.page()?).await?;
    Ok(Json(
        serde_json::to_value(page.map(|m| message_json(&m, None))).map_err(ApiError::internal)?,
    ))
}

/// E-mails, newest first.
#[utoipa::path(get, path = "/emails", tag = "e-mail", params(Paging, ("status" = Option<String>, Query), ("template_id" = Option<String>, Query), ("recipient" = Option<String>, Query),
        ("created_after" = Option<String>, Query, description = "RFC 3339."), ("created_before" = Option<String>, Query, description = "RFC 3339.")),
    responses((status = 200, description = "A page of messages, newest first.", body = doc::Page<doc::Message>)))]
async fn list_emails(
    State(s): State<MsgState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list(s, q, "email").await
}

/// SMS messages, newest first.
#[utoipa::path(get, path = "/sms", tag = "sms", params(Paging, ("status" = Option<String>, Query), ("template_id" = Option<String>, Query), ("recipient" = Option<String>, Query),
        ("created_after" = Option<String>, Query, description = "RFC 3339."), ("created_before" = Option<String>, Query, description = "RFC 3339.")),
    responses((status = 200, description = "A page of messages, newest first.", body = doc::Page<doc::Message>)))]
async fn list_sms(
    State(s): State<MsgState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list(s, q, "sms").await
}

fn not_queued(status: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "message_not_queued",
        format!("the message is {status}; only a queued message can be changed or cancelled"),
    )
    .with_details(json!({"status": status}))
}

/// A merge patch over the stored request, parsed and rendered again.
async fn change(
    s: MsgState,
    id: String,
    patch: Value,
    channel: MessageChannel,
) -> ApiResult<Json<Value>> {
    Fields::new(&patch, "")?;
    let m = load(&s, &id, channel.as_str()).await?;
    if m.status != "queued" {
        return Err(not_queued(&m.status));
    }
    if patch.get("idempotency_key").is_some() {
        return Err(FieldError::new("idempotency_key", "cannot change").into());
    }
    let mut whole: Value = serde_json::from_str(&m.request).map_err(ApiError::internal)?;
    merge_patch(&mut whole, &patch);
    let now = now();
    let mut row = match channel {
        MessageChannel::Email => {
            let retries = s
                .messaging
                .email
                .as_ref()
                .ok_or_else(|| unavailable("email"))?
                .max_retries;
            email_row(
                &s.store,
                &s.messaging,
                &Default::default(),
                &id,
                &EmailRequest::parse(&whole, retries)?,
                now,
            )
            .await?
        }
        MessageChannel::Sms => {
            let retries = s
                .messaging
                .sms
                .as_ref()
                .ok_or_else(|| unavailable("sms"))?
                .max_retries;
            sms_row(
                &s.store,
                &s.messaging,
                &Default::default(),
                &id,
                &SmsRequest::parse(&whole, retries)?,
                now,
            )
            .await?
        }
        MessageChannel::Slack => return Err(unavailable("slack")),
        MessageChannel::Whatsapp => {
            let retries = s
                .messaging
                .whatsapp
                .as_ref()
                .ok_or_else(|| unavailable("whatsapp"))?
                .max_retries;
            let req = SmsRequest::parse(&whole, retries)?;
            whatsapp_row(&s.store, &s.messaging, &Default::default(), &id, &req, now).await?
        }
    };
    row.idempotency_key = m.idempotency_key.clone();
    let m = s
        .store
        .update_queued_message(&row, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(st) => not_queued(&st),
            other => other.into(),
        })?;
    s.messaging.wake(channel);
    Ok(Json(message_json(&m, None)))
}

/// Changes a queued message (a merge patch of its request).
#[utoipa::path(patch, path = "/emails/{id}", tag = "e-mail", request_body = doc::MergePatch,
    responses((status = 200, description = "Changed.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn change_email(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    JsonBody(p): JsonBody,
) -> ApiResult<Json<Value>> {
    change(s, id, p, MessageChannel::Email).await
}

/// Changes a queued message (a merge patch of its request).
#[utoipa::path(patch, path = "/sms/{id}", tag = "sms", request_body = doc::MergePatch,
    responses((status = 200, description = "Changed.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn change_sms(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    JsonBody(p): JsonBody,
) -> ApiResult<Json<Value>> {
    change(s, id, p, MessageChannel::Sms).await
}

async fn cancel(s: MsgState, id: String, body: Bytes, channel: &str) -> ApiResult<Json<Value>> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&body)?
    };
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["reason"])?;
    let reason = f.str_max("reason", 500)?.unwrap_or("cancelled").to_string();
    load(&s, &id, channel).await?;
    let m = s
        .store
        .cancel_message(&id, &reason, now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(st) => not_queued(&st),
            other => ApiError::from_store(other, "message", &id),
        })?;
    Ok(Json(message_json(&m, None)))
}

/// Cancels a queued message.
#[utoipa::path(post, path = "/emails/{id}/cancel", tag = "e-mail", request_body(content = Option<doc::Reason>, description = "Optional."),
    responses((status = 200, description = "Cancelled.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn cancel_email(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cancel(s, id, body, "email").await
}

/// Cancels a queued message.
#[utoipa::path(post, path = "/sms/{id}/cancel", tag = "sms", request_body(content = Option<doc::Reason>, description = "Optional."),
    responses((status = 200, description = "Cancelled.", body = doc::Message),
        (status = 409, description = "It is no longer queued (details.status).", body = doc::ErrorRef)))]
async fn cancel_sms(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cancel(s, id, body, "sms").await
}

async fn remove(s: MsgState, id: String, channel: &str) -> ApiResult<StatusCode> {
    match s.store.delete_message(&id, channel).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(
            if channel == "email" { "e-mail" } else { "SMS" },
            &id,
        )),
        Err(StoreError::Conflict(st)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "message_sending",
            format!("the message is {st}; delete it once its send is recorded"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a message that is not being sent.
#[utoipa::path(delete, path = "/emails/{id}", tag = "e-mail",
    responses((status = 204, description = "Deleted."),
        (status = 409, description = "It is being sent.", body = doc::ErrorRef)))]
async fn remove_email(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    remove(s, id, "email").await
}

/// Deletes a message that is not being sent.
#[utoipa::path(delete, path = "/sms/{id}", tag = "sms",
    responses((status = 204, description = "Deleted."),
        (status = 409, description = "It is being sent.", body = doc::ErrorRef)))]
async fn remove_sms(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    remove(s, id, "sms").await
}
