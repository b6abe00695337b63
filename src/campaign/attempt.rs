//! One attempt, for campaign targets and one-off calls alike: place the call
//! ([`place_call`]), give the answered call to its agent ([`AgentLink`]),
//! follow it to its end, then hand how it went to the attempt's
//! [`AttemptRecord`] (a campaign's recorder, or the one-off call's row).
//! Writes that must not be lost are retried ([`until_written`]).
//!
//! The checks right before the INVITE are made by the callers, through
//! `rules::due`, before an attempt is started. Owns no decision: outcomes
//! come from `sip::classify`, retries from `rules::retry`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::amd::{self as detection, Amd, Then};
use super::deps::SchedulerDeps;
use crate::agent::{Agent, SessionContext, SessionControl, SESSION_END_GRACE};
use crate::domain::{DestinationKind, Outcome};
use crate::media::amd::Decision;
use crate::media::MediaEvent;
use crate::sip::CallMedia;
use crate::sip::{
    CallEnded, CallEvent, DialDestination, HangupBy, OriginateError, OriginateRequest, Telephony,
};
use crate::store::StoreError;

/// How long an answered person waits for the agent at most when an abandon
/// prompt is set: the 2 s of TCPA's and Ofcom's abandoned-call rules.
const ABANDON_AFTER: Duration = Duration::from_secs(2);

/// What to dial, and who takes the call.
pub(crate) struct AttemptCall<'a> {
    /// The attempt's (call row's) id.
    pub call_id: &'a str,
    pub kind: DestinationKind,
    /// The number or SIP URI.
    pub to: &'a str,
    /// The trunk a `tel` destination is dialed through.
    pub trunk: &'a str,
    pub caller_id: Option<&'a str>,
    pub ring_timeout: Duration,
    pub max_duration: Duration,
    pub agent: Option<Arc<dyn Agent>>,
    pub campaign_id: Option<&'a str>,
    pub target_id: Option<&'a str>,
    /// The variables the agent's session sees.
    pub variables: &'a Value,
    /// Played to a person answered with no agent to take the call.
    pub abandon_prompt: Option<bytes::Bytes>,
    /// Answering-machine detection after the answer.
    pub amd: Option<Amd>,
}

/// Where an attempt's answer and end are written.
pub(crate) trait AttemptRecord: Send + Sync {
    /// The call was answered at `at`; whether that was recorded.
    fn answered(&self, at: DateTime<Utc>) -> impl Future<Output = bool> + Send;
    /// The attempt is over.
    fn finished(self, placed: Placed) -> impl Future<Output = ()> + Send;
}

/// Runs one attempt to its end: dial, agent, record. `hangup` cuts the call
/// short (forced stop, shutdown).
pub(crate) async fn run_attempt<R: AttemptRecord>(
    deps: &SchedulerDeps,
    call: AttemptCall<'_>,
    hangup: CancellationToken,
    record: R,
) {
    let (ctl, _registered) = deps.runtime.sessions.register(call.call_id);
    let link = AgentLink {
        amd: call.amd.clone(),
        abandon_prompt: call.abandon_prompt.clone(),
        agent: call.agent.clone(),
        ctx: deps.runtime.context(
            call.call_id,
            call.campaign_id,
            call.target_id,
            call.to,
            call.caller_id,
            call.variables,
        ),
        ctl,
        // With an abandon prompt (TCPA, Ofcom), a person waits at most 2 s
        // for the agent before hearing it.
        prepare_timeout: match call.abandon_prompt {
            Some(_) => deps.runtime.prepare_timeout.min(ABANDON_AFTER),
            None => deps.runtime.prepare_timeout,
        },
    };
    let req = OriginateRequest {
        attempt_id: call.call_id.to_string(),
        destination: dial_destination(call.kind, call.to, call.trunk),
        caller_id: call.caller_id.map(str::to_string),
        ring_timeout: call.ring_timeout,
        max_duration: call.max_duration,
        headers: Vec::new(),
    };
    let placed = place_call(
        deps.telephony.as_ref(),
        req,
        &hangup,
        link,
        &deps.clock,
        |at| record.answered(at),
    )
    .await;
    deps.store
        .metrics()
        .call_media(placed.ended.media_stats.as_ref());
    tracing::debug!(outcome = %placed.ended.outcome, sip_code = ?placed.ended.sip_code, "attempt ended");
    if let Some(d) = &placed.amd {
        until_written("recording who answered", || {
            deps.store
                .record_amd(call.call_id, d.verdict.as_str(), d.at_ms.into())
        })
        .await;
    }
    record.finished(placed).await;
}

