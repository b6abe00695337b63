//! Targets: add (JSON, one or many, or streamed `text/csv`), list with a state
//! filter, read, delete, and a target's transition history.

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, ts, ts_opt, IdPath, ListQuery};
use super::import::{import_csv, Importer, RowRef};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::target::parse_target;
use crate::domain::{FieldError, TargetState};
use crate::store::documents::OUTDIALS;
use crate::store::targets::{Inserted, TargetEvent, TargetRow};
use crate::store::{new_id, Store, StoreError};

/// JSON requests of at most this many rows get a per-row `items` list back.
const ITEMS_UP_TO: usize = 10_000;

#[derive(Clone)]
struct TargetsState {
    store: Store,
    json_limit: usize,
    csv_limit: u64,
}

pub fn router(store: Store, json_limit: usize, csv_limit: u64) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(add, list))
        .routes(routes!(read, remove))
        .routes(routes!(events))
        .with_state(TargetsState {
            store,
            json_limit,
            csv_limit,
        })
}

pub fn target_json(t: &TargetRow) -> Value {
    json!({
        "id": t.id,
        "outdial_id": t.outdial_id,
        "name": t.name,
        "destinations": t.destinations,
        "destination_index": t.destination_index,
        "try_count_max": t.try_count_max,
        "try_count_current": t.try_count_current,
        "state": t.state,
        "next_attempt_at": ts(t.next_attempt_at),
        "not_before": ts_opt(t.not_before),
        "expires_at": ts_opt(t.expires_at),
        "timezone": t.timezone,
        "variables": t.variables,
        "client_token": t.client_token,
        "last_outcome": t.last_outcome,
        "fallback_message_id": t.fallback_message_id.as_deref().filter(|m| !m.is_empty()),
        "reason": t.reason,
        "consent": t.consent,
        "consent_at": ts_opt(t.consent_at),
        "last_refusal": t.refusal.as_ref().map(|r| json!({
            "reason": r,
            "at": ts_opt(t.refusal_at),
            "next_allowed_at": ts_opt(t.refusal_until),
        })),
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
    })
}

fn event_json(e: &TargetEvent) -> Value {
    json!({
        "id": e.id,
        "target_id": e.target_id,
        "campaign_id": e.campaign_id,
        "from": e.from_state,
        "to": e.to_state,
        "at": ts(e.at),
        "attempt_id": e.attempt_id,
        "sip_code": e.sip_code,
        "reason": e.reason,
    })
}

/// Adds targets to an outdial: one target object, a JSON list (a bare
/// array or `{"targets": [...]}`), or a CSV file streamed as `text/csv`
/// (a header row; `destination`/`destinations`, `name`, `timezone`, … and
/// any other column as a variable). Good rows are stored, bad ones are
/// reported by line and column; a duplicate destination is kept once.
#[utoipa::path(post, path = "/outdials/{id}/targets", tag = "targets",
    request_body(content((doc::TargetsInput = "application/json"), (String = "text/csv"))),
    responses((status = 201, description = "One target, created.", body = doc::Target),
        (status = 200, description = "A list's report, or one target whose client_token was seen.", body = doc::TargetsAdded),
        (status = 409, description = "One target whose destination is already in the outdial (details.existing_id).", body = doc::ErrorRef)))]
async fn add(
    State(s): State<TargetsState>,
    IdPath(outdial_id): IdPath,
    req: Request,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.store
        .get_doc(OUTDIALS, &outdial_id)
        .await
        .map_err(|e| ApiError::from_store(e, "outdial", &outdial_id))?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    if content_type.starts_with("text/csv") {
        let report = import_csv(&s.store, &outdial_id, req.into_body(), s.csv_limit).await?;
        return Ok((StatusCode::OK, Json(report)));
    }
    if !(content_type.starts_with("application/json") || content_type.contains("+json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send application/json or text/csv, not {content_type:?}"),
        ));
    }
    let bytes = axum::body::to_bytes(req.into_body(), s.json_limit)
        .await
        .map_err(|_| {
            ApiError::too_large(format!(
                "JSON body is larger than {} bytes; send large lists as text/csv",
                s.json_limit
            ))
        })?;
    let body = parse_json(&bytes)?;
    let rows = match &body {
        Value::Array(rows) => rows,
        Value::Object(o) if o.contains_key("targets") => match &o["targets"] {
            Value::Array(rows) => rows,
            _ => return Err(FieldError::new("targets", "must be an array of targets").into()),
        },
        _ => return add_one(&s.store, &outdial_id, &body).await,
    };
    let mut importer = Importer::new(&s.store, &outdial_id, rows.len() <= ITEMS_UP_TO);
    for (i, row) in rows.iter().enumerate() {
        importer
            .push(RowRef::Index(i as u64), row, |e| {
                e.within(&format!("targets[{i}]"))
            })
            .await?;
    }
    Ok((StatusCode::OK, Json(importer.finish().await?)))
}

