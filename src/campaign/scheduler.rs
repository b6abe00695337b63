//! The scheduler: the only part of `campaign` that awaits.
//!
//! A supervisor polls the campaigns table every tick and keeps one task per
//! active campaign (running, waiting, paused, stopping); status changes made
//! through the API (or by another node) therefore take effect within a tick.
//! Each campaign task claims due targets as pacing allows, places calls
//! through [`Telephony`], and hands each finished attempt to the recorder,
//! which writes them in batches. Every task is owned by a `TaskTracker`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::apply::{completion, Finished};
use super::dialer::Telephony;
use super::rules::due::{check_before_dial, DialCheck, DialGate};
use super::rules::pacing::Priority;
use super::rules::retry::{decide, AttemptResult, RetryPolicy};
use super::rules::schedule::{daily_gate, schedule_timezone, DailyGate, DailySchedule};
use super::rules::timezone::resolve_timezone;
use super::rules::window::Window;
use super::trunks::{AgentSessions, SessionSlot, TrunkGates};
use crate::agent::{Agent, AgentRuntime, SessionContext, SessionControl, SESSION_END_GRACE};
use crate::domain::{DestinationKind, Outcome};
use crate::events::{Event, EventBus};
use crate::sip::{CallEvent, DialDestination, OriginateError, OriginateRequest};
use crate::store::dialing::{ClaimAction, ClaimScope, Claimed, Completion};
use crate::store::documents::{AGENTS, OUTPLANS};
use crate::store::{Backend, Store, StoreError};

/// How often campaigns are looked at.
pub const TICK: Duration = Duration::from_millis(100);
/// The status reason of a campaign waiting for its next daily start.
const DAILY_WAIT: &str = "waiting for the next daily start";
/// How long a claimed target is leased before another node may take it back.
const LEASE_MS: i64 = 10 * 60 * 1000;
/// Completions written per transaction.
const RECORD_BATCH: usize = 2048;
/// Record transactions in flight at once on PostgreSQL.
const RECORD_WRITERS_POSTGRES: usize = 4;

/// What the scheduler needs.
#[derive(Clone)]
pub struct SchedulerDeps {
    pub store: Store,
    pub events: EventBus,
    pub telephony: Arc<dyn Telephony>,
    pub node_id: String,
    pub trunks: TrunkGates,
    pub agents: AgentSessions,
    /// Builds agents and holds the live calls' controls.
    pub runtime: AgentRuntime,
}

/// A running scheduler; owns its tasks.
pub struct Scheduler {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Scheduler {
    /// Registers this node, closes attempts left open by a crash (on SQLite:
    /// all of them; on PostgreSQL: those of dead nodes), then starts the
    /// supervisor and the liveness task.
    pub async fn start(deps: SchedulerDeps) -> Result<Scheduler, StoreError> {
        let now = Utc::now().timestamp_millis();
        deps.store.register_node(&deps.node_id, now).await?;
        match deps.store.backend() {
            Backend::Sqlite => {
                recover_interrupted(&deps.store, None).await?;
            }
            Backend::Postgres => recover_dead_nodes(&deps.store, now).await?,
        }
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(liveness(deps.clone(), cancel.clone()));
        let (record_tx, record_rx) = mpsc::channel::<Completion>(4 * RECORD_BATCH);
        tasks.spawn(record_loop(
            deps.store.clone(),
            deps.events.clone(),
            record_rx,
        ));
        tasks.spawn(super::oneoff::one_off_loop(
            deps.clone(),
            cancel.clone(),
            tasks.clone(),
        ));
        tasks.spawn(supervise(deps, record_tx, cancel.clone(), tasks.clone()));
        Ok(Scheduler { cancel, tasks })
    }

