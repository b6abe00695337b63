//! A campaign's status as the scheduler sees it each tick: whether a daily
//! schedule holds it back or lets it go, and, after a tick's claim, whether
//! it now waits (only deferred targets), runs again (it dialed), or has gone
//! idle (nothing dialed, nothing in flight: the caller then asks the store
//! whether the list is done). Pure: the caller applies the move.

use chrono::{DateTime, Utc};

use super::schedule::DailyGate;
use crate::domain::{CampaignStatus, StatusCause, StatusMove};

/// What a daily schedule means for this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DailyStep {
    /// Dial nothing this tick; `wait` says whether to move to `waiting`
    /// (for the daily start at `until`).
    Hold { wait: Option<DateTime<Utc>> },
    /// Dial; `wake` says whether to move from a daily wait back to `running`.
    Go { wake: bool },
}

/// A daily-scheduled campaign in `status` (with `cause`), `in_flight` calls
/// live, under `gate`. A running campaign waits only once its calls ended;
/// a campaign waiting for its daily start wakes when the run opens (a wait
/// for a calling window is left to the claim).
pub fn daily_step(
    status: CampaignStatus,
    cause: Option<StatusCause>,
    in_flight: u32,
    gate: &DailyGate,
) -> DailyStep {
    match gate {
        DailyGate::Waiting { until } => DailyStep::Hold {
            wait: (StatusMove::Wait.allowed(status) && in_flight == 0).then_some(*until),
        },
        DailyGate::Open { .. } => DailyStep::Go {
            wake: StatusMove::Wake.allowed(status) && cause == Some(StatusCause::DailyStart),
        },
    }
}

/// What a tick's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickFacts {
    pub status: CampaignStatus,
    /// Targets were claimed and dialed.
    pub dialed: bool,
    /// Nothing was claimed, and some due targets were deferred (outside
    /// their window).
    pub deferred_only: bool,
    /// The campaign's calls still live.
    pub in_flight: u32,
}

/// The status step after a tick's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTick {
    /// Nothing to change.
    Stay,
    /// Only deferred targets and no live calls: wait for the window.
    Wait,
    /// Dialing again after a wait.
    Wake,
    /// Running with nothing dialed and nothing live: the list may be done
    /// (or today's scheduled run drained).
    Idle,
}

pub fn after_tick(f: &TickFacts) -> AfterTick {
    let running = f.status == CampaignStatus::Running;
    if f.deferred_only && f.in_flight == 0 && running {
        AfterTick::Wait
    } else if f.dialed && StatusMove::Wake.allowed(f.status) {
        AfterTick::Wake
    } else if !f.dialed && f.in_flight == 0 && running {
        AfterTick::Idle
    } else {
        AfterTick::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CampaignStatus::{Paused, Running, Waiting};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn after_a_tick_the_status_follows_the_claim() {
        let facts = |status, dialed, deferred_only, in_flight| TickFacts {
            status,
            dialed,
            deferred_only,
            in_flight,
        };
        let table = [
            // status, dialed, deferred only, in flight → step
            (facts(Running, false, true, 0), AfterTick::Wait),
            (facts(Running, false, true, 3), AfterTick::Stay),
            (facts(Waiting, false, true, 0), AfterTick::Stay),
            (facts(Waiting, true, false, 0), AfterTick::Wake),
            (facts(Waiting, true, false, 5), AfterTick::Wake),
            (facts(Running, true, false, 0), AfterTick::Stay),
            (facts(Running, false, false, 0), AfterTick::Idle),
            (facts(Running, false, false, 1), AfterTick::Stay),
            (facts(Waiting, false, false, 0), AfterTick::Stay),
            (facts(Paused, false, false, 0), AfterTick::Stay),
        ];
        for (f, want) in table {
            assert_eq!(after_tick(&f), want, "{f:?}");
        }
    }

    #[test]
    fn a_daily_schedule_holds_before_its_start_and_wakes_at_it() {
        let until = at("2026-03-09T13:00:00Z");
        let waiting = DailyGate::Waiting { until };
        let open = DailyGate::Open {
            run_started: at("2026-03-08T13:00:00Z"),
        };
        let daily = Some(StatusCause::DailyStart);
        let table = [
            // status, cause, in flight, gate → step
            (
                Running,
                None,
                0,
                waiting,
                DailyStep::Hold { wait: Some(until) },
            ),
            (Running, None, 2, waiting, DailyStep::Hold { wait: None }),
            (Waiting, daily, 0, waiting, DailyStep::Hold { wait: None }),
            (Waiting, daily, 0, open, DailyStep::Go { wake: true }),
            (Waiting, None, 0, open, DailyStep::Go { wake: false }),
            (Running, None, 0, open, DailyStep::Go { wake: false }),
            (Running, daily, 0, open, DailyStep::Go { wake: false }),
        ];
        for (status, cause, in_flight, gate, want) in table {
            assert_eq!(
                daily_step(status, cause, in_flight, &gate),
                want,
                "{status} {cause:?} {in_flight} {gate:?}"
            );
        }
    }
}
