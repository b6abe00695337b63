//! `/v1/notifications` (also at the notification platform's own
//! `/api/v1/...` paths): one send over several channels, each channel a
//! delivery carried by a message or a one-off call; read one, list them;
//! `/v1/channels/capabilities`. The follower (`notify::follower`) moves
//! them afterwards.
//!
//! Must not: send (each channel's worker does) or decide a status (the
//! store writes what `notify::status` says).

use utoipa_axum::routes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ts, ts_opt, IdPath, JsonBody, ListQuery};
use super::messages::compose::{
    email_row, slack_row, sms_row, unavailable, whatsapp_row, Templates,
};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::specs::CallRequest;
use crate::domain::FieldError;
use crate::message::request::{request_hash, EmailRequest, SlackRequest, SmsRequest};
use crate::message::service::Messaging;
use crate::message::transport::Transport;
use crate::notify::follower::{start_all, Pending};
use crate::notify::request::{
    rename_field, NotificationRequest, NotifyChannel, Strategy, TemplateChoice,
};
use crate::store::documents::AGENTS;
use crate::store::notifications::{
    DeliveryRow, NewDelivery, NewNotification, NotificationAccepted, NotificationFilter,
    NotificationRow,
};
use crate::store::{Store, StoreError};

#[derive(Clone)]
pub struct NotifyState {
    pub store: Store,
    pub messaging: Messaging,
    pub trunks: Arc<Vec<String>>,
    pub transports: Arc<Vec<(&'static str, Arc<dyn Transport>)>>,
}

/// The routes, relative to `/v1` or `/api/v1`.
mod bulk;

pub fn router(s: NotifyState) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(bulk::send_bulk))
        .routes(routes!(bulk::read_bulk))
        .routes(routes!(list))
        .routes(routes!(read))
        .routes(routes!(capabilities))
        .with_state(s)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn configured(s: &NotifyState, c: NotifyChannel) -> bool {
    match c {
        NotifyChannel::Email => s.messaging.email.is_some(),
        NotifyChannel::Sms => s.messaging.sms.is_some(),
        NotifyChannel::Voice => !s.trunks.is_empty(),
        NotifyChannel::Whatsapp => s.messaging.whatsapp.is_some(),
        NotifyChannel::Slack => s.messaging.slack.is_some(),
    }
}

/// An error of a channel's own request, named in the notification's terms.
fn renamed(channel: NotifyChannel, mut e: ApiError) -> ApiError {
    if let Some(field) = e.details.get("field").and_then(Value::as_str) {
        let f = rename_field(channel, FieldError::new(field, "")).field;
        e.details["field"] = json!(f);
    }
    e.message = format!("{}: {}", channel.as_str(), e.message);
    e
}

/// The template this channel renders: the one named for it, unless that
/// template is another channel's (then the raw content, if any, is used).
async fn template_for(
    s: &NotifyState,
    req: &NotificationRequest,
    channel: NotifyChannel,
) -> ApiResult<Option<String>> {
    let Some(choice) = &req.template else {
        return Ok(None);
    };
    let Some(t) = choice.for_channel(channel) else {
        return Ok(None);
    };
    if let TemplateChoice::PerChannel(_) = choice {
        return Ok(Some(t.to_string()));
    }
    match s.store.resolve_template(t).await {
        Ok(row) if row.channel != channel.as_str() && req.body.is_some() => Ok(None),
        Ok(row) if row.channel != channel.as_str() => Err(FieldError::new(
            "notification.template_id",
            format!(
                "template {:?} is for {}; {} needs notification.body, or one template per channel \
                 ({{\"{}\": \"...\", \"{}\": \"...\"}})",
                row.code,
                row.channel,
                channel.as_str(),
                row.channel,
                channel.as_str()
            ),
        )
        .into()),
        // Not found: the channel's own request says so.
        _ => Ok(Some(t.to_string())),
    }
}

