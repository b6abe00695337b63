//! One-off calls (`POST /v1/calls`): due ones are claimed every tick, placed
//! through the same telephony as campaigns (and the same trunk limits), and
//! closed with their outcome; a call with retries left is scheduled again.
//!
//! A call with an agent holds one of the agent's sessions
//! (`max_concurrent_sessions`, shared with the campaigns using the agent)
//! from its claim to the end of its try. While all are in use the call is
//! not claimed: it stays `pending` (or `scheduled`) and is dialed at the
//! first tick after a session frees.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::apply::{call_final, one_off_retry_at};
use super::rules::pacing::Priority;
use super::scheduler::{place_call, AgentLink, SchedulerDeps, TICK};
use super::trunks::SessionSlot;
use crate::domain::Outcome;
use crate::events::Event;
use crate::sip::{DialDestination, OriginateRequest};
use crate::store::documents::AGENTS;
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
        let now = Utc::now().timestamp_millis();
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
                        match deps.agents.try_take(a, max) {
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
    match deps.store.get_doc(AGENTS, agent).await {
        Ok(doc) => Some(crate::agent::max_concurrent_sessions(&doc.spec)),
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
    let secs = |k: &str, d: u64| Duration::from_secs(c.spec[k].as_u64().unwrap_or(d));
    // The trunk's rate and concurrency apply to one-off calls too; wait for a slot.
    if let Some(gate) = deps.trunks.get(&c.trunk) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let live = deps.telephony.trunk_live_calls(&c.trunk);
            if gate.take(1, live, Priority::Normal, Utc::now().timestamp_millis()) == 1
                || hangup.is_cancelled()
            {
                break;
            }
        }
    }
    let destination = if c.to.starts_with("sip:") || c.to.starts_with("sips:") {
        DialDestination::Sip { uri: c.to.clone() }
    } else {
        DialDestination::Tel {
            number: c.to.clone(),
            trunk: c.trunk.clone(),
        }
    };
    let req = OriginateRequest {
        attempt_id: c.id.clone(),
        destination,
        caller_id: c.from.clone(),
        ring_timeout: secs("ring_timeout", 30),
        max_duration: secs("max_duration", 3600),
        headers: Vec::new(),
    };
    let agent = match c.spec["agent_id"].as_str() {
        Some(a) => match deps.store.get_doc(AGENTS, a).await {
            Ok(doc) => match deps.runtime.agent(a, &doc.spec) {
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
        },
        None => None,
    };
    let (ctl, _registered) = deps.runtime.sessions.register(&c.id);
    let link = AgentLink {
        agent,
        ctx: deps.runtime.context(
            &c.id,
            None,
            None,
            &c.to,
            c.from.as_deref(),
            &c.spec["variables"],
        ),
        ctl,
        prepare_timeout: deps.runtime.prepare_timeout,
    };
    let (store, id) = (&deps.store, c.id.as_str());
    let placed = place_call(
        deps.telephony.as_ref(),
        req,
        &hangup,
        link,
        |at| async move {
            store
                .mark_call_answered(id, at.timestamp_millis())
                .await
                .is_ok()
        },
    )
    .await;
    let ended = placed.ended;
    deps.store.metrics().call_media(ended.media_stats.as_ref());
    let max_retries = c.spec["max_retries"].as_u64().unwrap_or(0) as u32;
    let retry_at = one_off_retry_at(
        ended.outcome,
        c.attempt.max(1) as u32,
        max_retries,
        secs("retry_delay", 60),
        ended.retry_after,
        Utc::now(),
    );
    let status = match (ended.outcome, retry_at) {
        (Outcome::Answered, _) => "completed",
        (_, Some(_)) => "scheduled",
        (_, None) => "failed",
    };
    let result = placed
        .agent_result
        .filter(|_| ended.outcome == Outcome::Answered);
    if result.as_deref() == Some("opted_out") {
        if let Err(e) = deps
            .store
            .add_dnc(&c.to, "opted_out", Utc::now().timestamp_millis())
            .await
        {
            tracing::error!(error = %e, "adding an opted-out number to the DNC list failed");
        }
    }
    let f = call_final(
        &ended,
        status,
        placed.sip_call_id.as_deref(),
        result.as_deref(),
    );
    let next = retry_at.map(|t| t.timestamp_millis());
    let mut delay = Duration::from_millis(50);
    while let Err(e) = deps.store.finish_one_off(&c.id, &f, status, next).await {
        tracing::error!(error = %e, "recording a one-off call failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    deps.events.publish(Event::CallFinished {
        call_id: c.id.clone(),
        status: status.to_string(),
    });
}
