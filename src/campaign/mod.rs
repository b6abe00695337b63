//! Campaigns: pure pacing/window/retry decisions (`rules`) and the scheduler
//! that applies them (the only part that awaits).

pub mod rules;
