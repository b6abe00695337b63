//! [`InstantTelephony`]: a [`Telephony`] that answers every call at once with
//! an outcome chosen from the number, below the call-control interface (tests
//! and benchmarks of the scheduler and store alone). Must not: open sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::domain::Outcome;
use crate::sip::{
    CallEnded, CallEvent, HangupBy, OriginateError, OriginateRequest, PlacedCall, Telephony,
};

/// Answers every call at once. The outcome is a pure function of the
/// number's last two digits, so a list has a known mix: 00–69 answered,
/// 70–79 busy, 80–89 no answer, 90–94 temporary failure, 95–99 invalid.
#[derive(Default, Clone)]
pub struct InstantTelephony {
    live: Arc<AtomicUsize>,
}

impl InstantTelephony {
    pub fn outcome_for(number: &str) -> (Outcome, Option<u16>) {
        let tail: u32 = number
            .chars()
            .rev()
            .take(2)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        match tail {
            0..=69 => (Outcome::Answered, Some(200)),
            70..=79 => (Outcome::Busy, Some(486)),
            80..=89 => (Outcome::NoAnswer, Some(487)),
            90..=94 => (Outcome::TemporaryFailure, Some(503)),
            _ => (Outcome::InvalidDestination, Some(404)),
        }
    }
}

struct InstantCall {
    id: String,
    ended: Option<CallEnded>,
    live: Arc<AtomicUsize>,
}

#[async_trait]
impl PlacedCall for InstantCall {
    fn call_id(&self) -> &str {
        &self.id
    }
    async fn next_event(&mut self) -> Option<CallEvent> {
        let ended = self.ended.take()?;
        self.live.fetch_sub(1, Ordering::Relaxed);
        Some(CallEvent::Ended(ended))
    }
    fn hangup(&self) {}
}

impl Drop for InstantCall {
    fn drop(&mut self) {
        if self.ended.is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl Telephony for InstantTelephony {
    async fn originate(
        &self,
        req: OriginateRequest,
    ) -> Result<Box<dyn PlacedCall>, OriginateError> {
        let number = match &req.destination {
            crate::sip::DialDestination::Tel { number, .. } => number.clone(),
            crate::sip::DialDestination::Sip { uri } => uri.clone(),
        };
        let (outcome, sip_code) = Self::outcome_for(&number);
        let now = Utc::now();
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(InstantCall {
            id: format!("instant-{}", req.attempt_id),
            live: self.live.clone(),
            ended: Some(CallEnded {
                outcome,
                sip_code,
                q850_cause: None,
                retry_after: None,
                hangup_by: HangupBy::Callee,
                reason: format!("instant {outcome}"),
                invite_sent_at: Some(now),
                ringing_at: None,
                answered_at: (outcome == Outcome::Answered).then_some(now),
                ended_at: now,
                media_stats: None,
            }),
        }))
    }
    fn live_calls(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_outcomes_follow_the_last_two_digits() {
        assert_eq!(
            InstantTelephony::outcome_for("+15550000012").0,
            Outcome::Answered
        );
        assert_eq!(
            InstantTelephony::outcome_for("+15550000075").0,
            Outcome::Busy
        );
        assert_eq!(
            InstantTelephony::outcome_for("+15550000088").0,
            Outcome::NoAnswer
        );
        assert_eq!(
            InstantTelephony::outcome_for("+15550000091").0,
            Outcome::TemporaryFailure
        );
        assert_eq!(
            InstantTelephony::outcome_for("+15550000099").0,
            Outcome::InvalidDestination
        );
    }
}
