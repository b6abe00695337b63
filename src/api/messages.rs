//! `/v1/emails` and `/v1/sms`: accept a message (rendered now, from a
//! template version or raw content), read, list, change while queued,
//! cancel, delete. (The one-click unsubscribe URL is `unsubscribe.rs`.)
//!
//! Must not: send (the channel's worker does, `message::worker`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, ts, ts_opt, IdPath, JsonBody, ListQuery};
use super::templates::{render_error, typed};
use crate::campaign::rules::window::Window;
use crate::domain::fields::{merge_patch, Fields};
use crate::domain::FieldError;
use crate::message::request::{
    request_hash, Category, Content, Delivery, EmailRequest, SmsRequest,
};
use crate::message::service::Messaging;
use crate::message::sms_text;
use crate::message::status::MessageChannel;
use crate::message::template::{self, Channel};
use crate::store::messages::{Accepted, MessageFilter, MessageRow, NewMessage};
use crate::store::{Store, StoreError};

#[derive(Clone)]
struct MsgState {
    store: Store,
    messaging: Messaging,
}

pub fn router(store: Store, messaging: Messaging) -> Router {
    let s = MsgState { store, messaging };
    Router::new()
        .route("/emails", post(create_email).get(list_emails))
        .route(
            "/emails/{id}",
            get(read_email).patch(change_email).delete(remove_email),
        )
        .route("/emails/{id}/cancel", post(cancel_email))
        .route("/sms", post(create_sms).get(list_sms))
        .route(
            "/sms/{id}",
            get(read_sms).patch(change_sms).delete(remove_sms),
        )
        .route("/sms/{id}/cancel", post(cancel_sms))
        .with_state(s)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Content rendered from a template, or taken raw.
struct Composed {
    template_id: Option<String>,
    template_version: Option<i64>,
    subject: Option<String>,
    body_html: Option<String>,
    body_text: Option<String>,
    body: Option<String>,
}

/// Resolves the template (id or code), checks its channel and status, and
/// renders it; raw content passes through.
async fn compose(store: &Store, content: &Content, channel: Channel) -> ApiResult<Composed> {
    let Some(tid) = &content.template_id else {
        return Ok(Composed {
            template_id: None,
            template_version: None,
            subject: content.subject.clone(),
            body_html: content.body_html.clone(),
            body_text: content.body_text.clone(),
            body: content.body.clone(),
        });
    };
    let t = store.resolve_template(tid).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "template_not_found",
            format!(
                "no template with id or code {:?}",
                tid.chars().take(100).collect::<String>()
            ),
        )
        .with_details(json!({"field": "template_id"})),
        other => other.into(),
    })?;
    let (tchannel, variables, parts) = typed(&t)?;
    if tchannel != channel {
        return Err(FieldError::new(
            "template_id",
            format!(
                "template {:?} is for {}, not {}",
                t.code,
                tchannel.as_str(),
                channel.as_str()
            ),
        )
        .into());
    }
    if t.status != "active" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_inactive",
            format!("template {:?} is inactive; activate it first", t.code),
        )
        .with_details(json!({"field": "template_id"})));
    }
    let r = template::render(channel, &variables, &parts, &content.template_variables)
        .map_err(render_error)?;
    Ok(Composed {
        template_id: Some(t.id),
        template_version: Some(t.version),
        subject: r.subject,
        body_html: r.body_html,
        body_text: r.body_text,
        body: r.body,
    })
}

/// When the message may go: `scheduled_at` (or now), moved into its send window.
fn due_at(delivery: &Delivery, now: i64) -> ApiResult<i64> {
    let at = delivery.scheduled_at.unwrap_or(now).max(now);
    let Some(w) = &delivery.send_window else {
        return Ok(at);
    };
    let (window, tz) = Window::from_spec(w).map_err(|e| e.within("send_window"))?;
    Ok(window
        .dial_time(tz, crate::store::from_ms(at))
        .timestamp_millis())
}

fn unavailable(channel: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "channel_unavailable",
        format!("the {channel} channel is not configured on this server ([channels.{channel}])"),
    )
}

