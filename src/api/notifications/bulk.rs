//! `POST /v1/notifications/bulk`: one notification per recipient (up to
//! 100,000), the channels, template and content shared, each recipient's
//! `data` over the shared `data`. Valid rows are accepted and invalid ones
//! reported by index with the reason; the rows are written a chunk at a
//! time, each chunk's notifications with the messages they start in one
//! transaction. With an `idempotency_key` the answer is kept: the same key
//! and body answer it again (each row's own key is `{key}:{index}`, so a
//! bulk sent again after a crash writes only the rows that were not).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sha2::Digest;

use super::{build, configured, now, template_for, NotifyState};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{parse_json, IdPath, JsonBytes};
use crate::api::messages::compose::{unavailable, Templates};
use crate::api::openapi::schemas as doc;
use crate::domain::fields::Fields;
use crate::domain::FieldError;
use crate::message::status::MessageChannel;
use crate::notify::follower::{start_all, Pending};
use crate::notify::request::NotificationRequest;
use crate::store::messages::NewMessage;
use crate::store::notification_bulk::BULK_CHUNK;
use crate::store::notifications::{DeliveryRow, NewNotification};

/// Most recipients in one bulk.
pub const MAX_RECIPIENTS: usize = 100_000;

const SHARED: [&str; 6] = [
    "channels",
    "template_id",
    "subject",
    "body",
    "data",
    "agent_id",
];

/// One row's refusal.
fn refusal(index: usize, code: &str, field: &str, reason: &str) -> Value {
    json!({"index": index, "code": code, "field": field, "reason": reason})
}

/// The notification request of recipient `i`.
fn row_request(
    top: &Map<String, Value>,
    row: &Value,
    i: usize,
    key: Option<&str>,
) -> Result<NotificationRequest, Value> {
    let Some(r) = row.as_object() else {
        return Err(refusal(
            i,
            "validation_failed",
            &format!("recipients[{i}]"),
            "must be an object",
        ));
    };
    let mut recipient = Map::new();
    let mut data = top
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in r {
        match k.as_str() {
            "email" | "phone" | "slack_user_id" | "whatsapp" => {
                recipient.insert(k.clone(), v.clone());
            }
            "data" => match v {
                Value::Object(d) => data.extend(d.clone()),
                Value::Null => {}
                _ => {
                    return Err(refusal(
                        i,
                        "validation_failed",
                        &format!("recipients[{i}].data"),
                        "must be an object",
                    ))
                }
            },
            other => {
                return Err(refusal(
                    i,
                    "validation_failed",
                    &format!("recipients[{i}].{other}"),
                    "unknown field; expected one of: email, phone, slack_user_id, whatsapp, data",
                ))
            }
        }
    }
    let mut notification = Map::new();
    for k in SHARED {
        if let Some(v) = top.get(k) {
            notification.insert(k.into(), v.clone());
        }
    }
    notification.insert("data".into(), Value::Object(data));
    let mut body = json!({"recipient": recipient, "notification": notification});
    for k in ["strategy", "fallback_after_s", "priority"] {
        if let Some(v) = top.get(k) {
            body[k] = v.clone();
        }
    }
    if let Some(key) = key {
        body["idempotency_key"] = json!(format!("{key}:{i}"));
    }
    NotificationRequest::parse(&body).map_err(|e| {
        let field = e.field.replace("recipient.", &format!("recipients[{i}]."));
        refusal(i, "validation_failed", &field, &e.reason)
    })
}

/// A bulk's body: the shared fields parsed, the recipients kept as slices
/// of the request, each parsed when its turn comes (a parsed recipient
/// costs ten times its JSON).
struct BulkBody<'a> {
    top: Value,
    recipients: Option<Vec<&'a RawValue>>,
}

fn bulk_body(bytes: &[u8]) -> ApiResult<BulkBody<'_>> {
    let not_json = |e: serde_json::Error| {
        ApiError::bad_request(format!("request body is not valid JSON: {e}"))
    };
    let fields: std::collections::BTreeMap<String, &RawValue> = match serde_json::from_slice(bytes)
    {
        Ok(m) => m,
        // Not an object (or not JSON): said as any other body would be.
        Err(_) => {
            let v = parse_json(bytes)?;
            Fields::new(&v, "")?;
            return Err(ApiError::bad_request(
                "request body is not a JSON object of fields",
            ));
        }
    };
    let mut top = Map::new();
    let mut recipients = None;
    for (k, raw) in fields {
        if k == "recipients" {
            match serde_json::from_str::<Option<Vec<&RawValue>>>(raw.get()) {
                Ok(r) => recipients = r,
                Err(_) => {
                    let v: Value = serde_json::from_str(raw.get()).map_err(not_json)?;
                    return Err(FieldError::new(
                        "recipients",
                        format!(
                            "must be an array, got {}",
                            crate::domain::fields::type_name(&v)
                        ),
                    )
                    .into());
                }
            }
        } else {
            top.insert(k, serde_json::from_str(raw.get()).map_err(not_json)?);
        }
    }
    Ok(BulkBody {
        top: Value::Object(top),
        recipients,
    })
}