/// One channel's delivery: its request checked and its row rendered now.
/// `template` is the one [`template_for`] chose for this channel.
#[allow(clippy::too_many_arguments)]
async fn delivery(
    s: &NotifyState,
    req: &NotificationRequest,
    nid: &str,
    position: usize,
    channel: NotifyChannel,
    template: Option<&str>,
    templates: &Templates,
    now: i64,
) -> ApiResult<(String, Pending)> {
    let body = req.channel_body(channel, template);
    let id = crate::store::new_id();
    let key = Some(format!("notification:{nid}:{position}"));
    let pending = match channel {
        NotifyChannel::Email => {
            let d = s
                .messaging
                .email
                .as_ref()
                .ok_or_else(|| unavailable("email"))?;
            let r =
                EmailRequest::parse(&body, d.max_retries).map_err(|e| rename_field(channel, e))?;
            let mut row = email_row(&s.store, &s.messaging, templates, &id, &r, now)
                .await
                .map_err(|e| renamed(channel, e))?;
            row.idempotency_key = key;
            Pending::Message { row: Box::new(row) }
        }
        NotifyChannel::Sms => {
            let d = s.messaging.sms.as_ref().ok_or_else(|| unavailable("sms"))?;
            let r =
                SmsRequest::parse(&body, d.max_retries).map_err(|e| rename_field(channel, e))?;
            let mut row = sms_row(&s.store, &s.messaging, templates, &id, &r, now)
                .await
                .map_err(|e| renamed(channel, e))?;
            row.idempotency_key = key;
            Pending::Message { row: Box::new(row) }
        }
        NotifyChannel::Voice => {
            let spec = CallRequest::parse(&body).map_err(|e| rename_field(channel, e))?;
            if let Some(agent) = spec.agent_id.as_deref() {
                match s.store.get_doc(AGENTS, agent).await {
                    Ok(_) => {}
                    Err(StoreError::NotFound) => {
                        return Err(FieldError::new(
                            "notification.agent_id",
                            format!("no agent with id {agent:?}"),
                        )
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !s.trunks.contains(&spec.trunk) {
                return Err(unavailable("voice"));
            }
            Pending::Call { request: body }
        }
        NotifyChannel::Whatsapp => {
            let d = s
                .messaging
                .whatsapp
                .as_ref()
                .ok_or_else(|| unavailable("whatsapp"))?;
            let r =
                SmsRequest::parse(&body, d.max_retries).map_err(|e| rename_field(channel, e))?;
            let mut row = whatsapp_row(&s.store, &s.messaging, templates, &id, &r, now)
                .await
                .map_err(|e| renamed(channel, e))?;
            row.idempotency_key = key;
            Pending::Message { row: Box::new(row) }
        }
        NotifyChannel::Slack => {
            let d = s
                .messaging
                .slack
                .as_ref()
                .ok_or_else(|| unavailable("slack"))?;
            let r =
                SlackRequest::parse(&body, d.max_retries).map_err(|e| rename_field(channel, e))?;
            let mut row = slack_row(&s.store, &s.messaging, templates, &id, &r, now)
                .await
                .map_err(|e| renamed(channel, e))?;
            row.idempotency_key = key;
            Pending::Message { row: Box::new(row) }
        }
    };
    Ok((id, pending))
}

/// Sends one notification over its channels (all at once, or each as
/// the fallback of the one before).
#[utoipa::path(post, path = "/notifications/send", tag = "notifications", request_body = doc::NotificationInput,
    responses((status = 202, description = "Accepted (or the first again, for a repeated idempotency_key).", body = doc::Notification),
        (status = 409, description = "A request with this idempotency_key is being accepted; retry.", body = doc::ErrorRef)))]
async fn send(
    State(s): State<NotifyState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = NotificationRequest::parse(&body)?;
    req.check_channels().map_err(|r| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.code, r.message)
            .with_details(json!({"field": r.field}))
    })?;
    for &c in &req.channels {
        if !configured(&s, c) {
            return Err(unavailable(c.as_str())
                .with_details(json!({"field": "notification.channels", "channel": c.as_str()})));
        }
    }
    let now = now();
    let templates = Templates::default();
    let mut chosen = Vec::with_capacity(req.channels.len());
    for &c in &req.channels {
        chosen.push(template_for(&s, &req, c).await?);
    }
    let (n, _) = build(&s, &req, &chosen, &templates, None, now).await?;
    let nid = n.id.clone();
    let id = match s
        .store
        .accept_notification(&n, now)
        .await
        .map_err(idempotency_error)?
    {
        NotificationAccepted::New => {
            let (_, ds) = s.store.get_notification(&nid).await?;
            let starting: Vec<DeliveryRow> =
                ds.into_iter().filter(|d| d.status == "starting").collect();
            // A failure here leaves them `starting`: the follower starts them.
            if let Err(e) = start_all(&s.store, &s.messaging, &starting, now).await {
                tracing::warn!(error = %e, notification = %nid, "starting a notification's deliveries failed; the follower retries");
            }
            nid
        }
        NotificationAccepted::Existing(id) => id,
    };
    let v = notification_value(&s, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// A notification's row, its deliveries rendered now (`chosen`: each
/// channel's template, from [`template_for`]), and each delivery that
/// starts now with the message it inserts.
async fn build(
    s: &NotifyState,
    req: &NotificationRequest,
    chosen: &[Option<String>],
    templates: &Templates,
    bulk_id: Option<&str>,
    now: i64,
) -> ApiResult<(NewNotification, Vec<Pending>)> {
    let nid = crate::store::new_id();
    let fallback_after_ms = req.fallback_after_s.map(|s| s * 1000);
    let mut deliveries = Vec::with_capacity(req.channels.len());
    let mut starting = Vec::new();
    for (i, &c) in req.channels.iter().enumerate() {
        let template = chosen.get(i).and_then(|t| t.as_deref());
        let (message_id, pending) = delivery(s, req, &nid, i, c, template, templates, now).await?;
        let starts = req.strategy == Strategy::All || i == 0;
        deliveries.push(NewDelivery {
            channel: c.as_str().into(),
            status: if starts { "starting" } else { "waiting" },
            message_id,
            // A bulk writes a starting message with its delivery: nothing to keep.
            pending: if starts && bulk_id.is_some() && matches!(pending, Pending::Message { .. }) {
                String::new()
            } else {
                serde_json::to_string(&pending).map_err(ApiError::internal)?
            },
            deadline_at: fallback_after_ms
                .filter(|_| {
                    starts && req.strategy == Strategy::Fallback && i + 1 < req.channels.len()
                })
                .map(|ms| now + ms),
        });
        if starts {
            starting.push(pending);
        }
    }
    let n = NewNotification {
        id: nid,
        strategy: req.strategy.as_str().into(),
        fallback_after_ms,
        recipient: req.recipient.key(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        idempotency_key: req.idempotency_key.clone(),
        request_hash: request_hash(req),
        bulk_id: bulk_id.map(str::to_string),
        deliveries,
    };
    Ok((n, starting))
}

fn idempotency_error(e: StoreError) -> ApiError {
    match e {
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
    }
}

/// A delivery's status as the API shows it (`starting` is `queued`).
fn shown(status: &str) -> &str {
    if status == "starting" {
        "queued"
    } else {
        status
    }
}

/// The API's view of a notification, each delivery with its attempts.
async fn notification_value(s: &NotifyState, id: &str) -> ApiResult<Value> {
    let (n, ds) = s
        .store
        .get_notification(id)
        .await
        .map_err(|e| ApiError::from_store(e, "notification", id))?;
    let mut deliveries = Vec::with_capacity(ds.len());
    for d in &ds {
        let attempts = if d.status == "waiting" || d.status == "skipped" {
            0
        } else if d.channel == "voice" {
            s.store
                .get_call(&d.message_id)
                .await
                .map(|c| c.attempt as i64)
                .unwrap_or(0)
        } else {
            s.store
                .get_message(&d.message_id)
                .await
                .map(|m| m.tries)
                .unwrap_or(0)
        };
        deliveries.push(json!({
            "channel": d.channel, "status": shown(&d.status), "reason": d.reason,
            "message_id": d.message_id, "attempts": attempts,
            "started_at": ts_opt(d.started_at), "updated_at": ts(d.updated_at),
        }));
    }
    Ok(notification_json(&n, deliveries))
}

fn notification_json(n: &NotificationRow, deliveries: Vec<Value>) -> Value {
    let request: Value = serde_json::from_str(&n.request).unwrap_or(Value::Null);
    let mut o = Map::new();
    o.insert("notification_id".into(), json!(n.id));
    o.insert("id".into(), json!(n.id));
    o.insert("status".into(), json!(n.status));
    o.insert("strategy".into(), json!(n.strategy));
    o.insert(
        "fallback_after_s".into(),
        json!(n.fallback_after_ms.map(|ms| ms / 1000)),
    );
    for k in ["recipient", "channels", "priority", "idempotency_key"] {
        o.insert(k.into(), request.get(k).cloned().unwrap_or(Value::Null));
    }
    o.insert("bulk_id".into(), json!(n.bulk_id));
    o.insert("deliveries".into(), Value::Array(deliveries));
    o.insert("created_at".into(), ts(n.created_at));
    o.insert("updated_at".into(), ts(n.updated_at));
    o.insert("final_at".into(), ts_opt(n.final_at));
    Value::Object(o)
}

/// One notification and its deliveries.
#[utoipa::path(get, path = "/notifications/{id}", tag = "notifications",
    responses((status = 200, description = "The notification.", body = doc::Notification)))]
async fn read(State(s): State<NotifyState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    Ok(Json(notification_value(&s, &id).await?))
}

/// Notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    params(Paging, ("status" = Option<String>, Query), ("channel" = Option<String>, Query), ("recipient" = Option<String>, Query),
        ("bulk_id" = Option<String>, Query), ("created_after" = Option<String>, Query, description = "RFC 3339."),
        ("created_before" = Option<String>, Query, description = "RFC 3339.")),
    responses((status = 200, description = "A page of notifications.", body = doc::Page<doc::Notification>)))]
