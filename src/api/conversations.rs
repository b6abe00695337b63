//! `/v1/conversations`: a worker (a person) opens one by sending the first
//! SMS or WhatsApp message; their replies go with `POST
//! /v1/conversations/{id}/messages`; the contact's come back on the
//! worker's event stream (`GET /v1/workers/{worker}/events`, in
//! `api::events`). One open conversation per channel, our address and the
//! contact's: opening a second answers 409 with the open one.
//!
//! Must not: send (the channel's worker does) or match replies (the inbox does).

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ts, ts_opt, IdPath, JsonBody, ListQuery};
use super::messages::compose::{sms_row, unavailable, whatsapp_row};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::fields::Fields;
use crate::domain::FieldError;
use crate::message::request::SmsRequest;
use crate::message::service::Messaging;
use crate::message::status::MessageChannel;
use crate::store::conversations::{address_key, ConversationRow, NewConversationMessage};
use crate::store::messages::NewMessage;
use crate::store::{Store, StoreError};

/// What opening, replying on and closing a conversation need (REST's and
/// the console's worker panel's).
#[derive(Clone)]
pub(crate) struct ConvState {
    pub store: Store,
    pub messaging: Messaging,
}

pub fn router(store: Store, messaging: Messaging) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(open, list))
        .routes(routes!(read))
        .routes(routes!(messages, reply))
        .routes(routes!(close))
        .with_state(ConvState { store, messaging })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn conversation_json(c: &ConversationRow) -> Value {
    json!({
        "id": c.id, "channel": c.channel, "from": c.our_address, "to": c.contact_address,
        "worker": c.worker, "route_replies": c.route_replies, "status": c.status,
        "closed_reason": c.closed_reason, "created_at": ts(c.created_at),
        "last_activity_at": ts(c.last_activity_at), "closed_at": ts_opt(c.closed_at),
    })
}

/// The message's content fields, as `/v1/sms` and `/v1/whatsapp` take them.
const CONTENT: [&str; 3] = ["body", "template_id", "template_variables"];

/// Renders one of the worker's messages (an SMS or WhatsApp request).
async fn render(
    s: &ConvState,
    channel: MessageChannel,
    to: &str,
    from: Option<&str>,
    content: &Map<String, Value>,
    id: &str,
    now: i64,
) -> ApiResult<NewMessage> {
    let mut body = Map::new();
    body.insert("to".into(), json!(to));
    if let Some(from) = from {
        body.insert("from".into(), json!(from));
    }
    for k in CONTENT {
        if let Some(v) = content.get(k) {
            body.insert(k.into(), v.clone());
        }
    }
    let body = Value::Object(body);
    match channel {
        MessageChannel::Sms => {
            let d = s.messaging.sms.as_ref().ok_or_else(|| unavailable("sms"))?;
            let r = SmsRequest::parse(&body, d.max_retries)?;
            sms_row(&s.store, &s.messaging, &Default::default(), id, &r, now).await
        }
        MessageChannel::Whatsapp => {
            let d = s
                .messaging
                .whatsapp
                .as_ref()
                .ok_or_else(|| unavailable("whatsapp"))?;
            let r = SmsRequest::parse(&body, d.max_retries)?;
            whatsapp_row(&s.store, &s.messaging, &Default::default(), id, &r, now).await
        }
        _ => Err(FieldError::new("channel", "must be sms or whatsapp").into()),
    }
}

/// Sends one of the worker's messages on the conversation.
async fn send(s: &ConvState, c: &ConversationRow, row: NewMessage, now: i64) -> ApiResult<Value> {
    let channel = MessageChannel::parse(&c.channel).ok_or_else(|| ApiError::internal("channel"))?;
    let rendered: Value = serde_json::from_str(&row.rendered).unwrap_or(Value::Null);
    let text = rendered["body"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "[template {}]",
                rendered["template"]["name"].as_str().unwrap_or("?")
            )
        });
    let id = row.id.clone();
    let seq = s
        .store
        .add_conversation_message(
            c,
            &NewConversationMessage {
                direction: "out",
                message_id: &id,
                body: &text,
            },
            &c.worker,
            now,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => closed(&c.id),
            other => other.into(),
        })?;
    s.store.accept_message(&row, now).await?;
    s.messaging.wake(channel);
    Ok(json!({"seq": seq, "direction": "out", "message_id": id, "body": text}))
}

