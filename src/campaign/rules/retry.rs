//! What happens to a target after an attempt: finish it, retry it (when and
//! on which destination), or fail it. Applies DESIGN.md's outcome table, the
//! outplan's retry delays with backoff and jitter, per-destination try
//! budgets and the target's expiry.
//!
//! Must not read the clock, draw random numbers or touch the store: `now`
//! and `jitter_unit` are inputs, and the caller records the decision.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::window::Window;
use crate::domain::specs::Outplan;
use crate::domain::{Destination, Outcome};

/// The longest any retry is put off.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);

/// At most this many tries on a destination that rejected the call.
pub const REJECTED_TRY_CAP: u32 = 2;

/// The outplan's retry rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub busy: Duration,
    pub no_answer: Duration,
    pub failed: Duration,
    /// Each further try on the same destination multiplies the delay by this (≥ 1).
    pub backoff: f64,
    /// Up to this much is added to every delay, scaled by `jitter_unit`.
    pub jitter: Duration,
    /// Tries per destination unless the target or the destination says otherwise.
    pub try_count_max: u32,
}

impl Default for RetryPolicy {
    /// The policy of an outplan with every field left out.
    fn default() -> Self {
        RetryPolicy::from_outplan(&Outplan::default())
    }
}

impl RetryPolicy {
    /// The retry rules of a parsed outplan.
    pub fn from_outplan(plan: &Outplan) -> RetryPolicy {
        let secs = |s: u32| Duration::from_secs(u64::from(s)).min(MAX_DELAY);
        let r = &plan.retry;
        RetryPolicy {
            busy: secs(r.busy_s),
            no_answer: secs(r.no_answer_s),
            failed: secs(r.failed_s),
            backoff: if r.backoff.is_finite() {
                r.backoff.max(1.0)
            } else {
                1.0
            },
            jitter: secs(r.jitter_s),
            try_count_max: plan.try_count_max.max(1),
        }
    }