/// The bulk's request hash: its shared fields and every recipient, each in
/// its canonical form (key order and spacing do not matter).
fn bulk_hash(top: &Value, rows: &[&RawValue]) -> ApiResult<String> {
    let mut h = sha2::Sha256::new();
    h.update(top.to_string().as_bytes());
    for r in rows {
        let v: Value = serde_json::from_str(r.get()).map_err(ApiError::internal)?;
        h.update(b"\n");
        h.update(v.to_string().as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// Sends one notification to each of many recipients (up to 100,000 in
/// one body); each row is checked alone, bad rows are reported, good ones sent.
#[utoipa::path(post, path = "/notifications/bulk", tag = "notifications", request_body = doc::BulkInput,
    responses((status = 202, description = "Accepted.", body = doc::BulkAccepted)))]
pub(super) async fn send_bulk(
    State(s): State<NotifyState>,
    JsonBytes(bytes): JsonBytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let BulkBody {
        top: body,
        recipients,
    } = bulk_body(&bytes)?;
    let f = Fields::new(&body, "")?;
    let mut allowed = SHARED.to_vec();
    allowed.extend([
        "recipients",
        "strategy",
        "fallback_after_s",
        "idempotency_key",
        "priority",
    ]);
    f.deny_unknown(&allowed)?;
    let rows = recipients
        .ok_or_else(|| FieldError::new("recipients", "is required: at least one recipient"))?;
    if rows.is_empty() || rows.len() > MAX_RECIPIENTS {
        return Err(FieldError::new(
            "recipients",
            format!(
                "must hold 1 to {MAX_RECIPIENTS} recipients, got {}",
                rows.len()
            ),
        )
        .into());
    }
    let key = f
        .str_max("idempotency_key", 200)?
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let hash = match key {
        Some(_) => bulk_hash(&body, &rows)?,
        None => String::new(),
    };
    if let Some(key) = key {
        if let Some((stored_hash, answer)) = s.store.bulk_answer(key).await? {
            if stored_hash != hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this idempotency_key was used with another request body",
                )
                .with_details(json!({"field": "idempotency_key"})));
            }
            let answer: Value = serde_json::from_str(&answer).map_err(ApiError::internal)?;
            return Ok((StatusCode::ACCEPTED, Json(answer)));
        }
    }
    // A bulk sent again under its key keeps its id.
    let bulk_id = match key {
        Some(k) => {
            let h = hex::encode(&sha2::Sha256::digest(format!("bulk:{k}").as_bytes())[..16]);
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        None => crate::store::new_id(),
    };
    let top: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    let now = now();
    let templates = Templates::default();
    let mut rejected = Vec::new();
    let mut chosen: Option<Vec<Option<String>>> = None;
    let mut accepted = 0usize;
    let mut chunk: Vec<NewNotification> = Vec::with_capacity(BULK_CHUNK);
    let mut messages: Vec<(String, NewMessage)> = Vec::new();
    let mut calls: Vec<DeliveryRow> = Vec::new();
    let mut writing: Option<tokio::task::JoinHandle<ApiResult<usize>>> = None;
    let mut hold = None;
    for (i, raw) in rows.iter().enumerate() {
        // Valid JSON: the body parsed as a whole.
        let row: Value = serde_json::from_str(raw.get()).map_err(ApiError::internal)?;
        let req = match row_request(&top, &row, i, key) {
            Ok(r) => r,
            Err(e) => {
                rejected.push(e);
                continue;
            }
        };
        if chosen.is_none() {
            // Every row shares the channels and templates: checked once.
            for &c in &req.channels {
                if !configured(&s, c) {
                    return Err(unavailable(c.as_str())
                        .with_details(json!({"field": "channels", "channel": c.as_str()})));
                }
            }
            let mut per = Vec::with_capacity(req.channels.len());
            for &c in &req.channels {
                per.push(template_for(&s, &req, c).await?);
            }
            chosen = Some(per);
            // This node's senders leave the bulk's rank (and lower) alone
            // until it is accepted; see `message::holds`.
            hold = s
                .messaging
                .holds
                .hold(crate::message::request::priority_rank(&req.priority));
        }
        if let Err(r) = req.check_channels() {
            let field = r.field.replace("recipient.", &format!("recipients[{i}]."));
            rejected.push(refusal(i, r.code, &field, &r.message));
            continue;
        }
        let (mut n, starting) = match build(
            &s,
            &req,
            chosen.as_deref().unwrap_or_default(),
            &templates,
            Some(&bulk_id),
            now,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                let field = e
                    .details
                    .get("field")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .replace("recipient.", &format!("recipients[{i}]."));
                rejected.push(refusal(i, e.code, &field, &e.message));
                continue;
            }
        };
        let mut pending = starting.into_iter();
        for (pos, d) in n.deliveries.iter_mut().enumerate() {
            if d.status != "starting" {
                continue;
            }
            match pending.next() {
                Some(Pending::Message { row }) => {
                    d.status = "queued";
                    messages.push((n.id.clone(), *row));
                }
                Some(Pending::Call { .. }) => calls.push(DeliveryRow {
                    notification_id: n.id.clone(),
                    position: pos as i64,
                    channel: d.channel.clone(),
                    status: "starting".into(),
                    reason: None,
                    message_id: d.message_id.clone(),
                    pending: Some(d.pending.clone()),
                    started_at: Some(now),
                    deadline_at: d.deadline_at,
                    updated_at: now,
                }),
                None => {}
            }
        }
        chunk.push(n);
        if chunk.len() >= BULK_CHUNK {
            // The chunk is written while the next is rendered.
            if let Some(w) = writing.take() {
                accepted += joined(w).await?;
            }
            let parts = (
                std::mem::take(&mut chunk),
                std::mem::take(&mut messages),
                std::mem::take(&mut calls),
            );
            let s2 = s.clone();
            writing = Some(tokio::spawn(async move {
                write(&s2, parts.0, parts.1, parts.2, now).await
            }));
        }
    }
    if let Some(w) = writing.take() {
        accepted += joined(w).await?;
    }
    accepted += write(&s, chunk, messages, calls, now).await?;
    let answer = json!({"bulk_id": bulk_id, "total": rows.len(), "accepted": rows.len() - rejected.len(),
                        "written": accepted, "rejected": rejected});
    if let Some(key) = key {
        s.store
            .keep_bulk_answer(&bulk_id, key, &hash, &answer.to_string(), now)
            .await?;
    }
    drop(hold);
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// A chunk's write, awaited.
async fn joined(w: tokio::task::JoinHandle<ApiResult<usize>>) -> ApiResult<usize> {
    w.await.map_err(ApiError::internal)?
}

