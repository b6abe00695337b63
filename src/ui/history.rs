//! A campaign's targets in one state, and a target's history: every
//! attempt (time, destination, outcome, SIP code, Q.850 cause, duration,
//! the agent's result) and every transition, with the next attempt and why.
//! Times are shown in the target's time zone when it has one (else the
//! campaign's calling window's, else UTC), with the zone named.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;

use super::pages::{render, to_login};
use super::{asset_names, session, AssetNames, UiState};
use crate::api::error::ApiError;
use crate::domain::{FieldError, TargetState};
use crate::store::calls::CallFilter;
use crate::store::targets::TargetRow;
use crate::store::PageRequest;

/// Rows on one page.
const PAGE_SIZE: i64 = 100;

struct TargetItem {
    id: String,
    name: String,
    destination: String,
    tries: String,
    last_outcome: String,
    next: String,
}

#[derive(Template)]
#[template(path = "targets.html", config = "src/ui/askama.toml")]
struct TargetsPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    campaign_id: String,
    campaign_name: String,
    state: String,
    targets: Vec<TargetItem>,
    next: Option<String>,
}

struct Attempt {
    time: String,
    destination: String,
    outcome: String,
    sip_code: String,
    q850: String,
    duration: String,
    result: String,
}

struct Transition {
    time: String,
    from: String,
    to: String,
    sip_code: String,
    why: String,
}

#[derive(Template)]
#[template(path = "target.html", config = "src/ui/askama.toml")]
struct TargetPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    name: String,
    state: String,
    tries: String,
    next: String,
    why: String,
    destinations: String,
    zone: String,
    attempts: Vec<Attempt>,
    transitions: Vec<Transition>,
}

/// `ms` in `tz`, with the zone's abbreviation.
fn at(ms: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_default()
}

fn zone_of(t: &TargetRow, fallback: Option<&str>) -> Tz {
    t.timezone
        .as_deref()
        .or(fallback)
        .and_then(|z| z.parse().ok())
        .unwrap_or(Tz::UTC)
}

fn tries(t: &TargetRow) -> String {
    match t.try_count_max {
        Some(max) => format!("{} of {max}", t.try_count_current),
        None => format!("{} (no limit set on the target)", t.try_count_current),
    }
}

/// When the target is tried next, or why it is not.
fn next_attempt(t: &TargetRow, tz: Tz) -> String {
    match t.state {
        TargetState::Finished | TargetState::Failed => "none: the target is done".into(),
        TargetState::Dialing | TargetState::Answered => "none: a call is in progress".into(),
        _ => {
            let due = t.next_attempt_at.max(t.not_before.unwrap_or(0));
            if due <= chrono::Utc::now().timestamp_millis() {
                "now: due, when the campaign runs and its window is open".into()
            } else {
                format!("{} (the retry delay or not_before)", at(due, tz))
            }
        }
    }
}

pub(super) async fn targets(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let c = s
        .store
        .get_campaign(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    let raw = q.get("state").map(String::as_str).unwrap_or("idle");
    let state = TargetState::parse(raw).ok_or_else(|| {
        FieldError::new(
            "state",
            "must be one of idle, dialing, answered, busy, no_answer, finished, failed",
        )
    })?;
    let page = PageRequest::parse(Some(PAGE_SIZE), q.get("page_token").map(String::as_str))?;
    let window_zone = c.spec.calling_window.as_ref().map(|w| w.timezone.clone());
    let list = s
        .store
        .list_targets(&c.outdial_id, Some(state), &page)
        .await?;
    let targets = list
        .items
        .iter()
        .map(|t| {
            let tz = zone_of(t, window_zone.as_deref());
            TargetItem {
                id: t.id.clone(),
                name: if t.name.is_empty() {
                    t.id.clone()
                } else {
                    t.name.clone()
                },
                destination: t
                    .destinations
                    .get(t.destination_index.max(0) as usize)
                    .map(|d| d.target.clone())
                    .unwrap_or_default(),
                tries: tries(t),
                last_outcome: t.last_outcome.clone().unwrap_or_else(|| "—".into()),
                next: next_attempt(t, tz),
            }
        })
        .collect();
    Ok(render(&TargetsPage {
        assets: asset_names(),
        csrf: sess.row.csrf,
        key_name: sess.row.key_name,
        campaign_id: c.id,
        campaign_name: c.name,
        state: state.as_str().into(),
        targets,
        next: list.next_page_token,
    })?
    .into_response())
}

pub(super) async fn target(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let t = s
        .store
        .get_target(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "target", &id))?;
    let tz = zone_of(&t, None);
    let all = PageRequest {
        size: 500,
        after: None,
    };
    let calls = s
        .store
        .list_calls(
            &CallFilter {
                campaign_id: None,
                target_id: Some(&id),
                outcome: None,
                status: None,
                agent_id: None,
                created_after: None,
                created_before: None,
            },
            &all,
        )
        .await?;
    let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let attempts = calls
        .items
        .into_iter()
        .map(|c| Attempt {
            time: c.created_at.map(|ms| at(ms, tz)).unwrap_or_default(),
            destination: dash(c.to_uri),
            outcome: dash(c.outcome.or(Some(c.status))),
            sip_code: dash(c.sip_code.map(|n| n.to_string())),
            q850: dash(c.q850_cause.map(|n| n.to_string())),
            duration: dash(
                c.duration_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0)),
            ),
            result: dash(c.result),
        })
        .collect();
    let events = s.store.list_target_events(&id, &all).await?;
    let transitions = events
        .items
        .into_iter()
        .map(|e| Transition {
            time: at(e.at, tz),
            from: e.from_state,
            to: e.to_state,
            sip_code: dash(e.sip_code.map(|n| n.to_string())),
            why: dash(e.reason),
        })
        .collect();
    Ok(render(&TargetPage {
        assets: asset_names(),
        csrf: sess.row.csrf,
        key_name: sess.row.key_name,
        name: if t.name.is_empty() {
            t.id.clone()
        } else {
            t.name.clone()
        },
        state: t.state.as_str().into(),
        tries: tries(&t),
        next: next_attempt(&t, tz),
        why: [t.last_outcome.clone(), t.reason.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
        destinations: t
            .destinations
            .iter()
            .map(|d| d.target.clone())
            .collect::<Vec<_>>()
            .join(", "),
        zone: tz.name().to_string(),
        attempts,
        transitions,
    })?
    .into_response())
}
