//! Campaigns: pure pacing/window/retry decisions (`rules`) and the scheduler
//! that applies them (the only part that awaits).

pub mod apply;
pub mod dialer;
pub mod oneoff;
pub mod rules;
pub mod scheduler;
pub mod trunks;