    /// Stops dialing, lets live calls be hung up by call control, waits for every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent for this long is dead: its open attempts are closed by a live node.
const NODE_DEAD_AFTER_MS: i64 = 15_000;

/// Keeps this node's heartbeat and, on PostgreSQL, closes dead nodes' attempts.
async fn liveness(deps: SchedulerDeps, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Utc::now().timestamp_millis();
        match deps.store.heartbeat(&deps.node_id, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(node = %deps.node_id, "this node was declared dead by another; registering again");
                let _ = deps.store.register_node(&deps.node_id, now).await;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        if deps.store.backend() == Backend::Postgres {
            if let Err(e) = recover_dead_nodes(&deps.store, now).await {
                tracing::warn!(error = %e, "recovering dead nodes' attempts failed");
            }
        }
    }
}

/// Closes the open attempts of nodes that stopped heartbeating, then forgets them.
async fn recover_dead_nodes(store: &Store, now: i64) -> Result<(), StoreError> {
    let dead = store.dead_nodes(now - NODE_DEAD_AFTER_MS).await?;
    if dead.is_empty() {
        return Ok(());
    }
    let closed = recover_interrupted(store, Some(&dead)).await?;
    store.forget_nodes(&dead).await?;
    tracing::warn!(nodes = ?dead, closed, "nodes stopped heartbeating; their open attempts were closed as interrupted");
    Ok(())
}

/// Attempts still open (of every node, or of `nodes`) were cut short: each
/// counts as a try with outcome `interrupted`, and its target leaves `dialing`.
pub async fn recover_interrupted(
    store: &Store,
    nodes: Option<&[String]>,
) -> Result<usize, StoreError> {
    let open = store.open_attempts(nodes).await?;
    let now = Utc::now();
    let mut batch = Vec::new();
    for a in &open {
        let Some(target_id) = &a.target_id else {
            if a.campaign_id.is_none() {
                recover_one_off(store, &a.call_id, a.answered_at, now).await?;
            }
            continue;
        };
        let target = match store.get_target(target_id).await {
            Ok(t) => t,
            Err(StoreError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let policy = match &a.campaign_id {
            Some(c) => campaign_policy(store, c).await?,
            None => RetryPolicy::from_outplan(&Value::Null),
        };
        let ended = ended_without_a_call(
            Outcome::Interrupted,
            "herald stopped during the call".into(),
            a.answered_at.map(crate::store::from_ms),
            now,
        );
        let index = a.destination_index.unwrap_or(0).max(0) as usize;
        let decision = decide(
            &target.destinations,
            index,
            target.try_count_max.map(|n| n as u32),
            target.expires_at.map(crate::store::from_ms),
            &AttemptResult {
                outcome: Outcome::Interrupted,
                agent_result: None,
                retry_after: None,
            },
            &policy,
            now,
            rand::thread_rng().gen(),
        );
        let number = target
            .destinations
            .get(index)
            .map(|d| d.target.clone())
            .unwrap_or_default();
        let f = Finished {
            call_id: &a.call_id,
            target_id,
            campaign_id: a.campaign_id.as_deref(),
            number: &number,
            destination_index: index,
            answer_recorded: target.state == crate::domain::TargetState::Answered,
            ended: &ended,
            sip_call_id: None,
            agent_result: None,
        };
        batch.push(completion(&f, &decision));
    }
    store
        .record_completions(&batch, now.timestamp_millis())
        .await?;
    if !open.is_empty() {
        tracing::warn!(
            count = open.len(),
            "closed attempts left open by a previous run as interrupted"
        );
    }
    Ok(open.len())
}

/// A one-off call cut short: a try, retried if it has retries left.
async fn recover_one_off(
    store: &Store,
    id: &str,
    answered_at: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let call = store.get_call(id).await?;
    let attempt = call["attempt"].as_u64().unwrap_or(1).max(1) as u32;
    let max_retries = call["request"]["max_retries"].as_u64().unwrap_or(0) as u32;
    let delay = Duration::from_secs(call["request"]["retry_delay"].as_u64().unwrap_or(60));
    let retry_at = super::apply::one_off_retry_at(
        Outcome::Interrupted,
        attempt,
        max_retries,
        delay,
        None,
        now,
    );
    let status = if retry_at.is_some() {
        "scheduled"
    } else {
        "failed"
    };
    let ended = ended_without_a_call(
        Outcome::Interrupted,
        "herald stopped during the call".into(),
        answered_at.map(crate::store::from_ms),
        now,
    );
    let f = super::apply::call_final(&ended, status, None, None);
    store
        .finish_one_off(id, &f, status, retry_at.map(|t| t.timestamp_millis()))
        .await
}

async fn campaign_policy(store: &Store, campaign_id: &str) -> Result<RetryPolicy, StoreError> {
    let c = match store.get_campaign(campaign_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(RetryPolicy::from_outplan(&Value::Null)),
        Err(e) => return Err(e),
    };
    let plan = store.get_doc(OUTPLANS, &c.outplan_id).await?;
    Ok(RetryPolicy::from_outplan(&plan.spec))
}

async fn record_loop(store: Store, events: EventBus, mut rx: mpsc::Receiver<Completion>) {
    // Completions of different targets are independent (a target has one live
    // attempt at most), so PostgreSQL takes several batches at once; SQLite
    // has one writer.
    let parallel = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => RECORD_WRITERS_POSTGRES,
    };
    let mut writing = tokio::task::JoinSet::new();
    loop {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        if rx.recv_many(&mut batch, RECORD_BATCH).await == 0 {
            break;
        }
        while writing.len() >= parallel {
            writing.join_next().await;
        }
        writing.spawn(record_batch(store.clone(), events.clone(), batch));
    }
    while writing.join_next().await.is_some() {}
}

/// Writes one batch; a failed write is retried, as an attempt's outcome must not be lost.
async fn record_batch(store: Store, events: EventBus, batch: Vec<Completion>) {
    let now = Utc::now().timestamp_millis();
    let mut delay = Duration::from_millis(50);
    while let Err(e) = store.record_completions(&batch, now).await {
        tracing::error!(error = %e, rows = batch.len(), "recording attempt outcomes failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    events.publish(Event::AttemptsRecorded { count: batch.len() });
}

/// Keeps one task per active campaign.
async fn supervise(
    deps: SchedulerDeps,
    record: mpsc::Sender<Completion>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let active = match deps
            .store
            .campaign_ids_with_status(&["running", "waiting", "paused", "stopping"])
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "listing campaigns failed");
                continue;
            }
        };
        running.retain(|id, token| {
            let keep = !token.is_cancelled() && active.iter().any(|(a, _)| a == id);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (id, _) in active {
            if running.contains_key(&id) {
                continue;
            }
            let token = cancel.child_token();
            running.insert(id.clone(), token.clone());
            tasks.spawn(run_campaign(
                deps.clone(),
                id,
                record.clone(),
                token,
                tasks.clone(),
            ));
        }
    }
}

/// A campaign's settings, reloaded every tick so PATCHes apply at once.
struct Settings {
    status: String,
    status_reason: Option<String>,
    outdial_id: String,
    trunk: String,
    agent_id: Option<String>,
    agent_sessions: u32,
    /// The agent's stored spec.
    agent_spec: Option<Value>,
    max_concurrent: u32,
    cps: f64,
    window: Option<(Window, chrono_tz::Tz)>,
    priority: Priority,
    end_continue: bool,
    schedule: Option<DailySchedule>,
    schedule_tz: chrono_tz::Tz,
    policy: RetryPolicy,
    ring_timeout: Duration,
    max_duration: Duration,
    caller_id: Option<String>,
}

async fn load_settings(store: &Store, id: &str) -> Result<Settings, StoreError> {
    let c = store.get_campaign(id).await?;
    let plan = store.get_doc(OUTPLANS, &c.outplan_id).await?;
    let agent_spec = match &c.agent_id {
        Some(a) => Some(store.get_doc(AGENTS, a).await?.spec),
        None => None,
    };
    let agent_sessions = match &agent_spec {
        Some(spec) => crate::agent::max_concurrent_sessions(spec),
        None => u32::MAX,
    };
    Ok(Settings {
        status: c.status,
        status_reason: c.status_reason,
        outdial_id: c.outdial_id,
        trunk: c.spec["trunk"].as_str().unwrap_or("default").to_string(),
        agent_id: c.agent_id,
        agent_sessions,
        agent_spec,
        max_concurrent: c.spec["max_concurrent_calls"].as_u64().unwrap_or(10) as u32,
        cps: c.spec["calls_per_second"].as_f64().unwrap_or(1.0),
        window: Window::from_spec(&c.spec["calling_window"]),
        priority: Priority::from_spec(&c.spec),
        schedule: DailySchedule::from_spec(&c.spec["schedule"]),
        schedule_tz: schedule_timezone(&c.spec),
        end_continue: c.spec["end_handle"] == "continue",
        policy: RetryPolicy::from_outplan(&plan.spec),
        ring_timeout: Duration::from_secs(plan.spec["dial_timeout_s"].as_u64().unwrap_or(30)),
        max_duration: Duration::from_secs(
            plan.spec["max_call_duration_s"].as_u64().unwrap_or(3600),
        ),
        caller_id: plan.spec["caller_id"].as_str().map(str::to_string),
    })
}

fn limiter_for(cps: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / cps.max(0.001));
    // Allow one tick's worth at once, so high rates are not capped by the tick.
    let burst = ((cps * TICK.as_secs_f64()).ceil() as u32).max(1);
    let quota = Quota::with_period(period)
        .expect("positive period")
        .allow_burst(NonZeroU32::new(burst).expect("burst ≥ 1"));
    RateLimiter::direct(quota)
}

/// Live calls of one campaign: each has a token that hangs it up.
type LiveCalls = Arc<std::sync::Mutex<HashMap<String, CancellationToken>>>;

async fn run_campaign(
    deps: SchedulerDeps,
    id: String,
    record: mpsc::Sender<Completion>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let live: LiveCalls = Arc::default();
    // When today's scheduled run last ran out of due targets.
    let mut drained_at: Option<DateTime<Utc>> = None;
    let mut limiter: Option<(f64, DefaultDirectRateLimiter)> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = match load_settings(&deps.store, &id).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => break,
            Err(e) => {
                tracing::warn!(campaign = %id, error = %e, "loading campaign failed");
                continue;
            }
        };
        let in_flight = live.lock().expect("live calls").len() as u32;
        let now = Utc::now();
        match s.status.as_str() {
            "paused" => continue,
            "stopping" => {
                if s.status_reason.as_deref() == Some("force") {
                    for token in live.lock().expect("live calls").values() {
                        token.cancel();
                    }
                }
                if in_flight == 0 {
                    set_status(&deps, &id, &["stopping"], "stopped", None).await;
                    break;
                }
                continue;
            }
            _ => {}
        }
        // A daily schedule: nothing before today's start, nor after the run drained.
        if let Some(schedule) = &s.schedule {
            match daily_gate(schedule, s.schedule_tz, now, drained_at) {
                DailyGate::Waiting { until } => {
                    if s.status == "running" && in_flight == 0 {
                        let reason = format!("{DAILY_WAIT} ({})", until.to_rfc3339());
                        set_status(&deps, &id, &["running"], "waiting", Some(&reason)).await;
                    }
                    continue;
                }
                DailyGate::Open { .. } => {
                    if s.status == "waiting"
                        && s.status_reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with(DAILY_WAIT))
                    {
                        set_status(&deps, &id, &["waiting"], "running", None).await;
                    }
                }
            }
        }
        // running or waiting: dial what pacing allows, to the campaign's agent.
        let agent = match (&s.agent_id, &s.agent_spec) {
            (Some(a), Some(spec)) => match deps.runtime.agent(a, spec) {
                Ok(agent) => Some(agent),
                Err(e) => {
                    let reason = format!("agent {a}: {e}");
                    tracing::error!(campaign = %id, %reason, "pausing the campaign");
                    set_status(&deps, &id, &["running", "waiting"], "paused", Some(&reason)).await;
                    continue;
                }
            },
            _ => None,
        };
        if limiter.as_ref().is_none_or(|(cps, _)| *cps != s.cps) {
            limiter = Some((s.cps, limiter_for(s.cps)));
        }
        let rl = &limiter.as_ref().expect("limiter set").1;
        let room = s.max_concurrent.saturating_sub(in_flight);
        let mut tokens = 0;
        while tokens < room && rl.check().is_ok() {
            tokens += 1;
        }
        // The trunk's own limits, shared with the other campaigns on it (a
        // list's direct SIP destinations are counted against it too).
        tokens = match deps.trunks.get(&s.trunk) {
            Some(gate) => gate.take(
                tokens,
                deps.telephony.trunk_live_calls(&s.trunk),
                s.priority,
                now.timestamp_millis(),
            ),
            None => 0,
        };
        // The agent's sessions, shared with every campaign using it: taken
        // before claiming so that two campaigns cannot both overshoot.
        let mut sessions = Vec::new();
        if let Some(agent) = &s.agent_id {
            while sessions.len() < tokens as usize {
                match deps.agents.try_take(agent, s.agent_sessions) {
                    Some(slot) => sessions.push(slot),
                    None => break,
                }
            }
            tokens = sessions.len() as u32;
        }
        let scope = ClaimScope {
            campaign_id: &id,
            outdial_id: &s.outdial_id,
            node_id: &deps.node_id,
            lease_ms: LEASE_MS,
            trunk: &s.trunk,
            agent_id: s.agent_id.as_deref(),
        };
        let mut deferred_only = false;
        let claimed = if tokens > 0 {
            let decided_defer = std::sync::atomic::AtomicUsize::new(0);
            let r = deps
                .store
                .claim_due_targets(
                    &scope,
                    now.timestamp_millis(),
                    tokens as usize,
                    |t, on_dnc| {
                        let a = claim_decision(t, on_dnc, &s, now);
                        if matches!(a, ClaimAction::Defer { .. }) {
                            decided_defer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        a
                    },
                )
                .await;
            match r {
                Ok(c) => {
                    deferred_only = c.is_empty() && decided_defer.into_inner() > 0;
                    c
                }
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "claiming targets failed");
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let dialed = !claimed.is_empty();
        if dialed {
            deps.events.publish(Event::AttemptsClaimed {
                campaign_id: id.clone(),
                count: claimed.len(),
            });
        }
        for c in claimed {
            let session = sessions.pop();
            let token = cancel.child_token();
            live.lock()
                .expect("live calls")
                .insert(c.call_id.clone(), token.clone());
            let call = CallJob {
                _session: session,
                store: deps.store.clone(),
                events: deps.events.clone(),
                telephony: deps.telephony.clone(),
                record: record.clone(),
                campaign_id: id.clone(),
                trunk: s.trunk.clone(),
                policy: s.policy.clone(),
                ring_timeout: s.ring_timeout,
                max_duration: s.max_duration,
                caller_id: s.caller_id.clone(),
                live: live.clone(),
                agent: agent.clone(),
                runtime: deps.runtime.clone(),
            };
            let span = tracing::info_span!("attempt", campaign = %id, target = %c.target.id, call = %c.call_id);
            tasks.spawn(call.run(c, token).instrument(span));
        }
        // Status bookkeeping: waiting, running, finished.
        if deferred_only && in_flight == 0 && s.status == "running" {
            set_status(
                &deps,
                &id,
                &["running"],
                "waiting",
                Some("outside the calling window"),
            )
            .await;
        } else if dialed && s.status == "waiting" {
            set_status(&deps, &id, &["waiting"], "running", None).await;
        } else if !dialed && in_flight == 0 && s.status == "running" {
            if !s.end_continue {
                if let Ok(false) = deps.store.outdial_has_open_targets(&s.outdial_id).await {
                    if set_status(&deps, &id, &["running"], "finished", None).await {
                        tracing::info!(campaign = %id, "campaign finished");
                        break;
                    }
                }
            }
            if s.schedule.is_some() {
                if let Ok(false) = deps
                    .store
                    .outdial_has_due_targets(&s.outdial_id, now.timestamp_millis())
                    .await
                {
                    drained_at = Some(now);
                }
            }
        }
    }
}

/// Changes a campaign's status if it is in one of `from`, and says so on the bus.
async fn set_status(
    deps: &SchedulerDeps,
    id: &str,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
) -> bool {
    match deps
        .store
        .set_campaign_status(id, from, to, reason, Utc::now().timestamp_millis())
        .await
    {
        Ok(true) => {
            deps.events.campaign_status(id, to);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(campaign = %id, error = %e, "changing campaign status failed");
            false
        }
    }
}

/// Right before dialing: on the DNC list, expired, or not yet allowed
/// (`not_before`, the calling window in the target's own zone)?
fn claim_decision(
    t: &crate::store::targets::TargetRow,
    on_dnc: bool,
    s: &Settings,
    now: DateTime<Utc>,
) -> ClaimAction {
    let index = t.destination_index.max(0) as usize;
    if index >= t.destinations.len() {
        return ClaimAction::Fail {
            reason: "tries_exhausted".into(),
        };
    }
    let first_tel = t
        .destinations
        .iter()
        .find(|d| d.kind == DestinationKind::Tel)
        .map(|d| d.target.as_str());
    let window = s.window.as_ref().map(|(w, campaign_tz)| {
        (
            w,
            resolve_timezone(t.timezone.as_deref(), first_tel, *campaign_tz),
        )
    });
    let gate = DialGate {
        not_before: t.not_before.map(crate::store::from_ms),
        expires_at: t.expires_at.map(crate::store::from_ms),
        window,
        priority: s.priority,
        on_dnc,
    };
    match check_before_dial(&gate, now) {
        DialCheck::Dial => ClaimAction::Dial {
            destination_index: index,
        },
        DialCheck::WaitUntil(at) => ClaimAction::Defer {
            until: at.timestamp_millis(),
        },
        DialCheck::Fail { reason } => ClaimAction::Fail {
            reason: reason.into(),
        },
    }
}

/// One attempt: place the call, follow it to its end, hand over the outcome.
struct CallJob {
    /// The agent session this call holds until it ends.
    _session: Option<SessionSlot>,
    store: Store,
    events: EventBus,
    telephony: Arc<dyn Telephony>,
    record: mpsc::Sender<Completion>,
    campaign_id: String,
    trunk: String,
    policy: RetryPolicy,
    ring_timeout: Duration,
    max_duration: Duration,
    caller_id: Option<String>,
    live: LiveCalls,
    agent: Option<Arc<dyn Agent>>,
    runtime: AgentRuntime,
}

impl CallJob {
    async fn run(self, c: Claimed, hangup: CancellationToken) {
        let destination = match c.destination.kind {
            DestinationKind::Tel => DialDestination::Tel {
                number: c.destination.target.clone(),
                trunk: self.trunk.clone(),
            },
            DestinationKind::Sip => DialDestination::Sip {
                uri: c.destination.target.clone(),
            },
        };
        let req = OriginateRequest {
            attempt_id: c.call_id.clone(),
            destination,
            caller_id: self.caller_id.clone(),
            ring_timeout: self.ring_timeout,
            max_duration: self.max_duration,
            headers: Vec::new(),
        };
        let (store, claimed, campaign_id) = (&self.store, &c, self.campaign_id.as_str());
        let (ctl, _registered) = self.runtime.sessions.register(&c.call_id);
        let link = AgentLink {
            agent: self.agent.clone(),
            ctx: self.runtime.context(
                &c.call_id,
                Some(campaign_id),
                Some(&c.target.id),
                &c.destination.target,
                self.caller_id.as_deref(),
                &c.target.variables,
            ),
            ctl,
            prepare_timeout: self.runtime.prepare_timeout,
        };
        let placed = place_call(
            self.telephony.as_ref(),
            req,
            &hangup,
            link,
            |at| async move {
                store
                    .record_answer(
                        &claimed.call_id,
                        &claimed.target.id,
                        Some(campaign_id),
                        at.timestamp_millis(),
                    )
                    .await
                    .unwrap_or(false)
            },
        )
        .await;
        let (ended, sip_call_id, answer_recorded) =
            (placed.ended, placed.sip_call_id, placed.answer_recorded);
        self.store.metrics().call_media(ended.media_stats.as_ref());
        tracing::debug!(outcome = %ended.outcome, sip_code = ?ended.sip_code, "attempt ended");
        // A result only counts for a call that was answered and kept.
        let agent_result = placed
            .agent_result
            .filter(|_| ended.outcome == Outcome::Answered);
        let decision = decide(
            &c.target.destinations,
            c.destination_index,
            c.target.try_count_max.map(|n| n as u32),
            c.target.expires_at.map(crate::store::from_ms),
            &AttemptResult {
                outcome: ended.outcome,
                agent_result: agent_result.as_deref(),
                retry_after: ended.retry_after,
            },
            &self.policy,
            Utc::now(),
            rand::thread_rng().gen(),
        );
        let f = Finished {
            call_id: &c.call_id,
            target_id: &c.target.id,
            campaign_id: Some(&self.campaign_id),
            number: &c.destination.target,
            destination_index: c.destination_index,
            answer_recorded,
            ended: &ended,
            sip_call_id: sip_call_id.as_deref(),
            agent_result: agent_result.as_deref(),
        };
        let done = completion(&f, &decision);
        if ended.outcome == Outcome::TrunkError {
            // The trunk refuses us (credentials, codecs): stop dialing until someone looks.
            let reason = format!("trunk_error: {}", ended.reason);
            tracing::error!(campaign = %self.campaign_id, trunk = %self.trunk, %reason, "pausing the campaign");
            if let Ok(true) = self
                .store
                .set_campaign_status(
                    &self.campaign_id,
                    &["running", "waiting"],
                    "paused",
                    Some(&reason),
                    Utc::now().timestamp_millis(),
                )
                .await
            {
                self.events.campaign_status(&self.campaign_id, "paused");
            }
        }
        let _ = self.record.send(done).await;
        self.live.lock().expect("live calls").remove(&c.call_id);
    }
}

/// How a placed call went.
pub(crate) struct Placed {
    pub ended: crate::sip::CallEnded,
    pub sip_call_id: Option<String>,
    /// What `on_answer` returned, if the call was answered.
    pub answer_recorded: bool,
    /// The result the agent session set, if any.
    pub agent_result: Option<String>,
}

/// The agent that takes an answered call, and the call's control (its
/// result, and a way for the agent or the REST API to hang up).
pub(crate) struct AgentLink {
    pub agent: Option<Arc<dyn Agent>>,
    pub ctx: SessionContext,
    pub ctl: Arc<SessionControl>,
    pub prepare_timeout: Duration,
}

/// Aborts a task when dropped (a session prepared for a call that was not answered).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Places a call and follows it to its end. `on_answer` runs when it is
/// answered. The agent's session is prepared while the phone rings and runs
/// on the answered call; without an agent the call is hung up at once. An
/// agent that cannot be had ends the attempt `agent_unavailable`. A call hung
/// up through `hangup` (forced stop, shutdown) ends `interrupted`.
pub(crate) async fn place_call<F, Fut>(
    telephony: &dyn Telephony,
    req: OriginateRequest,
    hangup: &CancellationToken,
    link: AgentLink,
    mut on_answer: F,
) -> Placed
where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut call = match telephony.originate(req).await {
        Err(e) => {
            return Placed {
                ended: failed_to_start(&e),
                sip_call_id: None,
                answer_recorded: false,
                agent_result: None,
            }
        }
        Ok(call) => call,
    };
    let sip_call_id = Some(call.call_id().to_string());
    let ctl = link.ctl.clone();
    let prepare = |agent: &Arc<dyn Agent>| {
        let (agent, ctx) = (agent.clone(), link.ctx.clone());
        AbortOnDrop(tokio::spawn(async move { agent.prepare(&ctx).await }))
    };
    let mut prepared = None;
    let mut session: Option<AbortOnDrop<()>> = None;
    let mut unavailable: Option<String> = None;
    let mut answer_recorded = false;
    let mut hung_up = false;
    let mut agent_hung_up = false;
    let ended = loop {
        let ev = tokio::select! {
            ev = call.next_event() => ev,
            _ = hangup.cancelled(), if !hung_up => {
                call.hangup();
                hung_up = true;
                continue;
            }
            _ = ctl.hangup_requested().cancelled(), if !agent_hung_up => {
                call.hangup();
                agent_hung_up = true;
                continue;
            }
            _ = async { (&mut session.as_mut().expect("session").0).await }, if session.is_some() && !agent_hung_up => {
                // The session is over: so is the call.
                session = None;
                call.hangup();
                agent_hung_up = true;
                continue;
            }
        };
        match ev {
            Some(CallEvent::Ringing { .. }) => {
                if let (None, Some(agent)) = (&prepared, &link.agent) {
                    prepared = Some(prepare(agent));
                }
            }
            Some(CallEvent::Answered { at, media }) => {
                answer_recorded = on_answer(at).await;
                ctl.mark_answered();
                let Some(agent) = &link.agent else {
                    drop(media);
                    call.hangup();
                    continue;
                };
                let mut ready = prepared.take().unwrap_or_else(|| prepare(agent));
                let mut media = Some(media);
                match tokio::time::timeout(link.prepare_timeout, &mut ready.0).await {
                    Ok(Ok(Ok(s))) => {
                        let (media, ctl) = (media.take().expect("media"), ctl.clone());
                        session = Some(AbortOnDrop(tokio::spawn(s.run(media, ctl))));
                    }
                    Ok(Ok(Err(e))) => unavailable = Some(e.0),
                    Ok(Err(e)) => unavailable = Some(format!("agent session failed: {e}")),
                    Err(_) => {
                        unavailable = Some(format!(
                            "agent not ready within {} ms",
                            link.prepare_timeout.as_millis()
                        ))
                    }
                }
                if unavailable.is_some() {
                    drop(media);
                    call.hangup();
                }
            }
            Some(CallEvent::Ended(mut e)) => {
                if hung_up || hangup.is_cancelled() {
                    e.outcome = Outcome::Interrupted;
                    e.reason = format!("interrupted: {}", e.reason);
                } else if let Some(why) = &unavailable {
                    e.outcome = Outcome::AgentUnavailable;
                    e.reason = format!("agent_unavailable: {why}");
                }
                break e;
            }
            Some(_) => {}
            None => break failed_to_start(&OriginateError::ShuttingDown),
        }
    };
    if let Some(mut s) = session {
        // The call is over; the session sees its media end and wraps up.
        if tokio::time::timeout(SESSION_END_GRACE, &mut s.0)
            .await
            .is_err()
        {
            tracing::warn!("agent session did not end with its call; stopped");
        }
    }
    Placed {
        ended,
        sip_call_id,
        answer_recorded,
        agent_result: ctl.result(),
    }
}