    /// `base × backoff^(tries − 1) + jitter × jitter_unit`, at most [`MAX_DELAY`].
    /// `tries` counts the tries already made on the destination (≥ 1).
    pub fn delay(&self, base: Duration, tries: u32, jitter_unit: f64) -> Duration {
        let cap = MAX_DELAY.as_secs_f64();
        let exponent = i32::try_from(tries.saturating_sub(1)).unwrap_or(i32::MAX);
        let backoff = if self.backoff.is_finite() {
            self.backoff.max(1.0)
        } else {
            1.0
        };
        let unit = if jitter_unit.is_finite() {
            jitter_unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let secs = base.as_secs_f64() * backoff.powi(exponent) + self.jitter.as_secs_f64() * unit;
        if secs.is_finite() {
            Duration::from_secs_f64(secs.clamp(0.0, cap))
        } else {
            MAX_DELAY
        }
    }
}

/// What the scheduler does with the target next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Done: `completed`, `opted_out`, or `disposition` (the agent's own
    /// result string, stored on the attempt).
    Finish { reason: &'static str },
    /// Dial again at `at` (before the calling window is applied). `reason` is
    /// the outcome retried (`busy`, `no_answer`, `rejected`,
    /// `temporary_failure`, `trunk_error`, `interrupted`,
    /// `agent_unavailable`, `agent_retry`) or `next_destination` when the
    /// target moves on to another destination.
    Retry {
        at: DateTime<Utc>,
        destination_index: usize,
        reason: &'static str,
    },
    /// Never dialed again: `tries_exhausted`, `invalid_destination`,
    /// `expired`, `no_destination` (the index names none).
    Fail { reason: &'static str },
}

impl Decision {
    /// Moves a retry into the calling window (in the target's zone `tz`):
    /// a retry due outside it waits for the next opening. A retry that then
    /// falls at or after `expires_at` fails as `expired`. Emergency campaigns
    /// pass `None` for the window.
    pub fn within_window(
        self,
        window: Option<&Window>,
        tz: Tz,
        expires_at: Option<DateTime<Utc>>,
    ) -> Decision {
        match self {
            Decision::Retry {
                at,
                destination_index,
                reason,
            } => {
                let at = window.map_or(at, |w| w.dial_time(tz, at));
                if expires_at.is_some_and(|e| at >= e) {
                    Decision::Fail { reason: "expired" }
                } else {
                    Decision::Retry {
                        at,
                        destination_index,
                        reason,
                    }
                }
            }
            other => other,
        }
    }
}

/// One attempt's result as the scheduler saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptResult<'a> {
    pub outcome: Outcome,
    /// The agent session's result on an answered call.
    pub agent_result: Option<&'a str>,
    /// The callee's or trunk's Retry-After, if any.
    pub retry_after: Option<Duration>,
}

fn add(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d.min(MAX_DELAY))
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Decides what follows an attempt on `destinations[destination_index]`.
/// `destinations` already carry this attempt's try (`try_count` was
/// incremented at dial time). Budgets: `dest.budget(target_try_count_max
/// .unwrap_or(policy.try_count_max))`; a destination that rejected the call
/// gets at most [`REJECTED_TRY_CAP`] tries. When the destination's budget is
/// spent the next later destination with budget left is dialed at `now`;
/// none left → `tries_exhausted`. A retry at or after `expires_at` →
/// `expired`.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    destinations: &[Destination],
    destination_index: usize,
    target_try_count_max: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
    attempt: &AttemptResult,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter_unit: f64,
) -> Decision {
    let Some(dest) = destinations.get(destination_index) else {
        return Decision::Fail {
            reason: "no_destination",
        };
    };
    let default_budget = target_try_count_max.unwrap_or(policy.try_count_max);
    let next_destination = |reason_if_none: &'static str| {
        destinations
            .iter()
            .enumerate()
            .skip(destination_index + 1)
            .find(|(_, d)| d.try_count < d.budget(default_budget))
            .map_or(
                Decision::Fail {
                    reason: reason_if_none,
                },
                |(i, _)| Decision::Retry {
                    at: now,
                    destination_index: i,
                    reason: "next_destination",
                },
            )
    };
    let (base, reason, cap) = match attempt.outcome {
        Outcome::Answered => match attempt.agent_result {
            Some("retry") => (policy.no_answer, "agent_retry", u32::MAX),
            Some("opted_out") => {
                return Decision::Finish {
                    reason: "opted_out",
                }
            }
            None | Some("completed") => {
                return Decision::Finish {
                    reason: "completed",
                }
            }
            Some(_) => {
                return Decision::Finish {
                    reason: "disposition",
                }
            }
        },
        Outcome::InvalidDestination => {
            return expire(next_destination("invalid_destination"), expires_at)
        }
        Outcome::Busy => (policy.busy, "busy", u32::MAX),
        Outcome::NoAnswer => (policy.no_answer, "no_answer", u32::MAX),
        Outcome::Rejected => (policy.failed, "rejected", REJECTED_TRY_CAP),
        Outcome::TemporaryFailure => (policy.failed, "temporary_failure", u32::MAX),
        Outcome::TrunkError => (policy.failed, "trunk_error", u32::MAX),
        Outcome::Interrupted => (policy.failed, "interrupted", u32::MAX),
        Outcome::AgentUnavailable => (policy.failed, "agent_unavailable", u32::MAX),
        Outcome::Abandoned => (policy.failed, "abandoned", u32::MAX),
    };
    let budget = dest.budget(default_budget).min(cap);
    if dest.try_count >= budget {
        return expire(next_destination("tries_exhausted"), expires_at);
    }
    let mut at = add(now, policy.delay(base, dest.try_count, jitter_unit));
    if let Some(retry_after) = attempt.retry_after {
        at = at.max(add(now, retry_after));
    }
    expire(
        Decision::Retry {
            at,
            destination_index,
            reason,
        },
        expires_at,
    )
}