/// A `tel` number goes through its trunk; a SIP URI is dialed at its host.
pub(crate) fn dial_destination(kind: DestinationKind, to: &str, trunk: &str) -> DialDestination {
    match kind {
        DestinationKind::Tel => DialDestination::Tel {
            number: to.to_string(),
            trunk: trunk.to_string(),
        },
        DestinationKind::Sip => DialDestination::Sip {
            uri: to.to_string(),
        },
    }
}

/// How a placed call went.
pub(crate) struct Placed {
    pub ended: CallEnded,
    pub sip_call_id: Option<String>,
    /// What `on_answer` returned, if the call was answered.
    pub answer_recorded: bool,
    /// The result the agent session set, kept only for a call that was
    /// answered (and stayed answered).
    pub agent_result: Option<String>,
    /// The answering-machine detector's verdict, when it ran.
    pub amd: Option<crate::media::amd::Decision>,
}

/// The agent that takes an answered call, and the call's control (its
/// result, and a way for the agent or the REST API to hang up).
pub(crate) struct AgentLink {
    pub agent: Option<Arc<dyn Agent>>,
    /// Played to a person answered with no agent to take the call.
    pub abandon_prompt: Option<bytes::Bytes>,
    /// Answering-machine detection, before the agent takes the call.
    pub amd: Option<Amd>,
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
/// answered, alongside the call (which does not wait for it); its answer is
/// awaited before this returns. The agent's session is prepared while the phone rings and runs
/// on the answered call; without an agent the call is hung up at once. An
/// agent that cannot be had when the call is answered makes the attempt
/// `abandoned`: the abandon prompt, when there is one, is played and the call
/// hung up (`abandon_prompt` in the link). A call hung
/// up through `hangup` (forced stop, shutdown) ends `interrupted`.
pub(crate) async fn place_call<F, Fut>(
    telephony: &dyn Telephony,
    req: OriginateRequest,
    hangup: &CancellationToken,
    link: AgentLink,
    clock: &crate::clock::Clock,
    mut on_answer: F,
) -> Placed
where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut call = match telephony.originate(req).await {
        Err(e) => {
            return Placed {
                ended: failed_to_start(&e, clock.now()),
                sip_call_id: None,
                answer_recorded: false,
                agent_result: None,
                amd: None,
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
    // The answer being recorded: the call goes on meanwhile.
    let mut answering: Option<std::pin::Pin<Box<Fut>>> = None;
    let mut hung_up = false;
    let mut agent_hung_up = false;
    let mut verdict = None;
    // `detect`: the verdict still to come while the agent talks.
    let mut detecting: Option<tokio::sync::oneshot::Receiver<Decision>> = None;
    let ended = loop {
        let ev = tokio::select! {
            ev = call.next_event() => ev,
            moved = async { answering.as_mut().expect("answering").await }, if answering.is_some() => {
                answer_recorded = moved;
                answering = None;
                continue;
            }
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
            d = async { detecting.as_mut().expect("detecting").await }, if detecting.is_some() => {
                detecting = None;
                if let (Ok(d), Some(amd)) = (d, &link.amd) {
                    verdict = Some(d);
                    if heard(amd, &link.ctx.attempt_id, &d) == Then::HangUp {
                        let _ = ctl.set_result("machine");
                        call.hangup();
                    }
                }
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
                    if agent.prepares_at_ringing() {
                        prepared = Some(prepare(agent));
                    }
                }
            }
            Some(CallEvent::Answered { at, media }) => {
                answering = Some(Box::pin(on_answer(at)));
                ctl.mark_answered();
                let Some(agent) = &link.agent else {
                    drop(media);
                    call.hangup();
                    continue;
                };
                let mut ready = prepared.take().unwrap_or_else(|| prepare(agent));
                let mut media = Some(media);
                let amd = link.amd.as_ref().filter(|a| a.spec.is_on());
                if let Some(amd) = amd.filter(|a| a.spec.connects_at_once()) {
                    let (m, rx) = detection::tap(media.take().expect("media"), &amd.spec);
                    media = Some(m);
                    detecting = Some(rx);
                } else if let Some(amd) = amd {
                    let m = media.as_mut().expect("media");
                    let d = detection::listen(m, &amd.spec, hangup).await;
                    verdict = Some(d);
                    match heard(amd, &link.ctx.attempt_id, &d) {
                        Then::Connect => {}
                        Then::HangUp => {
                            let _ = ctl.set_result("machine");
                            drop(media);
                            call.hangup();
                            continue;
                        }
                        Then::LeaveMessage => {
                            let _ = ctl.set_result("voicemail_left");
                            let (m, prompt) = (media.take().expect("media"), amd.voicemail.clone());
                            tokio::spawn(play_then_hang_up(
                                m,
                                prompt.unwrap_or_default(),
                                ctl.clone(),
                            ));
                            continue;
                        }
                    }
                }
                match tokio::time::timeout(link.prepare_timeout, &mut ready.0).await {
                    Ok(Ok(Ok(s))) => {
                        let (media, ctl) = (media.take().expect("media"), ctl.clone());
                        ctl.mark_connected();
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
                if let Some(why) = &unavailable {
                    let media = media.take().expect("media");
                    match &link.abandon_prompt {
                        Some(prompt) => {
                            tracing::info!(%why, "no agent for an answered call: playing the abandon prompt");
                            tokio::spawn(play_then_hang_up(media, prompt.clone(), ctl.clone()));
                        }
                        None => {
                            drop(media);
                            call.hangup();
                        }
                    }
                }
            }
            Some(CallEvent::Ended(mut e)) => {
                if hung_up || hangup.is_cancelled() {
                    e.outcome = Outcome::Interrupted;
                    e.reason = format!("interrupted: {}", e.reason);
                } else if let Some(why) = &unavailable {
                    e.outcome = Outcome::Abandoned;
                    e.reason = format!("abandoned: {why}");
                }
                break e;
            }
            Some(_) => {}
            None => break failed_to_start(&OriginateError::ShuttingDown, clock.now()),
        }
    };
    if let Some(answering) = answering {
        answer_recorded = answering.await;
    }
    if let (Some(rx), Some(amd)) = (detecting, &link.amd) {
        // The call ended first: the verdict due then follows the media's end.
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(1), rx).await {
            heard(amd, &link.ctx.attempt_id, &d);
            verdict = Some(d);
        }
    }
    if let Some(mut s) = session {
        // The call is over; the session sees its media end and wraps up.
        if tokio::time::timeout(SESSION_END_GRACE, &mut s.0)
            .await
            .is_err()
        {
            tracing::warn!("agent session did not end with its call; stopped");
        }
    }
    // A result only counts for a call that was answered and kept.
    let agent_result = ctl.result().filter(|_| ended.outcome == Outcome::Answered);
    Placed {
        ended,
        sip_call_id,
        answer_recorded,
        agent_result,
        amd: verdict,
    }
}

/// A verdict logged and called back; what it means for the call.
fn heard(amd: &Amd, attempt_id: &str, d: &Decision) -> Then {
    tracing::info!(
        answered_by = d.verdict.as_str(),
        at_ms = d.at_ms,
        cause = d.cause.as_str(),
        "answering-machine detection"
    );
    amd.call_back(attempt_id, d);
    detection::then(d, &amd.spec)
}

/// Plays `prompt` (an abandoned call's, a voicemail message), then hangs up
/// (bounded by the prompt's length and a second).
async fn play_then_hang_up(mut media: CallMedia, prompt: bytes::Bytes, ctl: Arc<SessionControl>) {
    let length = Duration::from_millis(prompt.len() as u64 / 8) + Duration::from_secs(1);
    media.play(prompt);
    media.mark("herald.abandon".into());
    let _ = tokio::time::timeout(length, async {
        while let Some(ev) = media.next_event().await {
            if matches!(ev, MediaEvent::MarkPlayed(_) | MediaEvent::MarkCleared(_)) {
                break;
            }
        }
    })
    .await;
    ctl.hang_up();
}

/// A call that could not be placed at all.
fn failed_to_start(e: &OriginateError, now: DateTime<Utc>) -> CallEnded {
    ended_without_a_call(
        crate::sip::classify::failed_to_start(e),
        e.to_string(),
        None,
        now,
    )
}

/// The end of an attempt that no SIP exchange finished: it never started, or
/// herald died during it.
pub(crate) fn ended_without_a_call(
    outcome: Outcome,
    reason: String,
    answered_at: Option<DateTime<Utc>>,
    ended_at: DateTime<Utc>,
) -> CallEnded {
    CallEnded {
        outcome,
        sip_code: None,
        q850_cause: None,
        retry_after: None,
        hangup_by: HangupBy::Error,
        reason,
        invite_sent_at: None,
        ringing_at: None,
        answered_at,
        ended_at,
        media_stats: None,
    }
}

/// Runs `op` until it succeeds: an attempt's outcome must not be lost to a
/// passing database error. Backs off from 50 ms to 5 s between tries.
pub(crate) async fn until_written<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::error!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tel_goes_through_the_trunk_and_sip_to_its_host() {
        assert_eq!(
            dial_destination(DestinationKind::Tel, "+15557654321", "main"),
            DialDestination::Tel {
                number: "+15557654321".into(),
                trunk: "main".into()
            }
        );
        assert_eq!(
            dial_destination(DestinationKind::Sip, "sip:bob@127.0.0.1:5090", "main"),
            DialDestination::Sip {
                uri: "sip:bob@127.0.0.1:5090".into()
            }
        );
    }
}
