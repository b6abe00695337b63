//! A campaign's task: every tick it reloads the campaign's settings, applies
//! its status (paused, stopping, a daily schedule's wait), takes what pacing
//! allows (its own rate and concurrency, the trunk's gate, the agent's
//! sessions), claims that many due targets through `rules::due`, and starts
//! an attempt for each. Finished attempts go to the recorder.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::apply::{completion, Finished};
use super::attempt::{run_attempt, AttemptCall, AttemptRecord, Placed};
use super::deps::{SchedulerDeps, TICK};
use super::gate::AbandonPacing;
use super::recorder::Recorders;
use super::rules::due::{claim_decision, Claim, DueTarget};
use super::rules::pacing::campaign_room;
use super::rules::retry::{decide, AttemptResult, RetryPolicy};
use super::rules::schedule::daily_gate;
use super::rules::status::{after_tick, daily_step, AfterTick, DailyStep, TickFacts};
use super::settings::{load_settings, Settings};
use super::trunks::SessionSlot;
use crate::domain::specs::amd::AmdSpec;
use crate::domain::{CampaignStatus, Outcome, StatusCause, StatusMove};
use crate::events::Event;
use crate::store::claims::{ClaimAction, ClaimScope, Claimed, Facts};
use crate::store::recording::Answer;
use crate::store::targets::TargetRow;
use crate::store::StoreError;

/// The status reason of a campaign waiting for its next daily start.
const DAILY_WAIT: &str = "waiting for the next daily start";
/// How often a campaign with an abandonment ceiling counts its abandoned calls.
const ABANDON_CHECK: Duration = Duration::from_secs(2);
/// How long a claimed target is leased before another node may take it back.
const LEASE_MS: i64 = 10 * 60 * 1000;

/// Live calls of one campaign: each has a token that hangs it up.
type LiveCalls = Arc<std::sync::Mutex<HashMap<String, CancellationToken>>>;

fn limiter_for(cps: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / cps.max(0.001));
    // Allow one tick's worth at once, so high rates are not capped by the tick.
    let burst = ((cps * TICK.as_secs_f64()).ceil() as u32).max(1);
    let quota = Quota::with_period(period)
        .expect("positive period")
        .allow_burst(NonZeroU32::new(burst).expect("burst ≥ 1"));
    RateLimiter::direct(quota)
}