/// Writes a chunk and starts its calls; how many notifications were new.
async fn write(
    s: &NotifyState,
    chunk: Vec<NewNotification>,
    messages: Vec<(String, NewMessage)>,
    calls: Vec<DeliveryRow>,
    now: i64,
) -> ApiResult<usize> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let written = s.store.accept_bulk_chunk(&chunk, &messages, now).await?;
    let mut woke: Vec<MessageChannel> = messages
        .iter()
        .filter_map(|(_, m)| MessageChannel::parse(&m.channel))
        .collect();
    woke.dedup();
    for c in woke {
        s.messaging.wake(c);
    }
    let new_calls: Vec<DeliveryRow> = calls
        .into_iter()
        .filter(|c| written.contains(&c.notification_id))
        .collect();
    if let Err(e) = start_all(&s.store, &s.messaging, &new_calls, now).await {
        tracing::warn!(error = %e, "starting a bulk's calls failed; the follower retries");
    }
    Ok(written.len())
}

/// `GET /v1/notifications/bulk/{id}`: the bulk's notifications by status.
/// A bulk's notifications by status.
#[utoipa::path(get, path = "/notifications/bulk/{id}", tag = "notifications",
    responses((status = 200, description = "The counts.", body = doc::BulkStatus)))]
pub(super) async fn read_bulk(
    State(s): State<NotifyState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let counts = s.store.bulk_counts(&id).await?;
    if counts.is_empty() {
        return Err(ApiError::not_found("bulk", &id));
    }
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let by: Map<String, Value> = counts.into_iter().map(|(k, n)| (k, json!(n))).collect();
    Ok(Json(json!({"bulk_id": id, "total": total, "by_status": by,
                   "notifications": format!("/v1/notifications?bulk_id={id}")})))
}
