//! Turns the end of a call and the retry decision into the rows to write:
//! the target's transitions (busy and no_answer recorded as states on the
//! way), where it goes next, and the attempt's final fields. Pure.

use chrono::{DateTime, Utc};

use super::rules::retry::Decision;
use crate::domain::{Outcome, TargetState};
use crate::sip::{CallEnded, HangupBy};
use crate::store::recording::{CallFinal, Completion, Transition};

/// What the scheduler knows about one finished attempt.
pub struct Finished<'a> {
    pub call_id: &'a str,
    pub target_id: &'a str,
    pub campaign_id: Option<&'a str>,
    pub number: &'a str,
    pub destination_index: usize,
    /// Whether dialing → answered was already recorded (at answer time).
    pub answer_recorded: bool,
    pub ended: &'a CallEnded,
    pub sip_call_id: Option<&'a str>,
    pub agent_result: Option<&'a str>,
}

fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub fn hangup_by_str(h: HangupBy) -> &'static str {
    match h {
        HangupBy::Callee => "callee",
        HangupBy::Herald => "herald",
        HangupBy::Timeout => "timeout",
        HangupBy::Error => "error",
    }
}

/// The attempt row's final fields for a call that ended as `ended`.
pub fn call_final(
    ended: &CallEnded,
    status: &str,
    sip_call_id: Option<&str>,
    agent_result: Option<&str>,
) -> CallFinal {
    CallFinal {
        status: status.to_string(),
        outcome: ended.outcome.as_str().to_string(),
        sip_code: ended.sip_code.map(i32::from),
        q850_cause: ended.q850_cause.map(i32::from),
        result: agent_result.map(str::to_string),
        sip_call_id: sip_call_id.map(str::to_string),
        from_uri: None,
        to_uri: None,
        invite_sent_at: ms(ended.invite_sent_at),
        ringing_at: ms(ended.ringing_at),
        answered_at: ms(ended.answered_at),
        ended_at: ended.ended_at.timestamp_millis(),
        hangup_by: Some(hangup_by_str(ended.hangup_by).to_string()),
        reason: Some(ended.reason.clone()),
    }
}

/// The rows to write for a finished attempt under `decision`.
pub fn completion(f: &Finished<'_>, decision: &Decision) -> Completion {
    let outcome = f.ended.outcome;
    let (to, next_attempt_at, destination_index, reason) = match decision {
        Decision::Finish { reason } => (TargetState::Finished, None, f.destination_index, *reason),
        Decision::Retry {
            at,
            destination_index,
            reason,
        } => (
            TargetState::Idle,
            Some(at.timestamp_millis()),
            *destination_index,
            *reason,
        ),
        Decision::Fail { reason } => (TargetState::Failed, None, f.destination_index, *reason),
    };
    let mut transitions = Vec::new();
    let via = match outcome {
        Outcome::Answered => Some(TargetState::Answered),
        Outcome::Busy => Some(TargetState::Busy),
        Outcome::NoAnswer => Some(TargetState::NoAnswer),
        _ => None,
    };
    let expect = if f.answer_recorded {
        TargetState::Answered
    } else {
        TargetState::Dialing
    };
    let mut at = expect;
    if let Some(via) = via {
        if via != at {
            transitions.push(Transition {
                from: at,
                to: via,
                reason: Some(outcome.as_str().to_string()),
            });
            at = via;
        }
    }
    // An answered call that the agent marks done ends `finished`; an answered
    // target never goes back through `dialing`.
    let to = if to == TargetState::Finished && at != TargetState::Answered {
        TargetState::Failed
    } else {
        to
    };
    transitions.push(Transition {
        from: at,
        to,
        reason: Some(reason.to_string()),
    });
    let answered = outcome == Outcome::Answered;
    Completion {
        call_id: f.call_id.to_string(),
        target_id: f.target_id.to_string(),
        campaign_id: f.campaign_id.map(str::to_string),
        expect,
        transitions,
        next_attempt_at,
        destination_index,
        call: call_final(
            f.ended,
            if answered { "completed" } else { "failed" },
            f.sip_call_id,
            f.agent_result,
        ),
        dnc_add: matches!(
            decision,
            Decision::Finish {
                reason: "opted_out"
            }
        )
        .then(|| f.number.to_string()),
        amd: None,
    }
}

