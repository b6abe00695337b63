//! Pure campaign rules: retry decisions, calling windows, daily schedules,
//! time-zone inference, pacing. Plain functions of their inputs and `now`:
//! no clock reads, no I/O, no spawns.
