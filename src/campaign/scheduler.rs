//! The scheduler's supervisor: the one place dialing starts and stops.
//!
//! [`Scheduler::start`] closes what a crash left open (`recovery`), then
//! starts the liveness task, the recorder, the one-off call loop (`oneoff`)
//! and the supervisor, which polls the campaigns table every tick and keeps
//! one task (`task`) per active campaign (running, waiting, paused,
//! stopping); status changes made through the API (or by another node)
//! therefore take effect within a tick. Every task is owned by a
//! `TaskTracker`.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use super::deps::{SchedulerDeps, TICK};
use super::recorder::{answer_loop, record_loop, AnswerJob, Recorders, RECORD_BATCH};
use super::recovery::{liveness, recover_at_start};
use super::task::run_campaign;
use crate::domain::CampaignStatus;
use crate::store::recording::Completion;
use crate::store::StoreError;

/// A running scheduler; owns its tasks.
pub struct Scheduler {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Scheduler {
    /// Registers this node, closes attempts left open by a crash (on SQLite:
    /// all of them; on PostgreSQL: those of dead nodes), then starts the
    /// supervisor, the one-off call loop, the recorder and the liveness task.
    pub async fn start(deps: SchedulerDeps) -> Result<Scheduler, StoreError> {
        recover_at_start(&deps).await?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(liveness(deps.clone(), cancel.clone()));
        let (record_tx, record_rx) = mpsc::channel::<Completion>(4 * RECORD_BATCH);
        tasks.spawn(record_loop(
            deps.store.clone(),
            deps.events.clone(),
            deps.clock.clone(),
            record_rx,
        ));
        tasks.spawn(super::oneoff::one_off_loop(
            deps.clone(),
            cancel.clone(),
            tasks.clone(),
        ));
        let (answer_tx, answer_rx) = mpsc::channel::<AnswerJob>(4 * RECORD_BATCH);
        tasks.spawn(answer_loop(deps.store.clone(), answer_rx));
        let recorders = Recorders {
            record: record_tx,
            answers: answer_tx,
        };
        tasks.spawn(supervise(deps, recorders, cancel.clone(), tasks.clone()));
        Ok(Scheduler { cancel, tasks })
    }

    /// Stops dialing, lets live calls be hung up by call control, waits for every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Keeps one task per active campaign.
async fn supervise(
    deps: SchedulerDeps,
    record: Recorders,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let active_statuses = CampaignStatus::ACTIVE.map(CampaignStatus::as_str);
    // Each campaign's task, and the token that stops it. A task that ended
    // on its own (the campaign finished or stopped) is dropped here even if
    // the campaign was started again before this loop saw it end, so that
    // the new run gets a task.
    let mut running: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let active = match deps.store.campaign_ids_with_status(&active_statuses).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "listing campaigns failed");
                continue;
            }
        };
        running.retain(|id, (token, task)| {
            let keep =
                !token.is_cancelled() && !task.is_finished() && active.iter().any(|(a, _)| a == id);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (id, _) in active {
            if running.contains_key(&id) {
                continue;
            }
            let token = cancel.child_token();
            let task = tasks.spawn(run_campaign(
                deps.clone(),
                id.clone(),
                record.clone(),
                token.clone(),
                tasks.clone(),
            ));
            running.insert(id, (token, task));
        }
    }
}
