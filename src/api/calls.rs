//! Calls: every attempt of a campaign, and one-off calls (`POST /v1/calls`,
//! the seed API's `outboundCalls`): now or at `scheduled_at`, with their own
//! retries; rescheduled while waiting, cancelled with a reason, deleted.

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{IdPath, JsonBody, ListQuery};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::agent::AgentRuntime;
use crate::domain::fields::Fields;
use crate::domain::specs::{CallRequest, ScheduleType};
use crate::domain::{FieldError, Outcome};
use crate::store::calls::{CallFilter, CallRow};
use crate::store::documents::AGENTS;
use crate::store::oneoff::NewOneOff;
use crate::store::{Store, StoreError};

pub const STATUSES: [&str; 6] = [
    "pending",
    "scheduled",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
];

/// Longest cancel reason.
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Clone)]
struct CallsState {
    store: Store,
    trunks: std::sync::Arc<Vec<String>>,
    runtime: AgentRuntime,
}

pub fn router(
    store: Store,
    trunks: std::sync::Arc<Vec<String>>,
    runtime: AgentRuntime,
) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, reschedule, remove))
        .routes(routes!(cancel))
        .routes(routes!(set_result))
        .with_state(CallsState {
            store,
            trunks,
            runtime,
        })
}

/// `POST /v1/calls/{id}/result` `{"result": "..."}`: an agent's result for a
/// live call (`completed`, `retry`, `opted_out` or a disposition), recorded
/// with the attempt when the call ends. The last one set wins.
#[utoipa::path(post, path = "/calls/{id}/result", tag = "calls", request_body = doc::ResultInput,
    responses((status = 200, description = "Set.", body = doc::ResultSet),
        (status = 409, description = "The call is not in progress (call_not_live).", body = doc::ErrorRef)))]
async fn set_result(
    State(s): State<CallsState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["result"])?;
    let result = f.str_req("result")?;
    match s.runtime.sessions.get(&id) {
        Some(ctl) => {
            ctl.set_result(result)
                .map_err(|why| FieldError::new("result", why))?;
            Ok(Json(
                json!({"id": id, "result": ctl.result(), "live": true}),
            ))
        }
        None => {
            let call = s
                .store
                .get_call(&id)
                .await
                .map_err(|e| ApiError::from_store(e, "call", &id))?;
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "call_not_live",
                format!(
                    "call {id} is not in progress (status {}); a result is set during the call",
                    call.status
                ),
            ))
        }
    }
}

/// A call as the API shows it.
pub(crate) fn call_json(c: &CallRow) -> Value {
    let ts = |ms: Option<i64>| {
        ms.map_or(Value::Null, |ms| {
            Value::String(
                crate::store::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        })
    };
    json!({
        "id": c.id,
        "campaign_id": c.campaign_id,
        "target_id": c.target_id,
        "destination_index": c.destination_index,
        "attempt": c.attempt,
        "agent_id": c.agent_id,
        "trunk": c.trunk,
        "status": c.status,
        "sip_call_id": c.sip_call_id,
        "from": c.from_uri,
        "to": c.to_uri,
        "outcome": c.outcome,
        "sip_code": c.sip_code,
        "q850_cause": c.q850_cause,
        "result": c.result,
        "hangup_by": c.hangup_by,
        "reason": c.reason,
        "answered_by": c.answered_by,
        "amd_ms": c.amd_ms,
        "created_at": ts(c.created_at),
        "invite_sent_at": ts(c.invite_sent_at),
        "ringing_at": ts(c.ringing_at),
        "answered_at": ts(c.answered_at),
        "ended_at": ts(c.ended_at),
        "duration_ms": c.duration_ms,
        "scheduled_at": ts(c.scheduled_at),
        "request": c.request,
        "attempts": c.attempts,
    })
}

/// The call `id` as the API shows it.
async fn call_value(s: &CallsState, id: &str) -> Result<Value, StoreError> {
    s.store.get_call(id).await.map(|c| call_json(&c))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Places a one-off call, now or at `scheduled_at`, with retries.
#[utoipa::path(post, path = "/calls", tag = "calls", request_body = doc::CallInput,
    responses((status = 201, description = "Queued.", body = doc::Call)))]
