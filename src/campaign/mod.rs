//! Campaigns and one-off calls: pure pacing/window/retry/status decisions
//! (`rules`) and the drivers that apply them: the supervisor (`scheduler`),
//! a campaign's task (`task`, `settings`), one attempt for campaigns and
//! one-off calls alike (`attempt`), the one-off call loop (`oneoff`), the
//! recorder (`recorder`), and recovery of cut attempts (`recovery`).

mod amd;
pub mod apply;
pub(crate) mod attempt;
pub mod deps;
pub(crate) mod gate;
pub mod oneoff;
pub mod recorder;
pub mod recovery;
pub mod rules;
pub mod scheduler;
pub(crate) mod settings;
pub(crate) mod task;
pub mod trunks;
