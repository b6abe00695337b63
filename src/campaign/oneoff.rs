//! One-off calls (`POST /v1/calls`): due ones are claimed every tick, checked
//! right before dialing like campaign targets (`rules::due`: a number on the
//! do-not-call list is refused, `failed` with reason `dnc`, and never
//! dialed), placed through the same attempt driver and telephony as
//! campaigns (and the same trunk limits), and closed with their outcome; a
//! call with retries left is scheduled again. An opt-out set by the call's
//! agent is written with the call's result, in one transaction.
//!
//! A call with an agent holds one of the agent's sessions
//! (`max_concurrent_sessions`, shared with the campaigns using the agent)
//! from its claim to the end of its try. While all are in use the call is
//! not claimed: it stays `pending` (or `scheduled`) and is dialed at the
//! first tick after a session frees.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::amd::Amd;
use super::apply::{call_final, one_off_retry_at};
use super::attempt::{run_attempt, until_written, AttemptCall, AttemptRecord, Placed};
use super::deps::{SchedulerDeps, TICK};
use super::gate::{self, Recipient};
use super::rules::due::{check_before_dial, DialCheck, DialGate};
use super::rules::pacing::Priority;
use super::trunks::SessionSlot;
use crate::agent::Agent;
use crate::domain::specs::AgentKind;
use crate::domain::{DestinationKind, Outcome};
use crate::events::Event;
use crate::store::claims::{ClaimAction, Facts};
use crate::store::oneoff::OneOffClaim;

/// One-off calls claimed per tick at most, per agent.
const CLAIM_LIMIT: usize = 100;

pub(crate) async fn one_off_loop(
    deps: SchedulerDeps,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = deps.clock.now_ms();
        let due = match deps.store.due_one_offs_by_agent(now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "finding due one-off calls failed");
                continue;
            }
        };
        for (agent, count) in due {
            let wanted = usize::try_from(count).unwrap_or(0).min(CLAIM_LIMIT);
            let mut slots = Vec::new();
            if let Some(a) = &agent {
                // A missing agent is reported by the call itself.
                if let Some(max) = session_limit(&deps, a).await {
                    while slots.len() < wanted {
                        match deps.agents.try_take(a, deps.share.of(max)) {
                            Some(slot) => slots.push(slot),
                            None => break,
                        }
                    }
                    if slots.is_empty() {
                        continue;
                    }
                }
            }
            let limit = if slots.is_empty() {
                wanted
            } else {
                slots.len()
            };
            let claims = match deps
                .store
                .claim_due_one_offs(&deps.node_id, now, agent.as_deref(), limit)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming one-off calls failed");
                    continue;
                }
            };
            for c in claims {
                let slot = slots.pop();
                let span = tracing::info_span!("one_off_call", call = %c.id, attempt = c.attempt);
                tasks.spawn(run(deps.clone(), c, slot, cancel.child_token()).instrument(span));
            }
        }
    }
}

/// The agent's `max_concurrent_sessions`; `None` if it cannot be loaded.
async fn session_limit(deps: &SchedulerDeps, agent: &str) -> Option<u32> {
    match deps.store.get_agent(agent).await {
        Ok(spec) => Some(spec.max_concurrent_sessions),
        Err(_) => None,
    }
}

/// One try of a claimed call; `_session` is the agent session it holds.
async fn run(
    deps: SchedulerDeps,
    c: OneOffClaim,
    _session: Option<SessionSlot>,
    hangup: CancellationToken,
) {
    // The check right before dialing, as for campaign targets.
    let on_dnc = until_written("looking up the do-not-call list", || {
        deps.store.get_dnc(&c.to)
    })
    .await
    .is_some();
    if let DialCheck::Fail { reason } =
        check_before_dial(&DialGate::one_off(on_dnc), deps.clock.now())
    {
        refuse(&deps, &c, reason).await;
        return;
    }
    if c.spec.compliance.is_set() && !compliance_allows(&deps, &c, on_dnc).await {
        return;
    }
    let kind = match DestinationKind::of_address(&c.to) {
        Ok(kind) => kind,
        Err(why) => {
            // Validated when the call was created: a stored row was changed.
            tracing::error!(call = %c.id, %why, "a one-off call's destination is not an address");
            refuse(&deps, &c, "invalid_destination").await;
            return;
        }
    };
    // The trunk's rate and concurrency apply to one-off calls too, and a
    // trunk that registers must be registered (as for campaigns): wait.
    if let Some(gate) = deps.trunks.get(&c.trunk) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut said = false;
        loop {
            tick.tick().await;
            if hangup.is_cancelled() {
                break;
            }
            if let Some(why) = deps.telephony.trunk_unready(&c.trunk) {
                if !said {
                    tracing::info!(call = %c.id, reason = %why, "waiting for the trunk");
                    said = true;
                }
                continue;
            }
            let live = deps.telephony.trunk_live_calls(&c.trunk);
            if gate.take(1, live, Priority::Normal, deps.clock.now_ms(), &deps.share) == 1 {
                break;
            }
        }
    }
    let secs = |s: u32| Duration::from_secs(s.into());
    let agent = call_agent(&deps, c.spec.agent_id.as_deref()).await;
    let abandon_prompt = match &c.spec.compliance.abandon_prompt {
        Some(name) => match deps.runtime.load_prompt(name).await {
            Ok(audio) => Some(audio),
            Err(e) => {
                tracing::warn!(call = %c.id, prompt = %name, error = %e, "the abandon prompt cannot be loaded");
                None
            }
        },
        None => None,
    };
    // A profile's shortest ring applies whatever the request says.
    let min_ring = c.spec.compliance.rules().min_ring_s.unwrap_or(0);
    let amd = match Amd::load(&deps.runtime, c.spec.amd.as_ref()).await {
        Ok(amd) => amd,
        Err(e) => {
            refuse(&deps, &c, &e).await;
            return;
        }
    };
    let call = AttemptCall {
        amd,
        abandon_prompt,
        call_id: &c.id,
        kind,
        to: &c.to,
        trunk: &c.trunk,
        caller_id: c.from.as_deref(),
        ring_timeout: secs(c.spec.ring_timeout.max(min_ring)),
        max_duration: secs(c.spec.max_duration),
        agent,
        campaign_id: None,
        target_id: None,
        // A one-off call has no target, so no variables.
        variables: &serde_json::Value::Null,
    };
    let record = OneOffAttempt {
        deps: deps.clone(),
        claim: c.clone(),
    };
    run_attempt(&deps, call, hangup, record).await;
}