fn expire(d: Decision, expires_at: Option<DateTime<Utc>>) -> Decision {
    d.within_window(None, Tz::UTC, expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DestinationKind;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    fn tel(tries: u32, max: Option<u32>) -> Destination {
        Destination {
            kind: DestinationKind::Tel,
            target: "+12125550100".into(),
            try_count_max: max,
            try_count: tries,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            busy: Duration::from_secs(300),
            no_answer: Duration::from_secs(3600),
            failed: Duration::from_secs(600),
            backoff: 2.0,
            jitter: Duration::from_secs(30),
            try_count_max: 3,
        }
    }

    fn outcome(o: Outcome) -> AttemptResult<'static> {
        AttemptResult {
            outcome: o,
            agent_result: None,
            retry_after: None,
        }
    }

    fn one(dests: &[Destination], a: &AttemptResult) -> Decision {
        decide(dests, 0, None, None, a, &policy(), now(), 0.0)
    }

    fn retry_at(d: Decision) -> DateTime<Utc> {
        match d {
            Decision::Retry { at, .. } => at,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn outplan_spec_is_read_with_its_defaults() {
        let plan = Outplan::parse(&json!({
            "name": "x", "try_count_max": 5,
            "retry": {"busy_s": 60, "no_answer_s": 120, "failed_s": 30, "backoff": 1.5, "jitter_s": 10}
        }))
        .unwrap();
        let p = RetryPolicy::from_outplan(&plan);
        assert_eq!(p.busy, Duration::from_secs(60));
        assert_eq!(p.no_answer, Duration::from_secs(120));
        assert_eq!(p.failed, Duration::from_secs(30));
        assert_eq!(p.backoff, 1.5);
        assert_eq!(p.jitter, Duration::from_secs(10));
        assert_eq!(p.try_count_max, 5);
        let parsed = Outplan::parse(&json!({"name": "x"})).unwrap();
        assert_eq!(RetryPolicy::from_outplan(&parsed), RetryPolicy::default());
        assert_eq!(RetryPolicy::default().busy, Duration::from_secs(300));
        assert_eq!(RetryPolicy::default().try_count_max, 3);
    }

    #[test]
    fn busy_target_is_retried_after_the_busy_delay() {
        let d = one(&[tel(1, None)], &outcome(Outcome::Busy));
        assert_eq!(
            d,
            Decision::Retry {
                at: now() + secs(300),
                destination_index: 0,
                reason: "busy"
            }
        );
    }

    #[test]
    fn no_answer_target_is_retried_after_the_no_answer_delay() {
        let d = one(&[tel(1, None)], &outcome(Outcome::NoAnswer));
        assert_eq!(retry_at(d), now() + secs(3600));
    }

    #[test]
    fn delay_backs_off_with_the_tries_on_the_destination() {
        assert_eq!(
            retry_at(one(&[tel(2, Some(5))], &outcome(Outcome::Busy))),
            now() + secs(600)
        );
        assert_eq!(
            retry_at(one(&[tel(3, Some(5))], &outcome(Outcome::Busy))),
            now() + secs(1200)
        );
    }

    #[test]
    fn jitter_adds_up_to_the_jitter_scaled_by_the_unit() {
        let d = decide(
            &[tel(1, None)],
            0,
            None,
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.5,
        );
        assert_eq!(retry_at(d), now() + secs(315));
        let p = policy();
        assert_eq!(
            p.delay(p.busy, 1, 0.999_999),
            Duration::from_secs_f64(300.0 + 30.0 * 0.999_999)
        );
        assert_eq!(
            p.delay(p.busy, 1, f64::NAN),
            Duration::from_secs(300),
            "NaN jitter counts as 0"
        );
        assert_eq!(
            p.delay(p.busy, 1, 7.0),
            Duration::from_secs(330),
            "unit clamped to 1"
        );
    }

    #[test]
    fn delay_is_capped_at_thirty_days() {
        let p = RetryPolicy {
            backoff: 10.0,
            ..policy()
        };
        assert_eq!(p.delay(p.no_answer, 40, 1.0), MAX_DELAY);
        let d = decide(
            &[tel(40, Some(100))],
            0,
            None,
            None,
            &outcome(Outcome::NoAnswer),
            &p,
            now(),
            0.0,
        );
        assert_eq!(retry_at(d), now() + secs(30 * 86_400));
    }

    #[test]
    fn answered_call_finishes_as_completed() {
        assert_eq!(
            one(&[tel(1, None)], &outcome(Outcome::Answered)),
            Decision::Finish {
                reason: "completed"
            }
        );
        let a = AttemptResult {
            agent_result: Some("completed"),
            ..outcome(Outcome::Answered)
        };
        assert_eq!(
            one(&[tel(1, None)], &a),
            Decision::Finish {
                reason: "completed"
            }
        );
    }

    #[test]
    fn opted_out_and_dispositions_finish_the_target() {
        let a = AttemptResult {
            agent_result: Some("opted_out"),
            ..outcome(Outcome::Answered)
        };
        assert_eq!(
            one(&[tel(1, None)], &a),
            Decision::Finish {
                reason: "opted_out"
            }
        );
        let a = AttemptResult {
            agent_result: Some("confirmed"),
            ..outcome(Outcome::Answered)
        };
        assert_eq!(
            one(&[tel(1, None)], &a),
            Decision::Finish {
                reason: "disposition"
            }
        );
    }

    #[test]
    fn agent_asking_for_a_retry_is_retried_after_the_no_answer_delay() {
        let a = AttemptResult {
            agent_result: Some("retry"),
            ..outcome(Outcome::Answered)
        };
        assert_eq!(
            one(&[tel(1, None)], &a),
            Decision::Retry {
                at: now() + secs(3600),
                destination_index: 0,
                reason: "agent_retry"
            }
        );
        // ... within the budget.
        assert_eq!(
            one(&[tel(3, None)], &a),
            Decision::Fail {
                reason: "tries_exhausted"
            }
        );
    }

    #[test]
    fn spent_budget_fails_the_target_with_tries_exhausted() {
        let d = one(&[tel(3, None)], &outcome(Outcome::Busy));
        assert_eq!(
            d,
            Decision::Fail {
                reason: "tries_exhausted"
            }
        );
        // The target's own budget overrides the outplan's.
        let d = decide(
            &[tel(3, None)],
            0,
            Some(4),
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.0,
        );
        assert_eq!(retry_at(d), now() + secs(1200));
        // The destination's own budget overrides both.
        let d = decide(
            &[tel(1, Some(1))],
            0,
            Some(4),
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Fail {
                reason: "tries_exhausted"
            }
        );
    }

    #[test]
    fn spent_destination_escalates_to_the_next_one_at_once() {
        let dests = [tel(3, None), tel(0, None)];
        assert_eq!(
            one(&dests, &outcome(Outcome::NoAnswer)),
            Decision::Retry {
                at: now(),
                destination_index: 1,
                reason: "next_destination"
            }
        );
    }

    #[test]
    fn escalation_skips_destinations_without_budget_and_never_goes_back() {
        let dests = [tel(0, None), tel(3, None), tel(2, Some(2)), tel(0, None)];
        let d = decide(
            &dests[..],
            1,
            None,
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Retry {
                at: now(),
                destination_index: 3,
                reason: "next_destination"
            }
        );
        let d = decide(
            &dests[..3],
            1,
            None,
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Fail {
                reason: "tries_exhausted"
            },
            "index 0 is behind us"
        );
    }

    #[test]
    fn invalid_destination_is_never_retried() {
        let d = one(&[tel(1, None)], &outcome(Outcome::InvalidDestination));
        assert_eq!(
            d,
            Decision::Fail {
                reason: "invalid_destination"
            }
        );
        let d = one(
            &[tel(1, None), tel(0, None)],
            &outcome(Outcome::InvalidDestination),
        );
        assert_eq!(
            d,
            Decision::Retry {
                at: now(),
                destination_index: 1,
                reason: "next_destination"
            }
        );
    }

    #[test]
    fn rejected_destination_gets_at_most_two_tries() {
        let d = one(&[tel(1, Some(5))], &outcome(Outcome::Rejected));
        assert_eq!(
            d,
            Decision::Retry {
                at: now() + secs(600),
                destination_index: 0,
                reason: "rejected"
            }
        );
        let d = one(&[tel(2, Some(5))], &outcome(Outcome::Rejected));
        assert_eq!(
            d,
            Decision::Fail {
                reason: "tries_exhausted"
            }
        );
        let d = one(
            &[tel(2, Some(5)), tel(0, Some(5))],
            &outcome(Outcome::Rejected),
        );
        assert_eq!(
            d,
            Decision::Retry {
                at: now(),
                destination_index: 1,
                reason: "next_destination"
            }
        );
    }

    #[test]
    fn temporary_failure_honours_the_later_of_delay_and_retry_after() {
        let mut a = outcome(Outcome::TemporaryFailure);
        assert_eq!(retry_at(one(&[tel(1, None)], &a)), now() + secs(600));
        a.retry_after = Some(Duration::from_secs(7200));
        assert_eq!(retry_at(one(&[tel(1, None)], &a)), now() + secs(7200));
        a.retry_after = Some(Duration::from_secs(60));
        assert_eq!(retry_at(one(&[tel(1, None)], &a)), now() + secs(600));
        a.retry_after = Some(Duration::from_secs(u64::MAX));
        assert_eq!(
            retry_at(one(&[tel(1, None)], &a)),
            now() + secs(30 * 86_400)
        );
    }

    #[test]
    fn error_outcomes_use_the_failed_delay() {
        for (o, reason) in [
            (Outcome::TrunkError, "trunk_error"),
            (Outcome::Interrupted, "interrupted"),
            (Outcome::AgentUnavailable, "agent_unavailable"),
            (Outcome::Abandoned, "abandoned"),
        ] {
            assert_eq!(
                one(&[tel(1, None)], &outcome(o)),
                Decision::Retry {
                    at: now() + secs(600),
                    destination_index: 0,
                    reason
                },
                "{o}"
            );
        }
    }

    #[test]
    fn retry_at_or_after_expiry_fails_as_expired() {
        let a = outcome(Outcome::Busy);
        let dests = [tel(1, None)];
        let exactly = Some(now() + secs(300));
        let d = decide(&dests, 0, None, exactly, &a, &policy(), now(), 0.0);
        assert_eq!(d, Decision::Fail { reason: "expired" });
        let later = Some(now() + secs(301));
        let d = decide(&dests, 0, None, later, &a, &policy(), now(), 0.0);
        assert_eq!(retry_at(d), now() + secs(300));
    }

    #[test]
    fn an_index_past_the_destinations_fails() {
        let d = decide(
            &[tel(1, None)],
            3,
            None,
            None,
            &outcome(Outcome::Busy),
            &policy(),
            now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Fail {
                reason: "no_destination"
            }
        );
    }

    #[test]
    fn retry_outside_the_window_waits_for_the_opening_or_expires() {
        let w = Window {
            days: [true, true, true, true, true, false, false],
            start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: chrono::NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
        };
        let tz = chrono_tz::America::New_York;
        // Friday 16:58 EST, busy → 17:03, after the close → Monday 09:00 EST.
        let friday = now() + secs(6 * 3600 + 58 * 60);
        let d = decide(
            &[tel(1, None)],
            0,
            None,
            None,
            &outcome(Outcome::Busy),
            &policy(),
            friday,
            0.0,
        );
        let monday = DateTime::parse_from_rfc3339("2026-11-23T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            d.within_window(Some(&w), tz, None),
            Decision::Retry {
                at: monday,
                destination_index: 0,
                reason: "busy"
            }
        );
        assert_eq!(d.within_window(None, tz, None), d, "no window: unchanged");
        assert_eq!(
            d.within_window(Some(&w), tz, Some(monday)),
            Decision::Fail { reason: "expired" }
        );
        let fin = Decision::Finish {
            reason: "completed",
        };
        assert_eq!(fin.within_window(Some(&w), tz, Some(now())), fin);
    }
}