fn closed(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conversation_closed",
        format!("conversation {id} is closed; open a new one"),
    )
}

/// Opens a conversation with a contact by sending the worker's first
/// message; the contact's replies come back on the worker's event stream.
#[utoipa::path(post, path = "/conversations", tag = "conversations", request_body = doc::ConversationInput,
    responses((status = 201, description = "Opened; the first message is queued.", body = doc::Conversation),
        (status = 409, description = "One between these addresses is open (details.conversation).", body = doc::ErrorRef)))]
async fn open(
    State(s): State<ConvState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(open_with(&s, &body).await?)))
}

/// Opens a conversation by sending its first message (`POST /v1/conversations`'s body).
pub(crate) async fn open_with(s: &ConvState, body: &Value) -> ApiResult<Value> {
    let f = Fields::new(body, "")?;
    f.deny_unknown(&[
        "channel",
        "to",
        "from",
        "worker",
        "route_replies",
        "body",
        "template_id",
        "template_variables",
    ])?;
    let channel = match f.str_req("channel")? {
        "sms" => MessageChannel::Sms,
        "whatsapp" => MessageChannel::Whatsapp,
        other => {
            return Err(FieldError::new(
                "channel",
                format!("must be sms or whatsapp, got {other:?}"),
            )
            .into())
        }
    };
    let worker = f.name("worker", 200)?;
    let route_replies = f.choice_or("route_replies", &["worker", "any"], "worker")?;
    let to = f.str_req("to")?.trim().to_string();
    let from = f.str_max("from", 32)?.map(str::trim);
    if channel == MessageChannel::Whatsapp && from.is_some() {
        return Err(FieldError::new(
            "from",
            "WhatsApp conversations are from channels.whatsapp.phone_number_id; give no from",
        )
        .into());
    }
    let content = body.as_object().cloned().unwrap_or_default();
    let cid = crate::store::new_id();
    let mid = crate::store::new_id();
    let now = now();
    let mut row = render(s, channel, &to, from, &content, &mid, now).await?;
    row.idempotency_key = Some(format!("conversation:{cid}:1"));
    let ours = match channel {
        MessageChannel::Whatsapp => s
            .messaging
            .whatsapp
            .as_ref()
            .map(|d| d.phone_number_id.clone())
            .unwrap_or_default(),
        _ => serde_json::from_str::<Value>(&row.rendered)
            .ok()
            .and_then(|r| r["from"].as_str().map(str::to_string))
            .unwrap_or_default(),
    };
    let c = ConversationRow {
        id: cid.clone(),
        channel: channel.as_str().into(),
        our_key: address_key(&ours),
        contact_key: address_key(&row.recipient),
        our_address: ours,
        contact_address: row.recipient.clone(),
        worker,
        route_replies,
        status: "open".into(),
        closed_reason: None,
        created_at: now,
        last_activity_at: now,
        closed_at: None,
    };
    if let Err(existing) = s
        .store
        .open_conversation(&c, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("a conversation between these addresses is being opened; retry")
            }
            other => other.into(),
        })?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conversation_open",
            format!("conversation {} between these addresses is open (worker {:?}); reply on it or close it", existing.id, existing.worker),
        )
        .with_details(json!({"conversation": conversation_json(&existing)})));
    }
    let first = send(s, &c, row, now).await?;
    let mut v = conversation_json(&c);
    v["first_message"] = first;
    Ok(v)
}

pub(crate) async fn load(s: &ConvState, id: &str) -> ApiResult<ConversationRow> {
    s.store
        .get_conversation(id)
        .await
        .map_err(|e| ApiError::from_store(e, "conversation", id))
}

