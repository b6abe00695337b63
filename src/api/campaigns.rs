//! Campaign CRUD. A campaign ties an outdial, an outplan and an agent to a
//! trunk, with pacing, a calling window and a schedule. The control verbs
//! (start, pause, resume, stop) belong to the scheduler's router.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::routes;

use super::auth::Caller;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{ts, IdPath, JsonBody, ListQuery};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::fields::{merge_patch, Fields};
use crate::domain::specs::{to_document, CampaignSpec};
use crate::domain::{FieldError, StatusCause, StatusChange, StatusMove};
use crate::store::campaigns::{CampaignFields, CampaignRow};
use crate::store::documents::{AGENTS, OUTDIALS, OUTPLANS};
use crate::store::{Store, StoreError};

pub const STATUSES: [&str; 7] = [
    "draft", "running", "paused", "waiting", "stopping", "stopped", "finished",
];

#[derive(Clone)]
struct CampaignState {
    store: Store,
    trunks: Arc<Vec<String>>,
    events: crate::events::EventBus,
}

pub fn router(
    store: Store,
    trunks: Arc<Vec<String>>,
    events: crate::events::EventBus,
) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(stop))
        .routes(routes!(stats))
        .with_state(CampaignState {
            store,
            trunks,
            events,
        })
}

pub fn campaign_json(c: &CampaignRow) -> Value {
    let mut v = to_document(&c.spec);
    v["id"] = Value::String(c.id.clone());
    v["status"] = Value::String(c.status.clone());
    v["status_reason"] = c.status_reason.clone().map_or(Value::Null, Value::String);
    v["created_at"] = ts(c.created_at);
    v["updated_at"] = ts(c.updated_at);
    v
}

/// Checks that the referenced documents and trunk exist, naming the field that does not.
async fn check_refs(s: &CampaignState, r: &CampaignSpec) -> ApiResult<()> {
    check_campaign_refs(&s.store, &s.trunks, r).await
}

/// A campaign's references exist: its outdial, outplan, agent, trunk and
/// fallback template (REST and the console's form check the same).
pub(crate) async fn check_campaign_refs(
    store: &Store,
    trunks: &[String],
    r: &CampaignSpec,
) -> ApiResult<()> {
    for (field, table, id) in [
        ("outdial_id", OUTDIALS, &r.outdial_id),
        ("outplan_id", OUTPLANS, &r.outplan_id),
        ("agent_id", AGENTS, &r.agent_id),
    ] {
        match store.get_doc(table, id).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(
                    FieldError::new(field, format!("no {} with id {id:?}", table.noun)).into(),
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !trunks.contains(&r.trunk) {
        return Err(FieldError::new(
            "trunk",
            format!(
                "no trunk named {:?} in the configuration (have: {})",
                r.trunk,
                trunks.join(", ")
            ),
        )
        .into());
    }
    if let Some(fb) = &r.fallback {
        match store.resolve_template(&fb.template_id).await {
            Ok(t) if t.channel != fb.channel => {
                return Err(FieldError::new(
                    "fallback.template_id",
                    format!(
                        "template {:?} is for {}, not {}",
                        t.code, t.channel, fb.channel
                    ),
                )
                .into())
            }
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(FieldError::new(
                    "fallback.template_id",
                    format!("no template with id or code {:?}", fb.template_id),
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(crate) fn fields(spec: &CampaignSpec) -> CampaignFields<'_> {
    CampaignFields {
        name: &spec.name,
        outdial_id: &spec.outdial_id,
        outplan_id: &spec.outplan_id,
        agent_id: Some(&spec.agent_id),
        spec,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates a campaign (draft); its outdial, outplan, agent, trunk and
/// fallback template must exist.
#[utoipa::path(post, path = "/campaigns", tag = "campaigns",
    request_body = doc::CampaignInput,
    responses((status = 201, description = "Created, as draft.", body = doc::Campaign)))]
async fn create(
    State(s): State<CampaignState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = CampaignSpec::parse(&body)?;
    check_refs(&s, &spec).await?;
    let row = s.store.insert_campaign(&fields(&spec), now_ms()).await?;
    Ok((StatusCode::CREATED, Json(campaign_json(&row))))
}

/// Lists campaigns, newest first.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns",
    params(Paging, ("status" = Option<String>, Query, description = "Only campaigns with this status.")),
    responses((status = 200, description = "A page of campaigns.", body = doc::Page<doc::Campaign>)))]
async fn list(
    State(s): State<CampaignState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    let status = q.get("status");
    if let Some(st) = status {
        if !STATUSES.contains(&st) {
            return Err(FieldError::new(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            )
            .into());
        }
    }
    let page = s.store.list_campaigns(status, &q.page()?).await?;
    Ok(Json(
        serde_json::to_value(page.map(|c| campaign_json(&c))).expect("page serializes"),
    ))
}

/// One campaign.
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns",
    responses((status = 200, description = "The campaign.", body = doc::Campaign)))]
async fn read(State(s): State<CampaignState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let c = s
        .store
        .get_campaign(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    Ok(Json(campaign_json(&c)))
}

/// Changes a campaign (pacing applies to a running one within a second);
/// its outdial only while it is draft.
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns",
    request_body = doc::MergePatch,
    responses((status = 200, description = "The campaign as changed.", body = doc::Campaign),
        (status = 409, description = "outdial_id changed on a campaign that is not draft.", body = doc::ErrorRef)))]
async fn update(
    State(s): State<CampaignState>,
    IdPath(id): IdPath,
    JsonBody(patch): JsonBody,
) -> ApiResult<Json<Value>> {
    Fields::new(&patch, "")?;
    let current = s
        .store
        .get_campaign(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    let mut merged = to_document(&current.spec);
    merge_patch(&mut merged, &patch);
    let spec = CampaignSpec::parse(&merged)?;
    if spec.outdial_id != current.outdial_id && current.status != "draft" {
        return Err(ApiError::conflict(format!(
            "outdial_id can only change while the campaign is draft; it is {}",
            current.status
        ))
        .with_details(serde_json::json!({"status": current.status})));
    }
    check_refs(&s, &spec).await?;
    let row = s
        .store
        .update_campaign(&id, &fields(&spec), now_ms())
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    Ok(Json(campaign_json(&row)))
}

/// Deletes a campaign that is not dialing.
#[utoipa::path(delete, path = "/campaigns/{id}", tag = "campaigns",
    responses((status = 204, description = "Deleted."),
        (status = 409, description = "The campaign is running.", body = doc::ErrorRef)))]