/// One target object: 201 with the target, 200 if its client_token was seen, 409 if a duplicate.
async fn add_one(
    store: &Store,
    outdial_id: &str,
    body: &Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = parse_target(body, new_id())?;
    let now = chrono::Utc::now().timestamp_millis();
    let result = store
        .insert_targets(outdial_id, std::slice::from_ref(&t), now)
        .await?;
    match result.into_iter().next() {
        Some(Inserted::Created(id)) => Ok((
            StatusCode::CREATED,
            Json(target_json(&store.get_target(&id).await?)),
        )),
        Some(Inserted::Existing(id)) => Ok((
            StatusCode::OK,
            Json(target_json(&store.get_target(&id).await?)),
        )),
        Some(Inserted::Duplicate { existing_id }) => Err(ApiError::conflict(format!(
            "outdial {outdial_id} already has a target with destination {}",
            t.destinations[0].target
        ))
        .with_details(json!({"existing_id": existing_id}))),
        None => Err(ApiError::internal("insert returned no result")),
    }
}

/// An outdial's targets.
#[utoipa::path(get, path = "/outdials/{id}/targets", tag = "targets",
    params(Paging, ("state" = Option<String>, Query, description = "idle, dialing, answered, busy, no_answer, finished or failed.")),
    responses((status = 200, description = "A page of targets.", body = doc::Page<doc::Target>)))]
async fn list(
    State(s): State<TargetsState>,
    IdPath(outdial_id): IdPath,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    let state = match q.get("state") {
        None => None,
        Some(st) => Some(TargetState::parse(st).ok_or_else(|| {
            FieldError::new(
                "state",
                format!("unknown state {st:?}; use one of idle, dialing, answered, busy, no_answer, finished, failed"),
            )
        })?),
    };
    let page = q.page()?;
    s.store
        .get_doc(OUTDIALS, &outdial_id)
        .await
        .map_err(|e| ApiError::from_store(e, "outdial", &outdial_id))?;
    let page = s.store.list_targets(&outdial_id, state, &page).await?;
    Ok(Json(
        serde_json::to_value(page.map(|t| target_json(&t))).expect("page serializes"),
    ))
}

/// One target, with its state and next attempt.
#[utoipa::path(get, path = "/targets/{id}", tag = "targets",
    responses((status = 200, description = "The target.", body = doc::Target)))]
async fn read(State(s): State<TargetsState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let t = s
        .store
        .get_target(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "target", &id))?;
    Ok(Json(target_json(&t)))
}

/// Deletes a target that is not being dialed.
#[utoipa::path(delete, path = "/targets/{id}", tag = "targets",
    responses((status = 204, description = "Deleted."), (status = 409, description = "It is being dialed.", body = doc::ErrorRef)))]
async fn remove(State(s): State<TargetsState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    s.store
        .delete_target(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "target", &id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A target's transitions, oldest first.
#[utoipa::path(get, operation_id = "target_events", path = "/targets/{id}/events", tag = "targets", params(Paging),
    responses((status = 200, description = "A page of transitions.", body = doc::Page<doc::TargetEvent>)))]
async fn events(
    State(s): State<TargetsState>,
    IdPath(id): IdPath,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = ListQuery(q).page()?;
    s.store
        .get_target(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "target", &id))?;
    let page = s
        .store
        .list_target_events(&id, &page)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::invalid_page_token(FieldError::new(
                "page_token",
                "is not a token this server issued",
            )),
            other => ApiError::from(other),
        })?;
    Ok(Json(
        serde_json::to_value(page.map(|e| event_json(&e))).expect("page serializes"),
    ))
}