/// One conversation.
#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations",
    responses((status = 200, description = "The conversation.", body = doc::Conversation)))]
async fn read(State(s): State<ConvState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    Ok(Json(conversation_json(&load(&s, &id).await?)))
}

/// Conversations, newest first.
#[utoipa::path(get, path = "/conversations", tag = "conversations",
    params(Paging, ("worker" = Option<String>, Query), ("status" = Option<String>, Query, description = "open or closed.")),
    responses((status = 200, description = "A page of conversations.", body = doc::Page<doc::Conversation>)))]
async fn list(
    State(s): State<ConvState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    if let Some(st) = q.get("status") {
        if !["open", "closed"].contains(&st) {
            return Err(
                FieldError::new("status", format!("must be open or closed, got {st:?}")).into(),
            );
        }
    }
    let page = s
        .store
        .list_conversations(q.get("worker"), q.get("status"), &q.page()?)
        .await?;
    Ok(Json(
        serde_json::to_value(page.map(|c| conversation_json(&c))).map_err(ApiError::internal)?,
    ))
}

/// A conversation's messages both ways, oldest first.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "conversations",
    responses((status = 200, description = "The messages.", body = doc::ConversationMessages)))]
async fn messages(State(s): State<ConvState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let c = load(&s, &id).await?;
    let rows = s.store.conversation_messages(&c.id).await?;
    let mut items = Vec::with_capacity(rows.len());
    for m in rows {
        let status = if m.direction == "out" {
            s.store
                .get_message(&m.message_id)
                .await
                .ok()
                .map(|r| r.status)
        } else {
            Some("received".to_string())
        };
        items.push(
            json!({"seq": m.seq, "direction": m.direction, "message_id": m.message_id,
                          "body": m.body, "at": ts(m.at), "status": status}),
        );
    }
    Ok(Json(json!({"conversation_id": c.id, "items": items})))
}

/// The worker's reply (free text on WhatsApp only within 24 hours of the
/// contact's last message; a template otherwise).
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "conversations", request_body = doc::ReplyInput,
    responses((status = 202, description = "Queued.", body = doc::ConversationMessage),
        (status = 409, description = "The conversation is closed.", body = doc::ErrorRef)))]
async fn reply(
    State(s): State<ConvState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(reply_with(&s, &id, &body).await?),
    ))
}

/// Sends the worker's reply on conversation `id` (`POST …/messages`'s body).
pub(crate) async fn reply_with(s: &ConvState, id: &str, body: &Value) -> ApiResult<Value> {
    let f = Fields::new(body, "")?;
    f.deny_unknown(&CONTENT)?;
    let c = load(s, id).await?;
    if c.status != "open" {
        return Err(closed(&c.id));
    }
    let channel = MessageChannel::parse(&c.channel).ok_or_else(|| ApiError::internal("channel"))?;
    let from = (channel == MessageChannel::Sms).then_some(c.our_address.as_str());
    let content = body.as_object().cloned().unwrap_or_default();
    let now = now();
    let row = render(
        s,
        channel,
        &c.contact_address,
        from,
        &content,
        &crate::store::new_id(),
        now,
    )
    .await?;
    send(s, &c, row, now).await
}

/// Closes a conversation.
#[utoipa::path(post, path = "/conversations/{id}/close", tag = "conversations",
    responses((status = 200, description = "Closed.", body = doc::Conversation)))]
async fn close(State(s): State<ConvState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    Ok(Json(close_with(&s, &id).await?))
}

/// Closes conversation `id` (the worker's doing).
pub(crate) async fn close_with(s: &ConvState, id: &str) -> ApiResult<Value> {
    let c = load(s, id).await?;
    let closed = s
        .store
        .close_conversations(Some(&c.id), None, "closed_by_worker", now())
        .await?;
    match closed.first() {
        Some(c) => Ok(conversation_json(c)),
        None => Ok(conversation_json(&load(s, id).await?)),
    }
}
