//! Calls: the attempts list with the REST list's filters (status, outcome,
//! campaign), each campaign attempt linked to its target's history; one-off
//! calls still waiting can be rescheduled or cancelled, through the same
//! store moves as `PATCH /v1/calls/{id}` and `POST /v1/calls/{id}/cancel`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{mutation, render, to_login};
use super::utc_time as when;
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::calls::STATUSES;
use crate::api::error::ApiError;
use crate::api::extract::is_id;
use crate::domain::Outcome;
use crate::store::calls::CallFilter;
use crate::store::PageRequest;

const PAGE_SIZE: i64 = 100;

struct CallItem {
    id: String,
    created: String,
    target_id: Option<String>,
    scheduled: Option<String>,
    to: String,
    status: String,
    outcome: String,
    sip_code: String,
    q850: String,
    duration: String,
    waiting: bool,
}

#[derive(Template)]
#[template(path = "calls.html", config = "src/ui/askama.toml")]
struct CallsPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    notice: Option<String>,
    error: Option<String>,
    statuses: Vec<(&'static str, bool)>,
    outcomes: Vec<(&'static str, bool)>,
    campaign_id: String,
    calls: Vec<CallItem>,
    next: Option<String>,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) async fn calls(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut error = q.get("error").cloned();
    let status = get("status").filter(|st| STATUSES.contains(st));
    let outcome = get("outcome").filter(|o| Outcome::parse(o).is_some());
    let campaign = get("campaign_id");
    let campaign_ok = campaign.filter(|c| is_id(c));
    if campaign.is_some() && campaign_ok.is_none() {
        error = Some(
            "The campaign id is not an id herald issued: showing every campaign's calls.".into(),
        );
    }
    let page = PageRequest::parse(Some(PAGE_SIZE), get("page_token"))?;
    let list = s
        .store
        .list_calls(
            &CallFilter {
                campaign_id: campaign_ok,
                target_id: None,
                outcome,
                status,
                agent_id: None,
                created_after: None,
                created_before: None,
            },
            &page,
        )
        .await?;
    let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let calls = list
        .items
        .into_iter()
        .map(|c| CallItem {
            waiting: c.campaign_id.is_none() && (c.status == "pending" || c.status == "scheduled"),
            created: c.created_at.map(when).unwrap_or_default(),
            target_id: c.target_id,
            scheduled: c.scheduled_at.map(when),
            to: dash(c.to_uri),
            status: c.status,
            outcome: dash(c.outcome),
            sip_code: dash(c.sip_code.map(|n| n.to_string())),
            q850: dash(c.q850_cause.map(|n| n.to_string())),
            duration: dash(
                c.duration_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0)),
            ),
            id: c.id,
        })
        .collect();
    let next = list.next_page_token.map(|t| {
        format!(
            "/ui/calls?status={}&outcome={}&campaign_id={}&page_token={}",
            enc(status.unwrap_or("")),
            enc(outcome.unwrap_or("")),
            enc(campaign_ok.unwrap_or("")),
            enc(&t)
        )
    });
    Ok(render(&CallsPage {
        assets: asset_names(),
        csrf: sess.row.csrf,
        key_name: sess.row.key_name,
        notice: q.get("notice").cloned(),
        error,
        statuses: STATUSES
            .iter()
            .map(|&st| (st, Some(st) == status))
            .collect(),
        outcomes: Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), Some(o.as_str()) == outcome))
            .collect(),
        campaign_id: campaign.unwrap_or("").to_string(),
        calls,
        next,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct CallForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    scheduled_at: String,
}

fn back(notice: Result<String, String>) -> Response {
    let q = match notice {
        Ok(n) => format!("notice={}", enc(&n)),
        Err(e) => format!("error={}", enc(&e)),
    };
    Redirect::to(&format!("/ui/calls?{q}")).into_response()
}

pub(super) async fn reschedule(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CallForm>,
) -> Result<Response, ApiError> {
    if let Err(r) = mutation(&s, &headers, &f.csrf).await {
        return Ok(r);
    }
    let at = match chrono::DateTime::parse_from_rfc3339(f.scheduled_at.trim()) {
        Ok(t) => t.timestamp_millis(),
        Err(_) => {
            return Ok(back(Err(format!(
                "The new time must be an RFC 3339 timestamp like 2026-12-24T09:00:00Z, got {:?}.",
                f.scheduled_at.trim()
            ))))
        }
    };
    Ok(back(if s.store.reschedule_one_off(&id, at).await? {
        Ok(format!("The call is rescheduled for {}.", when(at)))
    } else {
        Err("That call is no longer waiting: it cannot be rescheduled.".into())
    }))
}

pub(super) async fn cancel(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CallForm>,
) -> Result<Response, ApiError> {
    let sess = match mutation(&s, &headers, &f.csrf).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let reason = format!("cancelled from the console by {}", sess.row.key_name);
    Ok(back(
        if s.store.cancel_one_off(&id, &reason, now_ms()).await? {
            Ok("The call is cancelled.".into())
        } else {
            Err("That call is no longer waiting: it cannot be cancelled.".into())
        },
    ))
}