/// When a one-off call tries again after `outcome` on try `attempt`
/// (1-based), or `None` when it is done: answered, never-retried outcomes
/// (invalid destination, trunk error), or out of retries. Retry-After is
/// honoured when later than the delay.
pub fn one_off_retry_at(
    outcome: Outcome,
    attempt: u32,
    max_retries: u32,
    retry_delay: std::time::Duration,
    retry_after: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let retryable = !matches!(
        outcome,
        Outcome::Answered | Outcome::InvalidDestination | Outcome::TrunkError
    );
    if !retryable || attempt > max_retries {
        return None;
    }
    let wait = retry_after.map_or(retry_delay, |ra| ra.max(retry_delay));
    Some(now + chrono::Duration::from_std(wait).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: Outcome, code: u16) -> CallEnded {
        CallEnded {
            outcome,
            sip_code: Some(code),
            q850_cause: None,
            retry_after: None,
            hangup_by: HangupBy::Callee,
            reason: "x".into(),
            invite_sent_at: None,
            ringing_at: None,
            answered_at: None,
            ended_at: Utc::now(),
            media_stats: None,
        }
    }

    fn finished<'a>(e: &'a CallEnded, answer_recorded: bool) -> Finished<'a> {
        Finished {
            call_id: "c",
            target_id: "t",
            campaign_id: Some("k"),
            number: "+15550001111",
            destination_index: 0,
            answer_recorded,
            ended: e,
            sip_call_id: None,
            agent_result: None,
        }
    }

    fn path(c: &Completion) -> Vec<(TargetState, TargetState)> {
        c.transitions.iter().map(|t| (t.from, t.to)).collect()
    }

    #[test]
    fn busy_is_recorded_as_a_state_on_the_way_to_idle() {
        let e = ended(Outcome::Busy, 486);
        let d = Decision::Retry {
            at: Utc::now(),
            destination_index: 0,
            reason: "busy",
        };
        let c = completion(&finished(&e, false), &d);
        use TargetState::*;
        assert_eq!(path(&c), vec![(Dialing, Busy), (Busy, Idle)]);
        assert_eq!(c.expect, Dialing);
        assert!(c.next_attempt_at.is_some());
    }

    #[test]
    fn an_answer_recorded_live_is_not_recorded_twice() {
        let e = ended(Outcome::Answered, 200);
        let c = completion(
            &finished(&e, true),
            &Decision::Finish {
                reason: "completed",
            },
        );
        use TargetState::*;
        assert_eq!(path(&c), vec![(Answered, Finished)]);
        assert_eq!(c.expect, Answered);
        let c = completion(
            &finished(&e, false),
            &Decision::Finish {
                reason: "completed",
            },
        );
        assert_eq!(path(&c), vec![(Dialing, Answered), (Answered, Finished)]);
        assert_eq!(c.call.status, "completed");
    }

    #[test]
    fn errors_go_straight_back_to_idle_or_failed() {
        let e = ended(Outcome::InvalidDestination, 404);
        let c = completion(
            &finished(&e, false),
            &Decision::Fail {
                reason: "invalid_destination",
            },
        );
        assert_eq!(path(&c), vec![(TargetState::Dialing, TargetState::Failed)]);
        assert_eq!(c.call.status, "failed");
        assert_eq!(c.call.sip_code, Some(404));
    }

    #[test]
    fn one_off_calls_retry_within_their_budget() {
        use std::time::Duration as D;
        let now = Utc::now();
        assert_eq!(
            one_off_retry_at(Outcome::Busy, 1, 2, D::from_secs(60), None, now),
            Some(now + chrono::Duration::seconds(60))
        );
        assert_eq!(
            one_off_retry_at(Outcome::Busy, 3, 2, D::from_secs(60), None, now),
            None,
            "retries spent"
        );
        assert_eq!(
            one_off_retry_at(Outcome::Answered, 1, 2, D::ZERO, None, now),
            None
        );
        assert_eq!(
            one_off_retry_at(Outcome::InvalidDestination, 1, 2, D::ZERO, None, now),
            None
        );
        assert_eq!(
            one_off_retry_at(
                Outcome::TemporaryFailure,
                1,
                1,
                D::from_secs(10),
                Some(D::from_secs(120)),
                now
            ),
            Some(now + chrono::Duration::seconds(120)),
            "Retry-After wins when later"
        );
    }

    #[test]
    fn opting_out_puts_the_number_on_the_dnc_list() {
        let e = ended(Outcome::Answered, 200);
        let c = completion(
            &finished(&e, true),
            &Decision::Finish {
                reason: "opted_out",
            },
        );
        assert_eq!(c.dnc_add.as_deref(), Some("+15550001111"));
    }
}