/// The call's agent, if it names one that can be built (else the call goes
/// on without one, and says why in the log).
async fn call_agent(deps: &SchedulerDeps, id: Option<&str>) -> Option<Arc<dyn Agent>> {
    let a = id?;
    match deps.store.get_agent(a).await {
        Ok(spec) => match deps.runtime.agent(a, &spec) {
            Ok(agent) => Some(agent),
            Err(e) => {
                tracing::warn!(agent = %a, error = %e, "the call's agent cannot be built");
                None
            }
        },
        Err(e) => {
            tracing::warn!(agent = %a, error = %e, "the call's agent cannot be loaded");
            None
        }
    }
}

/// The compliance gate for a call with a profile or rules: `false` when the
/// call was deferred or refused instead.
async fn compliance_allows(deps: &SchedulerDeps, c: &OneOffClaim, on_dnc: bool) -> bool {
    let rules = c.spec.compliance.rules();
    let now = deps.clock.now();
    let number = (!c.to.starts_with("sip")).then_some(c.to.as_str());
    let history = match number.filter(|_| rules.reads_history()) {
        Some(n) => {
            let since = (now - rules.history_span()).timestamp_millis();
            until_written("reading the number's calls", || {
                deps.store.past_calls_to(n, since)
            })
            .await
        }
        None => Vec::new(),
    };
    // Its own row is this try, not an earlier call.
    let history: Vec<_> = history.into_iter().filter(|p| p.id != c.id).collect();
    let artificial_voice = match &c.spec.agent_id {
        Some(a) => deps
            .store
            .get_agent(a)
            .await
            .map_or(true, |spec| spec.kind != AgentKind::Sip),
        None => false,
    };
    let who = Recipient {
        number,
        timezone: c.spec.timezone.as_deref(),
        consent: c.spec.consent.as_deref(),
        expires_at: None,
    };
    let facts = Facts {
        on_dnc,
        history: &history,
    };
    match gate::check(&rules, &who, &facts, artificial_voice, chrono_tz::UTC, now) {
        None => true,
        Some(ClaimAction::Defer { until, refusal }) => {
            let reason = refusal.unwrap_or("compliance");
            tracing::info!(call = %c.id, %reason, until, "one-off call held by the compliance gate");
            until_written("deferring a one-off call", || {
                deps.store.defer_one_off(&c.id, c.attempt, until, reason)
            })
            .await;
            false
        }
        Some(ClaimAction::Fail { reason }) => {
            refuse(deps, c, &reason).await;
            false
        }
        Some(ClaimAction::Dial { .. }) => true,
    }
}

/// Closes a claimed call without dialing it.
async fn refuse(deps: &SchedulerDeps, c: &OneOffClaim, reason: &str) {
    tracing::info!(call = %c.id, %reason, "one-off call not dialed");
    let now = deps.clock.now_ms();
    until_written("recording a refused one-off call", || {
        deps.store.refuse_one_off(&c.id, reason, now)
    })
    .await;
    deps.events.publish(Event::CallFinished {
        call_id: c.id.clone(),
        status: "failed".to_string(),
    });
}

/// Where a one-off call's try is written: its own row.
struct OneOffAttempt {
    deps: SchedulerDeps,
    claim: OneOffClaim,
}

impl AttemptRecord for OneOffAttempt {
    async fn answered(&self, at: DateTime<Utc>) -> bool {
        self.deps
            .store
            .mark_call_answered(&self.claim.id, at.timestamp_millis())
            .await
            .is_ok()
    }

    async fn finished(self, placed: Placed) {
        let (c, ended) = (&self.claim, &placed.ended);
        let retry_at = one_off_retry_at(
            ended.outcome,
            c.attempt.max(1) as u32,
            c.spec.max_retries,
            Duration::from_secs(c.spec.retry_delay.into()),
            ended.retry_after,
            self.deps.clock.now(),
        );
        let status = match (ended.outcome, retry_at) {
            (Outcome::Answered, _) => "completed",
            (_, Some(_)) => "scheduled",
            (_, None) => "failed",
        };
        let result = placed.agent_result.as_deref();
        let opted_out = (result == Some("opted_out")).then_some(c.to.as_str());
        let f = call_final(ended, status, placed.sip_call_id.as_deref(), result);
        let next = retry_at.map(|t| t.timestamp_millis());
        until_written("recording a one-off call", || {
            self.deps
                .store
                .finish_one_off_opting_out(&c.id, c.attempt, &f, status, next, opted_out)
        })
        .await;
        self.deps.events.publish(Event::CallFinished {
            call_id: c.id.clone(),
            status: status.to_string(),
        });
    }
}