async fn remove(State(s): State<CampaignState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    s.store
        .delete_campaign(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the move `m` (named `verb`) with `reason`, or answers 409 with the
/// campaign's current status.
async fn control(
    s: &CampaignState,
    caller: &Caller,
    id: &str,
    verb: &str,
    m: StatusMove,
    reason: Option<&str>,
    cause: Option<StatusCause>,
) -> ApiResult<Json<Value>> {
    let by = format!("api:{}", caller.0);
    let change = StatusChange {
        m,
        reason,
        cause,
        by: &by,
    };
    let c = move_campaign(&s.store, &s.events, id, verb, &change).await?;
    Ok(Json(campaign_json(&c)))
}

/// A control verb (start, pause, resume, stop) as REST and the console make
/// it: the move with its reason and event, or a 409 naming the status.
pub(crate) async fn move_campaign(
    store: &Store,
    events: &crate::events::EventBus,
    id: &str,
    verb: &str,
    change: &StatusChange<'_>,
) -> ApiResult<CampaignRow> {
    let m = change.m;
    let to = m.to().as_str();
    let changed = store
        .change_campaign_status(id, change, now_ms())
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", id))?;
    let c = store
        .get_campaign(id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", id))?;
    if changed {
        events.campaign_status(id, to);
    } else {
        return Err(ApiError::conflict(format!(
            "cannot {verb} a campaign that is {}; {verb} applies to: {}",
            c.status,
            m.from_strs().join(", ")
        ))
        .with_details(serde_json::json!({"status": c.status})));
    }
    Ok(c)
}

/// Starts a draft, stopped or finished campaign.
#[utoipa::path(post, path = "/campaigns/{id}/start", tag = "campaigns",
    responses((status = 200, description = "The campaign in its new status.", body = doc::Campaign),
        (status = 409, description = "Not allowed from the campaign's status (named in details.status).", body = doc::ErrorRef)))]
async fn start(
    State(s): State<CampaignState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    control(&s, &caller, &id, "start", StatusMove::Start, None, None).await
}

/// Pauses a running or waiting campaign: no new calls; live calls go on.
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns",
    responses((status = 200, description = "The campaign in its new status.", body = doc::Campaign),
        (status = 409, description = "Not allowed from the campaign's status (named in details.status).", body = doc::ErrorRef)))]