pub(crate) async fn run_campaign(
    deps: SchedulerDeps,
    id: String,
    record: Recorders,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let live: LiveCalls = Arc::default();
    // When today's scheduled run last ran out of due targets.
    let mut drained_at: Option<DateTime<Utc>> = None;
    let mut limiter: Option<(f64, DefaultDirectRateLimiter)> = None;
    // The pacing under the abandonment ceiling, counted every ABANDON_CHECK:
    // when last, and what it said.
    let mut abandon: (Option<tokio::time::Instant>, AbandonPacing) = (None, AbandonPacing::Normal);
    // The detection settings, with their voicemail message loaded when they change.
    let mut amd: Option<(Option<AmdSpec>, Option<super::amd::Amd>)> = None;
    // The abandon prompt's name and audio, loaded when the name changes.
    let mut abandon_prompt: Option<(String, Option<bytes::Bytes>)> = None;
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
        let now = deps.clock.now();
        match s.status {
            CampaignStatus::Paused => continue,
            CampaignStatus::Stopping => {
                if s.cause == Some(StatusCause::ForceStop) {
                    for token in live.lock().expect("live calls").values() {
                        token.cancel();
                    }
                }
                if in_flight == 0 {
                    set_status(&deps, &id, StatusMove::Halt, None, None).await;
                    break;
                }
                continue;
            }
            _ => {}
        }
        // A daily schedule: nothing before today's start, nor after the run drained.
        if let Some(schedule) = &s.schedule {
            let gate = daily_gate(schedule, s.schedule_tz, now, drained_at);
            match daily_step(s.status, s.cause, in_flight, &gate) {
                DailyStep::Hold { wait } => {
                    if let Some(until) = wait {
                        let reason = format!("{DAILY_WAIT} ({})", until.to_rfc3339());
                        let cause = Some(StatusCause::DailyStart);
                        set_status(&deps, &id, StatusMove::Wait, Some(&reason), cause).await;
                    }
                    continue;
                }
                DailyStep::Go { wake } => {
                    if wake {
                        set_status(&deps, &id, StatusMove::Wake, None, None).await;
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
                    set_status(&deps, &id, StatusMove::Pause, Some(&reason), None).await;
                    continue;
                }
            },
            _ => None,
        };
        let wanted = s.abandon_prompt.as_deref();
        if abandon_prompt.as_ref().map(|(n, _)| n.as_str()) != wanted {
            abandon_prompt = match wanted {
                None => None,
                Some(name) => match deps.runtime.load_prompt(name).await {
                    Ok(audio) => Some((name.to_string(), Some(audio))),
                    Err(e) => {
                        let reason = format!("abandon_prompt {name:?}: {e}");
                        tracing::error!(campaign = %id, %reason, "pausing the campaign");
                        set_status(&deps, &id, StatusMove::Pause, Some(&reason), None).await;
                        continue;
                    }
                },
            };
        }
        if let Some(rules) = s
            .compliance
            .as_ref()
            .filter(|r| r.max_abandon_rate.is_some())
        {
            if abandon.0.is_none_or(|at| at.elapsed() >= ABANDON_CHECK) {
                match super::gate::abandon_pacing(&deps.store, &id, rules, now).await {
                    Ok(Some((pacing, counts))) => {
                        let first = abandon.0.is_none();
                        if pacing != abandon.1 || (first && pacing != AbandonPacing::Normal) {
                            pacing_moved(&deps, &id, &pacing, &counts, now).await;
                        }
                        deps.store.metrics().set_abandonment(
                            &id,
                            Some(crate::metrics::AbandonGauge {
                                rate: counts.rate,
                                ceiling: counts.max_rate,
                                pacing: pacing.name(),
                            }),
                        );
                        abandon = (Some(tokio::time::Instant::now()), pacing);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(campaign = %id, error = %e, "counting abandoned calls failed")
                    }
                }
            }
            if let AbandonPacing::Stopped(reason) = &abandon.1 {
                if s.status == CampaignStatus::Running
                    && set_status(&deps, &id, StatusMove::Wait, Some(reason), None).await
                {
                    tracing::warn!(campaign = %id, %reason, "dialing held");
                }
                continue;
            }
        }
        // A trunk that registers and is not registered takes no calls.
        if let Some(reason) = deps.telephony.trunk_unready(&s.trunk) {
            if s.status == CampaignStatus::Running
                && set_status(&deps, &id, StatusMove::Wait, Some(&reason), None).await
            {
                tracing::warn!(campaign = %id, %reason, "dialing held");
            }
            continue;
        }
        if amd.as_ref().is_none_or(|(spec, _)| *spec != s.amd) {
            match super::amd::Amd::load(&deps.runtime, s.amd.as_ref()).await {
                Ok(loaded) => amd = Some((s.amd.clone(), loaded)),
                Err(reason) => {
                    tracing::error!(campaign = %id, %reason, "pausing the campaign");
                    set_status(&deps, &id, StatusMove::Pause, Some(&reason), None).await;
                    continue;
                }
            }
        }
        // This node's part of the campaign's limits (all live nodes dial it).
        let cps = deps.share.of_rate(s.cps);
        if limiter.as_ref().is_none_or(|(c, _)| *c != cps) {
            limiter = Some((cps, limiter_for(cps)));
        }
        let rl = &limiter.as_ref().expect("limiter set").1;
        let mut room = campaign_room(deps.share.of(s.max_concurrent), in_flight);
        if abandon.1 == AbandonPacing::Cautious {
            room = room.min(cautious_room(&deps, &live));
        }
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
                &deps.share,
            ),
            None => 0,
        };
        // The agent's sessions, shared with every campaign using it: taken
        // before claiming so that two campaigns cannot both overshoot.
        let mut sessions = Vec::new();
        if let Some(agent) = &s.agent_id {
            while sessions.len() < tokens as usize {
                match deps.agents.try_take(agent, deps.share.of(s.agent_sessions)) {
                    Some(slot) => sessions.push(slot),
                    None => break,
                }
            }
            tokens = sessions.len() as u32;
        }
        let (claimed, deferred) = if tokens > 0 {
            match claim(&deps, &id, &s, tokens as usize, now).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "claiming targets failed");
                    continue;
                }
            }
        } else {
            (Vec::new(), None)
        };
        let dialed = !claimed.is_empty();
        if dialed {
            deps.events.publish(Event::AttemptsClaimed {
                campaign_id: id.clone(),
                count: claimed.len(),
            });
        }
        for c in claimed {
            let token = cancel.child_token();
            live.lock()
                .expect("live calls")
                .insert(c.call_id.clone(), token.clone());
            let attempt = CampaignAttempt {
                _session: sessions.pop(),
                deps: deps.clone(),
                record: record.clone(),
                campaign_id: id.clone(),
                trunk: s.trunk.clone(),
                policy: s.policy.clone(),
                caller_id: s.caller_id.clone(),
                ring_timeout: s.ring_timeout,
                max_duration: s.max_duration,
                agent: agent.clone(),
                abandon_prompt: abandon_prompt.as_ref().and_then(|(_, p)| p.clone()),
                amd: amd.as_ref().and_then(|(_, a)| a.clone()),
                live: live.clone(),
                claimed: c,
            };
            let span = tracing::info_span!("attempt", campaign = %id, target = %attempt.claimed.target.id, call = %attempt.claimed.call_id);
            tasks.spawn(attempt.run(token).instrument(span));
        }
        // Status bookkeeping: waiting, running, finished.
        let facts = TickFacts {
            status: s.status,
            dialed,
            deferred_only: deferred.is_some(),
            in_flight,
        };
        match after_tick(&facts) {
            AfterTick::Stay => {}
            AfterTick::Wait => {
                let reason = match deferred.flatten() {
                    Some(r) => format!("held by the compliance gate ({r})"),
                    None => "outside the calling window".to_string(),
                };
                set_status(&deps, &id, StatusMove::Wait, Some(&reason), None).await;
            }
            AfterTick::Wake => {
                set_status(&deps, &id, StatusMove::Wake, None, None).await;
            }
            AfterTick::Idle => {
                if !s.end_continue {
                    if let Ok(false) = deps.store.outdial_has_open_targets(&s.outdial_id).await {
                        if set_status(&deps, &id, StatusMove::Finish, None, None).await {
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
    deps.store.metrics().set_abandonment(&id, None);
}

/// Near the abandonment ceiling: one call, and only when every live call of
/// the campaign has its agent (a call still ringing, or answered and waiting
/// for its agent, could be abandoned).
fn cautious_room(deps: &SchedulerDeps, live: &LiveCalls) -> u32 {
    let live = live.lock().expect("live calls");
    let waiting = live.keys().any(|call| {
        deps.runtime
            .sessions
            .get(call)
            .is_none_or(|ctl| !ctl.is_connected())
    });
    u32::from(!waiting)
}

/// Logs (and says in the log) a move of the campaign's pacing under its
/// abandonment ceiling.
async fn pacing_moved(
    deps: &SchedulerDeps,
    id: &str,
    pacing: &AbandonPacing,
    a: &super::gate::AbandonState,
    now: DateTime<Utc>,
) {
    tracing::info!(campaign = %id, pacing = pacing.name(), rate = a.rate, ceiling = a.max_rate, "abandonment pacing");
    let e = crate::store::events::EventRecord::CampaignAbandonment {
        at: now.timestamp_millis(),
        pacing: pacing.name(),
        rate: a.rate,
        ceiling: a.max_rate,
        live_answered: a.counts.live_answered,
        abandoned: a.counts.abandoned,
    };
    if let Err(e) = deps.store.log_abandonment(id, &e).await {
        tracing::warn!(campaign = %id, error = %e, "logging the abandonment pacing failed");
    }
}

/// Claims up to `limit` due targets; also says whether nothing was claimed
/// because every due target was deferred (`Some`: outside its window, or
/// held by the compliance gate for the reason given).
async fn claim(
    deps: &SchedulerDeps,
    id: &str,
    s: &Settings,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<(Vec<Claimed>, Option<Option<&'static str>>), StoreError> {
    let scope = ClaimScope {
        campaign_id: id,
        outdial_id: &s.outdial_id,
        node_id: &deps.node_id,
        lease_ms: LEASE_MS,
        trunk: &s.trunk,
        agent_id: s.agent_id.as_deref(),
        history_since: s
            .compliance
            .as_ref()
            .filter(|r| r.reads_history())
            .map(|r| (now - r.history_span()).timestamp_millis()),
    };
    let deferred = AtomicUsize::new(0);
    let refusal = std::sync::Mutex::new(None);
    let claimed = deps
        .store
        .claim_due_targets(&scope, now.timestamp_millis(), limit, |t, facts| {
            let a = claim_action(t, facts, s, now);
            if let ClaimAction::Defer { refusal: r, .. } = &a {
                deferred.fetch_add(1, Ordering::Relaxed);
                if r.is_some() {
                    *refusal.lock().expect("refusal") = *r;
                }
            }
            a
        })
        .await?;
    let deferred_only = claimed.is_empty() && deferred.into_inner() > 0;
    let refusal = refusal.into_inner().expect("refusal");
    Ok((claimed, deferred_only.then_some(refusal)))
}

/// The claim decision (`rules::due`) for one stored target.
fn claim_action(t: &TargetRow, facts: &Facts<'_>, s: &Settings, now: DateTime<Utc>) -> ClaimAction {
    let due = DueTarget {
        destination_index: t.destination_index.max(0) as usize,
        destinations: &t.destinations,
        timezone: t.timezone.as_deref(),
        not_before: t.not_before.map(crate::store::from_ms),
        expires_at: t.expires_at.map(crate::store::from_ms),
    };
    let window = s.window.as_ref().map(|(w, tz)| (w, *tz));
    match claim_decision(&due, window, s.priority, facts.on_dnc, now) {
        Claim::Dial { destination_index } => {
            let gate = s.compliance.as_ref().and_then(|rules| {
                let campaign_tz = s.window.as_ref().map_or(chrono_tz::UTC, |(_, tz)| *tz);
                super::gate::check_target(
                    rules,
                    t,
                    destination_index,
                    facts,
                    s.artificial_voice,
                    campaign_tz,
                    now,
                )
            });
            gate.unwrap_or(ClaimAction::Dial { destination_index })
        }
        Claim::Defer { until } => ClaimAction::Defer {
            until: until.timestamp_millis(),
            refusal: None,
        },
        Claim::Fail { reason } => ClaimAction::Fail {
            reason: reason.into(),
        },
    }
}

/// Makes `to` move on a campaign, with its reason text and cause, and says so on the bus.
pub(crate) async fn set_status(
    deps: &SchedulerDeps,
    id: &str,
    to: StatusMove,
    reason: Option<&str>,
    cause: Option<StatusCause>,
) -> bool {
    let change = crate::domain::StatusChange::scheduler(to, reason, cause);
    match deps
        .store
        .change_campaign_status(id, &change, deps.clock.now_ms())
        .await
    {
        Ok(true) => {
            deps.events.campaign_status(id, to.to().as_str());
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(campaign = %id, error = %e, "changing campaign status failed");
            false
        }
    }
}

/// One campaign attempt: the claimed target, and where its outcome goes.
struct CampaignAttempt {
    /// The agent session this call holds until it ends.
    _session: Option<SessionSlot>,
    deps: SchedulerDeps,
    record: Recorders,
    campaign_id: String,
    trunk: String,
    policy: RetryPolicy,
    caller_id: Option<String>,
    ring_timeout: Duration,
    max_duration: Duration,
    agent: Option<Arc<dyn crate::agent::Agent>>,
    abandon_prompt: Option<bytes::Bytes>,
    amd: Option<super::amd::Amd>,
    live: LiveCalls,
    claimed: Claimed,
}

impl CampaignAttempt {
    async fn run(self, hangup: CancellationToken) {
        let deps = self.deps.clone();
        let (c, trunk, campaign_id) = (
            self.claimed.clone(),
            self.trunk.clone(),
            self.campaign_id.clone(),
        );
        let caller_id = self.caller_id.clone();
        let call = AttemptCall {
            call_id: &c.call_id,
            kind: c.destination.kind,
            to: &c.destination.target,
            trunk: &trunk,
            caller_id: caller_id.as_deref(),
            ring_timeout: self.ring_timeout,
            max_duration: self.max_duration,
            agent: self.agent.clone(),
            campaign_id: Some(&campaign_id),
            target_id: Some(&c.target.id),
            variables: &c.target.variables,
            abandon_prompt: self.abandon_prompt.clone(),
            amd: self.amd.clone(),
        };
        run_attempt(&deps, call, hangup, self).await;
    }
}

impl AttemptRecord for CampaignAttempt {
    async fn answered(&self, at: DateTime<Utc>) -> bool {
        let c = &self.claimed;
        let answer = Answer {
            call_id: c.call_id.clone(),
            target_id: c.target.id.clone(),
            campaign_id: Some(self.campaign_id.clone()),
            at: at.timestamp_millis(),
        };
        let (reply, moved) = oneshot::channel();
        if self.record.answers.send((answer, reply)).await.is_err() {
            return false;
        }
        moved.await.unwrap_or(false)
    }

    async fn finished(self, placed: Placed) {
        let c = &self.claimed;
        let ended = &placed.ended;
        let decision = decide(
            &c.target.destinations,
            c.destination_index,
            c.target.try_count_max.map(|n| n as u32),
            c.target.expires_at.map(crate::store::from_ms),
            &AttemptResult {
                outcome: ended.outcome,
                agent_result: placed.agent_result.as_deref(),
                retry_after: ended.retry_after,
            },
            &self.policy,
            self.deps.clock.now(),
            rand::thread_rng().gen(),
        );
        let f = Finished {
            call_id: &c.call_id,
            target_id: &c.target.id,
            campaign_id: Some(&self.campaign_id),
            number: &c.destination.target,
            destination_index: c.destination_index,
            answer_recorded: placed.answer_recorded,
            ended,
            sip_call_id: placed.sip_call_id.as_deref(),
            agent_result: placed.agent_result.as_deref(),
        };
        let mut done = completion(&f, &decision);
        done.amd = placed.amd.map(|d| {
            (
                d.verdict.as_str().to_string(),
                i64::from(d.at_ms),
                d.cause.as_str().to_string(),
            )
        });
        if ended.outcome == Outcome::TrunkError {
            // The trunk refuses us (credentials, codecs): stop dialing until someone looks.
            let reason = format!("trunk_error: {}", ended.reason);
            tracing::error!(campaign = %self.campaign_id, trunk = %self.trunk, %reason, "pausing the campaign");
            set_status(
                &self.deps,
                &self.campaign_id,
                StatusMove::Pause,
                Some(&reason),
                None,
            )
            .await;
        }
        let _ = self.record.record.send(done).await;
        self.live.lock().expect("live calls").remove(&c.call_id);
    }
}
