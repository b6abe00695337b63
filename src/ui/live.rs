//! A campaign's live page: its status and why, the targets by state, calls
//! in flight against the cap, the call rate against the setting, attempts
//! by outcome and the answer rate, kept current from an event stream
//! (`/ui/campaigns/{id}/stream`, rendered fragments swapped in by htmx's SSE
//! extension, no reload); the pacing, editable while it runs, checked by the
//! same rules as `PATCH /v1/campaigns/{id}`.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::{form_page, mutation, to_login};
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::campaigns::{campaign_stats, fields};
use crate::api::error::ApiError;
use crate::domain::fields::merge_patch;
use crate::domain::specs::{to_document, CampaignSpec};

/// How often the numbers are sent when nothing was written (the call rate
/// moves with time).
const TICK: Duration = Duration::from_secs(1);
/// Fragments sent per stream at most this often.
const MIN_GAP: Duration = Duration::from_millis(300);

#[derive(Template)]
#[template(path = "stats.html", config = "src/ui/askama.toml")]
struct Stats {
    id: String,
    status: String,
    reason: Option<String>,
    live_calls: i64,
    max_calls: u32,
    /// Calls in flight against the trunk's and the agent's own caps.
    caps: Vec<Cap>,
    cps_now: String,
    cps_limit: String,
    attempts: i64,
    answer_rate: String,
    total: i64,
    funnel: Vec<(String, i64, String)>,
    outcomes: Vec<(String, i64)>,
}

#[derive(Template)]
#[template(path = "campaign.html", config = "src/ui/askama.toml")]
struct CampaignPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    id: String,
    name: String,
    window: String,
    notice: Option<String>,
    status: String,
    controls: String,
    stats: String,
    log: String,
    clock: String,
    cps_value: String,
    max_value: String,
    cps_error: Option<String>,
    max_error: Option<String>,
}

/// A limit shared with other campaigns, and how much of it is in use.
struct Cap {
    what: String,
    used: String,
    limit: String,
}

/// The status log: newest first.
#[derive(Template)]
#[template(path = "status_log.html", config = "src/ui/askama.toml")]
struct StatusLog {
    zone: String,
    rows: Vec<LogRow>,
}

struct LogRow {
    at_iso: String,
    at_local: String,
    from: String,
    to: String,
    reason: String,
    by: String,
}

/// The control buttons its status allows.
#[derive(Template)]
#[template(path = "controls.html", config = "src/ui/askama.toml")]
struct Controls {
    id: String,
    csrf: String,
    actions: Vec<&'static super::pages::Action>,
}

/// A campaign's live parts, rendered: its buttons (they change with its
/// status only, so a click is not lost to a swap) and its numbers.
/// The clock says when the numbers were read (every update); the numbers
/// and the buttons are sent only when they change, so links and buttons
/// are not swapped under a pointer for nothing.
#[derive(PartialEq, Clone)]
struct Live {
    status: String,
    controls: String,
    stats: String,
    log: String,
    clock: String,
}

/// Status changes shown on the live page.
const LOG_ROWS: i64 = 20;