async fn pause(
    State(s): State<CampaignState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    let reason = Some("paused by request");
    control(&s, &caller, &id, "pause", StatusMove::Pause, reason, None).await
}

/// Resumes a paused campaign.
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns",
    responses((status = 200, description = "The campaign in its new status.", body = doc::Campaign),
        (status = 409, description = "Not allowed from the campaign's status (named in details.status).", body = doc::ErrorRef)))]
async fn resume(
    State(s): State<CampaignState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> ApiResult<Json<Value>> {
    control(&s, &caller, &id, "resume", StatusMove::Resume, None, None).await
}

/// Stops a campaign. `{"force": true}` hangs up live calls; otherwise
/// they run to their end.
#[utoipa::path(post, path = "/campaigns/{id}/stop", tag = "campaigns",
    request_body(content = Option<doc::StopRequest>, description = "Optional."),
    responses((status = 200, description = "The campaign, stopping or stopped.", body = doc::Campaign),
        (status = 409, description = "Already stopped or finished.", body = doc::ErrorRef)))]
async fn stop(
    State(s): State<CampaignState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let force = if body.is_empty() {
        false
    } else {
        let v = super::extract::parse_json(&body)?;
        Fields::new(&v, "")?.bool_or("force", false)?
    };
    let (reason, cause) = if force {
        ("force", Some(StatusCause::ForceStop))
    } else {
        ("stop requested", None)
    };
    control(
        &s,
        &caller,
        &id,
        "stop",
        StatusMove::Stop,
        Some(reason),
        cause,
    )
    .await
}

/// A campaign's numbers now: targets by state, attempts by outcome, live
/// calls, calls per second.
#[utoipa::path(get, path = "/campaigns/{id}/stats", tag = "campaigns",
    responses((status = 200, description = "The numbers.", body = doc::CampaignStats)))]
async fn stats(State(s): State<CampaignState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    Ok(Json(campaign_stats(&s.store, &id).await?))
}

/// A campaign's numbers now, as `GET /v1/campaigns/{id}/stats` and the
/// console's live page show them.
pub(crate) async fn campaign_stats(store: &Store, id: &str) -> ApiResult<Value> {
    let c = store
        .get_campaign(id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", id))?;
    let mut targets: serde_json::Map<String, Value> = crate::domain::TargetState::ALL
        .iter()
        .map(|st| (st.as_str().to_string(), Value::from(0)))
        .collect();
    let mut total = 0;
    for (st, n) in store.count_targets_by_state(&c.outdial_id).await? {
        targets.insert(st.as_str().to_string(), Value::from(n));
        total += n;
    }
    let (by_outcome, live) = store.campaign_call_stats(id).await?;
    let attempts: i64 = by_outcome.iter().map(|(_, n)| n).sum::<i64>() + live;
    let window_s = 5;
    let recent = store
        .campaign_calls_since(id, now_ms() - window_s * 1000)
        .await?;
    let rules = c.spec.compliance.rules();
    let abandonment =
        match crate::campaign::gate::abandonment(store, id, &rules, chrono::Utc::now()).await? {
            None => Value::Null,
            Some(a) => serde_json::json!({
                "live_answered": a.counts.live_answered,
                "abandoned": a.counts.abandoned,
                "machine_false_positives": a.counts.machine_false_positives,
                "rate": a.rate,
                "max_rate": a.max_rate,
                "window_hours": a.window_hours,
            }),
        };
    Ok(serde_json::json!({
        "id": c.id,
        "status": c.status,
        "status_reason": c.status_reason,
        "targets": {"total": total, "by_state": targets},
        "attempts": {
            "total": attempts,
            "by_outcome": by_outcome.into_iter().map(|(k, n)| (k, Value::from(n))).collect::<serde_json::Map<_, _>>(),
        },
        "live_calls": live,
        "calls_per_second": {"current": recent as f64 / window_s as f64, "limit": c.spec.calls_per_second},
        "abandonment": abandonment,
    }))
}