async fn create(
    State(s): State<CallsState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = CallRequest::parse(&body)?;
    if let Some(agent) = spec.agent_id.as_deref() {
        match s.store.get_doc(AGENTS, agent).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(
                    FieldError::new("agent_id", format!("no agent with id {agent:?}")).into(),
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    let trunk = spec.trunk.as_str();
    if !s.trunks.iter().any(|t| t == trunk) {
        return Err(FieldError::new(
            "trunk",
            format!("no trunk named {trunk:?} in the configuration"),
        )
        .into());
    }
    let now = now_ms();
    let scheduled = spec.schedule_type == ScheduleType::Scheduled;
    let id = s
        .store
        .insert_one_off(
            &NewOneOff {
                to: &spec.to,
                from: spec.from.as_deref(),
                agent_id: spec.agent_id.as_deref(),
                trunk,
                status: if scheduled { "scheduled" } else { "pending" },
                scheduled_at: spec.scheduled_at.unwrap_or(now),
                spec: &spec,
            },
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(call_value(&s, &id).await?)))
}

/// Calls: campaign attempts and one-off calls, newest first.
#[utoipa::path(get, path = "/calls", tag = "calls",
    params(Paging, ("campaign_id" = Option<String>, Query), ("target_id" = Option<String>, Query),
        ("outcome" = Option<String>, Query), ("status" = Option<String>, Query), ("agent_id" = Option<String>, Query),
        ("created_after" = Option<String>, Query, description = "RFC 3339."), ("created_before" = Option<String>, Query, description = "RFC 3339.")),
    responses((status = 200, description = "A page of calls.", body = doc::Page<doc::Call>)))]
async fn list(
    State(s): State<CallsState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    if let Some(o) = q.get("outcome") {
        Outcome::parse(o)
            .ok_or_else(|| FieldError::new("outcome", format!("unknown outcome {o:?}")))?;
    }
    if let Some(st) = q.get("status") {
        if !STATUSES.contains(&st) {
            return Err(FieldError::new(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            )
            .into());
        }
    }
    let time = |key: &str| -> Result<Option<i64>, FieldError> {
        q.get(key)
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.timestamp_millis())
                    .map_err(|_| {
                        FieldError::new(key, format!("must be an RFC 3339 timestamp, got {t:?}"))
                    })
            })
            .transpose()
    };
    let filter = CallFilter {
        campaign_id: q.id("campaign_id")?,
        target_id: q.id("target_id")?,
        outcome: q.get("outcome"),
        status: q.get("status"),
        agent_id: q.id("agent_id")?,
        created_after: time("created_after")?,
        created_before: time("created_before")?,
    };
    let page = s.store.list_calls(&filter, &q.page()?).await?;
    Ok(Json(
        serde_json::to_value(page.map(|c| call_json(&c))).expect("page serializes"),
    ))
}

/// One call.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls",
    responses((status = 200, description = "The call.", body = doc::Call)))]
async fn read(State(s): State<CallsState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    Ok(Json(
        call_value(&s, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "call", &id))?,
    ))
}

/// The 409 for a call that is not waiting any more.
async fn not_waiting(s: &CallsState, id: &str, verb: &str) -> ApiError {
    match s.store.get_call(id).await {
        Ok(c) => ApiError::conflict(format!("cannot {verb} a call that is {}", c.status))
            .with_details(json!({"status": c.status})),
        Err(e) => ApiError::from_store(e, "call", id),
    }
}

/// `{"scheduled_at": "…"}` moves a pending or scheduled one-off call.
#[utoipa::path(patch, path = "/calls/{id}", tag = "calls", request_body = doc::Reschedule,
    responses((status = 200, description = "Moved.", body = doc::Call),
        (status = 409, description = "Not pending or scheduled (details.status).", body = doc::ErrorRef)))]
async fn reschedule(
    State(s): State<CallsState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["scheduled_at"])?;
    let at = f
        .timestamp_opt("scheduled_at")?
        .ok_or_else(|| f.err("scheduled_at", "is required"))?;
    if !s.store.reschedule_one_off(&id, at).await? {
        return Err(not_waiting(&s, &id, "reschedule").await);
    }
    Ok(Json(call_value(&s, &id).await?))
}

/// `{"reason": "…"}` cancels a pending or scheduled one-off call.
#[utoipa::path(post, path = "/calls/{id}/cancel", tag = "calls", request_body = doc::Reason,
    responses((status = 200, description = "Cancelled.", body = doc::Call),
        (status = 409, description = "Not pending or scheduled (details.status).", body = doc::ErrorRef)))]
async fn cancel(
    State(s): State<CallsState>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["reason"])?;
    let reason = f
        .str_max("reason", MAX_REASON_CHARS)?
        .unwrap_or("cancelled by request");
    if !s.store.cancel_one_off(&id, reason, now_ms()).await? {
        return Err(not_waiting(&s, &id, "cancel").await);
    }
    Ok(Json(call_value(&s, &id).await?))
}

/// Deletes a one-off call that is not being dialed.
#[utoipa::path(delete, path = "/calls/{id}", tag = "calls",
    responses((status = 204, description = "Deleted."),
        (status = 409, description = "It is being dialed (details.status).", body = doc::ErrorRef)))]
async fn remove(State(s): State<CallsState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    if s.store.delete_call(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_waiting(&s, &id, "delete").await)
    }
}