async fn list(
    State(s): State<NotifyState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    if let Some(st) = q.get("status") {
        if !["queued", "sent", "delivered", "failed"].contains(&st) {
            return Err(FieldError::new(
                "status",
                format!("must be one of queued, sent, delivered, failed; got {st:?}"),
            )
            .into());
        }
    }
    if let Some(c) = q.get("channel") {
        if NotifyChannel::parse(c).is_none() {
            return Err(FieldError::new(
                "channel",
                format!("must be one of email, sms, whatsapp, slack, voice; got {c:?}"),
            )
            .into());
        }
    }
    let time = |key: &str| -> Result<Option<i64>, FieldError> {
        q.get(key)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| {
                        FieldError::new(key, format!("must be an RFC 3339 timestamp, got {v:?}"))
                    })
            })
            .transpose()
    };
    let recipient = q.get("recipient").map(|r| {
        if r.contains('@') {
            r.to_ascii_lowercase()
        } else {
            r.to_string()
        }
    });
    let filter = NotificationFilter {
        status: q.get("status"),
        channel: q.get("channel"),
        recipient: recipient.as_deref(),
        bulk_id: q.get("bulk_id"),
        created_after: time("created_after")?,
        created_before: time("created_before")?,
    };
    let page = s.store.list_notifications(&filter, &q.page()?).await?;
    let ids: Vec<&str> = page.items.iter().map(|n| n.id.as_str()).collect();
    let ds = s.store.deliveries_of(&ids).await?;
    let page = page.map(|n| {
        let mine = ds
            .iter()
            .filter(|d| d.notification_id == n.id)
            .map(|d| json!({"channel": d.channel, "status": shown(&d.status), "reason": d.reason, "message_id": d.message_id}))
            .collect();
        notification_json(&n, mine)
    });
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}