/// Builds the row of an e-mail request (new, or changed by a PATCH).
async fn email_row(s: &MsgState, id: &str, req: &EmailRequest, now: i64) -> ApiResult<NewMessage> {
    let d = s
        .messaging
        .email
        .as_ref()
        .ok_or_else(|| unavailable("email"))?;
    let c = compose(&s.store, &req.content, Channel::Email).await?;
    let subject = c.subject.unwrap_or_default();
    if subject.trim().is_empty() {
        return Err(FieldError::new("subject", "rendered empty").into());
    }
    if subject.contains(['\r', '\n']) {
        return Err(FieldError::new(
            "subject",
            "must be one line (it rendered with a line break)",
        )
        .into());
    }
    let from = req
        .from
        .clone()
        .map(|a| json!(a))
        .unwrap_or_else(|| json!({"email": d.from.email, "name": d.from.name}));
    let list_unsubscribe = (req.category == Category::Marketing).then(|| {
        format!(
            "{}/unsubscribe/{id}",
            d.unsubscribe_base_url.trim_end_matches('/')
        )
    });
    let rendered = json!({
        "message_id": format!("{id}@{}", d.bounce_domain),
        "return_path": format!("bounces+{id}@{}", d.bounce_domain),
        "from": from,
        "to": req.to,
        "cc": req.cc,
        "bcc": req.bcc,
        "reply_to": req.reply_to,
        "subject": subject,
        "body_html": c.body_html,
        "body_text": c.body_text,
        "list_unsubscribe": list_unsubscribe,
    });
    Ok(NewMessage {
        id: id.to_string(),
        channel: "email".into(),
        recipient: req.to[0].email.to_ascii_lowercase(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: rendered.to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: Some(format!("{id}@{}", d.bounce_domain)),
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
    })
}

async fn sms_row(s: &MsgState, id: &str, req: &SmsRequest, now: i64) -> ApiResult<NewMessage> {
    let d = s.messaging.sms.as_ref().ok_or_else(|| unavailable("sms"))?;
    let c = compose(&s.store, &req.content, Channel::Sms).await?;
    let body = c.body.unwrap_or_default();
    if body.trim().is_empty() {
        return Err(FieldError::new("body", "rendered empty").into());
    }
    let info = sms_text::analyse(&body);
    if info.segments > sms_text::MAX_SEGMENTS {
        let field = if req.content.template_id.is_some() {
            "template_variables"
        } else {
            "body"
        };
        return Err(FieldError::new(
            field,
            format!(
                "the text needs {} segments ({:?}, {} characters); at most {} are sent",
                info.segments,
                info.encoding,
                body.chars().count(),
                sms_text::MAX_SEGMENTS
            ),
        )
        .into());
    }
    let rendered = json!({
        "from": req.from.clone().unwrap_or_else(|| d.from.clone()),
        "to": req.to,
        "body": body,
        "encoding": info.encoding,
        "segments": info.segments,
    });
    Ok(NewMessage {
        id: id.to_string(),
        channel: "sms".into(),
        recipient: req.to.clone(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: rendered.to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: None,
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
    })
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
    let row = email_row(&s, &id, &req, now()).await?;
    accept(&s, row, MessageChannel::Email).await
}

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
    let row = sms_row(&s, &id, &req, now()).await?;
    accept(&s, row, MessageChannel::Sms).await
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
    } else {
        pick(
            &mut o,
            &rendered,
            &["from", "to", "body", "encoding", "segments"],
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
    let noun = if channel == "email" { "e-mail" } else { "SMS" };
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
                   "result": a.result, "code": a.code, "text": a.text})
        })
        .collect();
    Ok(Json(message_json(&m, Some(attempts))))
}

async fn read_email(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    read(s, id, "email").await
}

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

async fn list_emails(
    State(s): State<MsgState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list(s, q, "email").await
}

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
            email_row(&s, &id, &EmailRequest::parse(&whole, retries)?, now).await?
        }
        MessageChannel::Sms => {
            let retries = s
                .messaging
                .sms
                .as_ref()
                .ok_or_else(|| unavailable("sms"))?
                .max_retries;
            sms_row(&s, &id, &SmsRequest::parse(&whole, retries)?, now).await?
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

async fn change_email(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    JsonBody(p): JsonBody,
) -> ApiResult<Json<Value>> {
    change(s, id, p, MessageChannel::Email).await
}

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

async fn cancel_email(
    State(s): State<MsgState>,
    IdPath(id): IdPath,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    cancel(s, id, body, "email").await
}

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

async fn remove_email(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    remove(s, id, "email").await
}

async fn remove_sms(State(s): State<MsgState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    remove(s, id, "sms").await
}