/// The live parts of a campaign, rendered.
async fn live_html(s: &UiState, id: &str, csrf: &str) -> Result<Live, ApiError> {
    let c = s
        .store
        .get_campaign(id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", id))?;
    let v = campaign_stats(&s.store, id).await?;
    let n = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let total = n("/targets/total");
    let funnel = crate::domain::TargetState::ALL
        .iter()
        .map(|st| {
            let k = n(&format!("/targets/by_state/{}", st.as_str()));
            let pct = if total > 0 { k * 100 / total } else { 0 };
            (st.as_str().to_string(), k, pct.to_string())
        })
        .collect();
    let outcomes: Vec<(String, i64)> = v["attempts"]["by_outcome"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let ended: i64 = outcomes.iter().map(|(_, n)| n).sum();
    let answered = outcomes
        .iter()
        .find(|(k, _)| k == "answered")
        .map_or(0, |(_, n)| *n);
    let answer_rate = if ended > 0 {
        format!(
            "{:.1} % ({answered} of {ended} ended calls)",
            answered as f64 * 100.0 / ended as f64
        )
    } else {
        "— (no call has ended yet)".into()
    };
    let at = chrono::Utc::now();
    let zone = crate::campaign::rules::schedule::schedule_timezone(&c.spec);
    let caps = caps(s, &c).await?;
    let log = StatusLog {
        zone: zone.name().to_string(),
        rows: s
            .store
            .campaign_status_log(id, LOG_ROWS)
            .await?
            .into_iter()
            .map(|e| {
                let t = crate::store::from_ms(e.at);
                LogRow {
                    at_iso: t.to_rfc3339(),
                    at_local: t
                        .with_timezone(&zone)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                    from: e.from,
                    to: e.to,
                    reason: e.reason.unwrap_or_default(),
                    by: super::status_text::who(&e.by),
                }
            })
            .collect(),
    }
    .render()
    .map_err(ApiError::internal)?;
    let reason = super::status_text::reason_text(
        &c.status,
        c.status_reason.as_deref(),
        c.status_cause,
        &c.spec,
        at,
    );
    let controls = Controls {
        id: c.id.clone(),
        csrf: csrf.to_string(),
        actions: super::pages::actions_for(&c.status),
    }
    .render()
    .map_err(ApiError::internal)?;
    let stats = Stats {
        id: c.id,
        status: c.status.clone(),
        reason,
        live_calls: n("/live_calls"),
        max_calls: c.spec.max_concurrent_calls,
        caps,
        cps_now: format!(
            "{:.1}",
            v["calls_per_second"]["current"].as_f64().unwrap_or(0.0)
        ),
        cps_limit: format!("{}", c.spec.calls_per_second),
        attempts: n("/attempts/total"),
        answer_rate,
        total,
        funnel,
        outcomes,
    }
    .render()
    .map_err(ApiError::internal)?;
    let clock = format!(
        "As of <time datetime=\"{}\">{}</time>.",
        at.to_rfc3339(),
        at.format("%H:%M:%S UTC")
    );
    Ok(Live {
        status: c.status,
        controls,
        stats,
        log,
        clock,
    })
}

/// The trunk's and the agent's calls in flight against their own caps
/// (shared by every campaign and one-off call using them on this node).
async fn caps(s: &UiState, c: &crate::store::campaigns::CampaignRow) -> Result<Vec<Cap>, ApiError> {
    let trunk = &c.spec.trunk;
    let mut caps = Vec::with_capacity(2);
    if let Some((max_calls, max_cps)) = s.sources.trunk_limits.get(trunk) {
        caps.push(Cap {
            what: format!("Trunk “{trunk}” (every campaign on it)"),
            used: (s.sources.trunk_live)(trunk).map_or("—".into(), |n| n.to_string()),
            limit: format!("{max_calls} calls, {max_cps} calls/s"),
        });
    }
    if let Some(agent) = &c.agent_id {
        if let Ok(spec) = s.store.get_agent(agent).await {
            caps.push(Cap {
                what: format!("Agent “{}” (every campaign using it)", spec.name),
                used: s.sources.agents.live(agent).to_string(),
                limit: format!("{} sessions", spec.max_concurrent_sessions),
            });
        }
    }
    Ok(caps)
}

fn window_text(spec: &CampaignSpec) -> String {
    let emergency = spec.priority == crate::domain::specs::Priority::Emergency;
    let text = window_only(spec);
    if emergency && spec.calling_window.is_some() {
        format!("{text} (not applied: the campaign has emergency priority)")
    } else {
        text
    }
}

fn window_only(spec: &CampaignSpec) -> String {
    match &spec.calling_window {
        Some(w) => format!(
            "{}–{} {} on {}",
            w.start,
            w.end,
            w.timezone,
            w.days.join(", ")
        ),
        None => "none (calls at any time)".into(),
    }
}

#[derive(Default)]
struct PacingForm {
    cps: Option<String>,
    max: Option<String>,
    cps_error: Option<String>,
    max_error: Option<String>,
}

async fn page(
    s: &UiState,
    headers: &HeaderMap,
    id: &str,
    notice: Option<String>,
    form: PacingForm,
) -> Result<Response, ApiError> {
    let Some(sess) = session(s, headers).await? else {
        return Ok(to_login());
    };
    let c = s
        .store
        .get_campaign(id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", id))?;
    let invalid = form.cps_error.is_some() || form.max_error.is_some();
    let csrf = sess.row.csrf.clone();
    let live = live_html(s, id, &csrf).await?;
    form_page(
        &CampaignPage {
            assets: asset_names(),
            csrf: csrf.clone(),
            key_name: sess.row.key_name,
            id: c.id.clone(),
            window: window_text(&c.spec),
            notice,
            status: live.status,
            stats: live.stats,
            controls: live.controls,
            log: live.log,
            clock: live.clock,
            cps_value: form
                .cps
                .unwrap_or_else(|| format!("{}", c.spec.calls_per_second)),
            max_value: form
                .max
                .unwrap_or_else(|| c.spec.max_concurrent_calls.to_string()),
            cps_error: form.cps_error,
            max_error: form.max_error,
            name: c.name,
        },
        invalid,
    )
}

pub(super) async fn campaign_page(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    page(
        &s,
        &headers,
        &id,
        q.get("notice").cloned(),
        PacingForm::default(),
    )
    .await
}

/// The live numbers as SSE `stats` events of rendered HTML: at once, after
/// each write to the event log (at most every [`MIN_GAP`]), and every
/// [`TICK`] otherwise; only when they changed.
pub(super) async fn stream(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    let csrf = sess.row.csrf;
    // An unknown campaign is a 404 before the stream starts.
    live_html(&s, &id, &csrf).await?;
    // The buttons the page was rendered with are for this status.
    let shown = q.get("status").cloned();
    Ok(Sse::new(stats_events(s, id, csrf, shown))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn stats_events(
    s: UiState,
    id: String,
    csrf: String,
    shown_status: Option<String>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct St {
        s: UiState,
        id: String,
        csrf: String,
        watch: tokio::sync::watch::Receiver<u64>,
        last: Option<Live>,
        /// The status whose buttons the page shows.
        shown_status: Option<String>,
        first: bool,
        /// Parts rendered and not sent yet.
        pending: Vec<SseEvent>,
        /// The chart's counts, and the data last sent.
        chart: Option<super::chart::Chart>,
        chart_sent: String,
    }
    let watch = s.store.log_watch();
    let st = St {
        s,
        id,
        csrf,
        watch,
        last: None,
        shown_status,
        first: true,
        pending: Vec::new(),
        chart: None,
        chart_sent: String::new(),
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop() {
                return Some((Ok(ev), st));
            }
            if !st.first {
                let shutdown = st.s.shutdown.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    changed = st.watch.changed() => if changed.is_err() { return None },
                    _ = tokio::time::sleep(TICK) => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(MIN_GAP) => {}
                }
            }
            st.first = false;
            let live = match live_html(&st.s, &st.id, &st.csrf).await {
                Ok(h) => h,
                // The campaign was deleted, or the database is away: the
                // stream ends (the browser reconnects and is told).
                Err(_) => return None,
            };
            let now = now_ms();
            if st.chart.is_none() {
                st.chart = super::chart::Chart::open(&st.s.store, &st.id, now)
                    .await
                    .ok();
            } else if let Some(c) = st.chart.as_mut() {
                // A failed read is tried again at the next update.
                let _ = c.catch_up(&st.s.store).await;
            }
            let last = st.last.replace(live.clone());
            // Sent last first: the numbers, the log, the buttons, the clock, the chart.
            if let Some(c) = st.chart.as_mut() {
                let data = c.json(now);
                if data != st.chart_sent {
                    st.chart_sent = data.clone();
                    st.pending
                        .push(SseEvent::default().event("chart").data(data));
                }
            }
            if last.as_ref().map(|l| &l.clock) != Some(&live.clock) {
                st.pending
                    .push(SseEvent::default().event("clock").data(live.clock));
            }
            if st.shown_status.as_deref() != Some(live.status.as_str()) {
                st.shown_status = Some(live.status.clone());
                st.pending
                    .push(SseEvent::default().event("controls").data(live.controls));
            }
            if last.as_ref().map(|l| &l.log) != Some(&live.log) {
                st.pending
                    .push(SseEvent::default().event("log").data(live.log));
            }
            if last.as_ref().map(|l| &l.stats) != Some(&live.stats) {
                st.pending
                    .push(SseEvent::default().event("stats").data(live.stats));
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct Pacing {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    calls_per_second: String,
    #[serde(default)]
    max_concurrent_calls: String,
}

/// Applies the pacing form through the campaign's own validation; errors
/// are shown beside their fields.
pub(super) async fn pacing(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Pacing>,
) -> Result<Response, ApiError> {
    if let Err(r) = mutation(&s, &headers, &f.csrf).await {
        return Ok(r);
    }
    let current = s
        .store
        .get_campaign(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
    let mut form = PacingForm {
        cps: Some(f.calls_per_second.clone()),
        max: Some(f.max_concurrent_calls.clone()),
        ..Default::default()
    };
    let cps = f.calls_per_second.trim().parse::<f64>();
    let max = f.max_concurrent_calls.trim().parse::<u64>();
    if cps.is_err() {
        form.cps_error = Some("must be a number of calls per second, like 5 or 0.5".into());
    }
    if max.is_err() {
        form.max_error = Some("must be a whole number of calls".into());
    }
    if let (Ok(cps), Ok(max)) = (cps, max) {
        let mut doc = to_document(&current.spec);
        merge_patch(
            &mut doc,
            &json!({"calls_per_second": cps, "max_concurrent_calls": max}),
        );
        match CampaignSpec::parse(&doc) {
            Ok(spec) => {
                s.store
                    .update_campaign(&id, &fields(&spec), now_ms())
                    .await
                    .map_err(|e| ApiError::from_store(e, "campaign", &id))?;
                let notice = format!(
                    "Pacing applied: {} calls/s, {} calls at once.",
                    spec.calls_per_second, spec.max_concurrent_calls
                );
                let to = format!(
                    "/ui/campaigns/{id}?notice={}",
                    form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
                );
                return Ok(Redirect::to(&to).into_response());
            }
            Err(e) if e.field == "calls_per_second" => form.cps_error = Some(e.reason),
            Err(e) if e.field == "max_concurrent_calls" => form.max_error = Some(e.reason),
            Err(e) => {
                return Err(e.into());
            }
        }
    }
    page(&s, &headers, &id, None, form).await
}