/// A failover channel's providers in order, each with its state and health
/// (an empty list for a channel with one transport).
fn providers(s: &NotifyState, channel: &str) -> Vec<Value> {
    let Some((_, t)) = s.transports.iter().find(|(c, _)| *c == channel) else {
        return Vec::new();
    };
    t.providers()
        .into_iter()
        .map(|p| {
            let mut v = s
                .messaging
                .health
                .snapshot(&format!("{channel}/{}", p.name), now());
            v["name"] = json!(p.name);
            v["transport"] = json!(p.transport);
            v["ready"] = json!(p.ready);
            // Up unless failover marked it down.
            v["healthy"] = json!(p.up);
            v
        })
        .collect()
}

/// `GET /v1/channels/capabilities`: per channel, whether it is configured
/// (and its transport ready), its recipient field, template policy, limits
/// and rate limit.
/// What each channel can do here now.
#[utoipa::path(get, path = "/channels/capabilities", tag = "notifications",
    responses((status = 200, description = "The channels.", body = doc::Capabilities)))]
async fn capabilities(State(s): State<NotifyState>) -> Json<Value> {
    let ready = |name: &str| {
        s.transports
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, t)| (t.name(), t.ready()))
    };
    let channels: Vec<Value> = NotifyChannel::ALL
        .into_iter()
        .map(|c| {
            let (transport, is_ready, rate, limits) = match c {
                NotifyChannel::Email => (
                    ready("email"),
                    None,
                    s.messaging.email.as_ref().map(|d| d.max_per_second),
                    json!({"max_recipients": crate::message::request::MAX_EMAIL_RECIPIENTS,
                           "max_subject_chars": crate::message::request::MAX_SUBJECT_CHARS,
                           "max_body_chars": crate::message::request::MAX_EMAIL_BODY_CHARS}),
                ),
                NotifyChannel::Sms => (
                    ready("sms"),
                    None,
                    s.messaging.sms.as_ref().map(|d| d.max_per_second),
                    json!({"max_segments": crate::message::sms_text::MAX_SEGMENTS,
                           "gsm7_chars_per_segment": [160, 153], "ucs2_chars_per_segment": [70, 67],
                           "rate_limit_counts": "segments"}),
                ),
                NotifyChannel::Whatsapp => (
                    ready("whatsapp"),
                    None,
                    s.messaging.whatsapp.as_ref().map(|d| d.max_per_second),
                    json!({"free_text_window_hours": 24,
                           "max_template_parameters": crate::message::template::MAX_PROVIDER_PARAMETERS}),
                ),
                NotifyChannel::Slack => (
                    ready("slack"),
                    None,
                    s.messaging.slack.as_ref().map(|d| d.max_per_second),
                    json!({"max_text_chars": 40_000}),
                ),
                NotifyChannel::Voice => (
                    Some(("sip", !s.trunks.is_empty())),
                    None,
                    None,
                    json!({"trunks": s.trunks.len()}),
                ),
            };
            let (transport_name, ready) = match transport {
                Some((name, r)) => (Some(name), r),
                None => (None, is_ready.unwrap_or(false)),
            };
            json!({
                "channel": c.as_str(),
                "configured": configured(&s, c),
                "ready": configured(&s, c) && ready,
                "transport": transport_name,
                "recipient_field": c.recipient_field(),
                "template_policy": c.template_policy(),
                "limits": limits,
                "rate_limit_per_second": rate.filter(|r| *r > 0),
                "health": s.messaging.health.snapshot(c.as_str(), now()),
                "providers": providers(&s, c.as_str()),
            })
        })
        .collect();
    Json(json!({"channels": channels}))
}