/// A call that could not be placed at all.
fn failed_to_start(e: &OriginateError) -> crate::sip::CallEnded {
    let outcome = match e {
        OriginateError::InvalidDestination(_) => Outcome::InvalidDestination,
        OriginateError::UnknownTrunk(_)
        | OriginateError::InvalidCallerId(_)
        | OriginateError::UnsupportedTransport { .. } => Outcome::TrunkError,
        OriginateError::ShuttingDown => Outcome::Interrupted,
        OriginateError::TrunkBusy { .. } | OriginateError::Media(_) => Outcome::TemporaryFailure,
    };
    ended_without_a_call(outcome, e.to_string(), None, Utc::now())
}

/// The end of an attempt that no SIP exchange finished: it never started, or
/// herald died during it.
fn ended_without_a_call(
    outcome: Outcome,
    reason: String,
    answered_at: Option<DateTime<Utc>>,
    ended_at: DateTime<Utc>,
) -> crate::sip::CallEnded {
    crate::sip::CallEnded {
        outcome,
        sip_code: None,
        q850_cause: None,
        retry_after: None,
        hangup_by: crate::sip::HangupBy::Error,
        reason,
        invite_sent_at: None,
        ringing_at: None,
        answered_at,
        ended_at,
        media_stats: None,
    }
}
