//! Pure campaign rules: retry decisions, calling windows, daily schedules,
//! time-zone inference, pacing. Plain functions of their inputs and `now`:
//! no clock reads, no I/O, no spawns, no randomness (jitter arrives as a
//! number in `[0, 1)`). The scheduler applies them; it owns every side effect.
//!
//! - [`retry`]: finish, retry (when, on which destination) or fail after an attempt.
//! - [`window`]: calling windows across DST; the local-time resolution rule.
//! - [`schedule`]: daily runs (`schedule.daily_start`, days, zone).
//! - [`timezone`]: a target's zone: its own, inferred from the number, the campaign's.
//! - [`pacing`]: how many calls a campaign and a trunk let start now (emergency first).
//! - [`due`]: the check right before an INVITE (DNC, expiry, `not_before`, window).
//! - [`status`]: a campaign's status step each tick (daily waits, window waits, idle).

pub mod due;
pub mod pacing;
pub mod retry;
pub mod schedule;
pub mod status;
pub mod timezone;
pub mod window;

pub use due::{check_before_dial, claim_decision, Claim, DialCheck, DialGate, DueTarget};
pub use pacing::{campaign_room, trunk_room, Priority};
pub use retry::{decide, AttemptResult, Decision, RetryPolicy};
pub use schedule::{daily_gate, schedule_timezone, DailyGate, DailySchedule};
pub use timezone::{infer_timezone, resolve_timezone};
pub use window::{resolve_local, Window};
