//! One simulated callee: carries out a [`CallPlan`] on an incoming call.
//!
//! Owns: ringing, rejecting or answering as planned, playing the
//! population's audio, pressing the planned keys at their time, and hanging
//! up after the talk time (or waiting for the caller). Must not: choose the
//! plan (that is `population`) or name SIP stack types (it speaks
//! `crate::sip::answer`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::population::CallPlan;
use crate::sip::answer::{AnswerMedia, CallEnd, IncomingCall, Unanswered};

/// A ringing call nobody cancels gets 480 after this long.
const RING_LIMIT: Duration = Duration::from_secs(180);
/// An answered call nobody hangs up is ended by the callee after this long.
const CALL_LIMIT: Duration = Duration::from_secs(3600);

/// What the simulator has done since it started.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub answered: AtomicU64,
    pub busy: AtomicU64,
    pub invalid_number: AtomicU64,
    pub temporary_failure: AtomicU64,
    /// Calls that rang until the caller's CANCEL (planned no-answers, and
    /// planned answers cancelled before they were answered).
    pub cancelled: AtomicU64,
    pub callee_hangups: AtomicU64,
    pub caller_hangups: AtomicU64,
    /// Key-press sequences sent.
    pub dtmf_sent: AtomicU64,
    /// Calls that ended some other way (no SDP offer, no ACK, shutdown).
    pub other: AtomicU64,
    pub live: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounts {
    pub calls: u64,
    pub answered: u64,
    pub busy: u64,
    pub invalid_number: u64,
    pub temporary_failure: u64,
    pub cancelled: u64,
    pub callee_hangups: u64,
    pub caller_hangups: u64,
    pub dtmf_sent: u64,
    pub other: u64,
    pub live: u64,
}

impl Counters {
    pub fn snapshot(&self) -> SimCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimCounts {
            calls: l(&self.calls),
            answered: l(&self.answered),
            busy: l(&self.busy),
            invalid_number: l(&self.invalid_number),
            temporary_failure: l(&self.temporary_failure),
            cancelled: l(&self.cancelled),
            callee_hangups: l(&self.callee_hangups),
            caller_hangups: l(&self.caller_hangups),
            dtmf_sent: l(&self.dtmf_sent),
            other: l(&self.other),
            live: l(&self.live),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Everything a call needs besides its plan.
pub(super) struct CallKit<'a> {
    pub media: AnswerMedia,
    pub audio: Option<Bytes>,
    pub counters: &'a Counters,
    pub stop: &'a CancellationToken,
}

/// Carries out `plan` on `call`; returns when the call is over.
pub(super) async fn run(call: IncomingCall, plan: CallPlan, kit: CallKit<'_>) {
    let c = kit.counters;
    bump(&c.live);
    match plan {
        CallPlan::Busy { ring } => {
            rejected(c, &c.busy, call.reject(ring, 486, Some(17), None).await)
        }
        CallPlan::InvalidNumber { ring } => rejected(
            c,
            &c.invalid_number,
            call.reject(ring, 404, Some(1), None).await,
        ),
        CallPlan::TemporaryFailure { ring, retry_after } => rejected(
            c,
            &c.temporary_failure,
            call.reject(ring, 503, Some(41), retry_after).await,
        ),
        CallPlan::NoAnswer => {
            let end = tokio::select! {
                end = call.ring_until_cancel(RING_LIMIT) => end,
                _ = kit.stop.cancelled() => Unanswered::Gone,
            };
            rejected(c, &c.cancelled, Err(end));
        }
        CallPlan::Answer {
            ring,
            hangup_after,
            dtmf,
        } => answer(call, ring, hangup_after, dtmf, &kit).await,
    }
    c.live.fetch_sub(1, Ordering::Relaxed);
}

fn rejected(c: &Counters, counter: &AtomicU64, r: Result<(), Unanswered>) {
    match r {
        Ok(()) => bump(counter),
        Err(Unanswered::Cancelled) => bump(&c.cancelled),
        Err(_) => bump(&c.other),
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn answer(
    call: IncomingCall,
    ring: Duration,
    hangup_after: Option<Duration>,
    dtmf: Option<(String, Duration)>,
    kit: &CallKit<'_>,
) {
    let c = kit.counters;
    let answered = tokio::select! {
        r = call.answer(ring, kit.media) => r,
        _ = kit.stop.cancelled() => Err(Unanswered::Gone),
    };
    let mut answered = match answered {
        Ok(a) => a,
        Err(e) => return rejected(c, &c.other, Err(e)),
    };
    bump(&c.answered);
    let media = answered.media();
    if let (Some(m), Some(audio)) = (&media, &kit.audio) {
        m.play(audio.clone());
    }
    let (digits, press_at) = match dtmf {
        Some((d, at)) if media.is_some() => (d, Some(at)),
        _ => (String::new(), None),
    };
    let press = sleep_opt(press_at);
    let hang = sleep_opt(Some(hangup_after.unwrap_or(CALL_LIMIT).min(CALL_LIMIT)));
    tokio::pin!(press, hang);
    let mut pressed = press_at.is_none();
    loop {
        tokio::select! {
            end = answered.next_end() => {
                match end {
                    CallEnd::CallerHungUp => bump(&c.caller_hangups),
                    CallEnd::Cancelled => bump(&c.cancelled),
                    CallEnd::Other(_) => bump(&c.other),
                }
                return;
            }
            _ = &mut press, if !pressed => {
                pressed = true;
                if let Some(m) = &media {
                    for d in digits.chars() {
                        m.send_dtmf(d);
                    }
                    bump(&c.dtmf_sent);
                }
            }
            _ = &mut hang => {
                bump(&c.callee_hangups);
                answered.hangup().await;
                return;
            }
            _ = kit.stop.cancelled() => {
                bump(&c.other);
                answered.hangup().await;
                return;
            }
        }
    }
}
