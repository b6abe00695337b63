//! The recorder: campaign attempts' answers and completions arrive on
//! channels and are written in batches (one transaction each; several at once
//! on PostgreSQL, one on SQLite's single writer). A failed completion write is
//! retried, never dropped; a failed answer write is left to the completion.

use tokio::sync::{mpsc, oneshot};

use super::attempt::until_written;
use crate::clock::Clock;
use crate::events::{Event, EventBus};
use crate::store::recording::{Answer, Completion};
use crate::store::{Backend, Store};

/// Completions written per transaction.
pub(crate) const RECORD_BATCH: usize = 2048;
/// Record transactions in flight at once on PostgreSQL.
const RECORD_WRITERS_POSTGRES: usize = 4;

/// An answer to record, and who waits for whether its target moved.
pub(crate) type AnswerJob = (Answer, oneshot::Sender<bool>);

/// Where campaign attempts hand their answers and their outcomes.
#[derive(Clone)]
pub(crate) struct Recorders {
    pub record: mpsc::Sender<Completion>,
    pub answers: mpsc::Sender<AnswerJob>,
}

/// Records answers in batches: every answer waiting when a transaction
/// starts goes into it, so that a busy campaign writes a few answer
/// transactions a second rather than one per call (on SQLite each would
/// take the single writer's turn; on both, the campaign's event sequence).
pub(crate) async fn answer_loop(store: Store, rx: mpsc::Receiver<AnswerJob>) {
    let backend = store.backend();
    in_batches(backend, rx, |batch| answer_batch(store.clone(), batch)).await;
}

/// Hands what arrives on `rx` to `write` in batches of up to
/// [`RECORD_BATCH`], until every sender is gone. Batches of different
/// targets are independent (a target has one live attempt at most), so
/// PostgreSQL writes several at once; SQLite has one writer.
async fn in_batches<T, F, Fut>(backend: Backend, mut rx: mpsc::Receiver<T>, mut write: F)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let parallel = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => RECORD_WRITERS_POSTGRES,
    };
    let mut writing = tokio::task::JoinSet::new();
    loop {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        if rx.recv_many(&mut batch, RECORD_BATCH).await == 0 {
            break;
        }
        while writing.len() >= parallel {
            writing.join_next().await;
        }
        writing.spawn(write(batch));
    }
    while writing.join_next().await.is_some() {}
}

/// Writes one batch of answers and tells each call whether its target
/// moved. A failed write is not retried: the attempt's completion then
/// records dialing → answered itself.
async fn answer_batch(store: Store, batch: Vec<AnswerJob>) {
    let (answers, replies): (Vec<Answer>, Vec<_>) = batch.into_iter().unzip();
    let moved = match store.record_answers(&answers).await {
        Ok(moved) => moved,
        Err(e) => {
            tracing::warn!(error = %e, rows = answers.len(), "recording answers failed; their outcomes will record them");
            vec![false; answers.len()]
        }
    };
    for (reply, moved) in replies.into_iter().zip(moved) {
        let _ = reply.send(moved);
    }
}

/// Writes what arrives on `rx` until every sender is gone.
pub(crate) async fn record_loop(
    store: Store,
    events: EventBus,
    clock: Clock,
    rx: mpsc::Receiver<Completion>,
) {
    let backend = store.backend();
    in_batches(backend, rx, |batch| {
        record_batch(store.clone(), events.clone(), clock.now_ms(), batch)
    })
    .await;
}

/// Writes one batch; a failed write is retried, as an attempt's outcome must not be lost.
async fn record_batch(store: Store, events: EventBus, now: i64, batch: Vec<Completion>) {
    until_written("recording attempt outcomes", || {
        store.record_completions(&batch, now)
    })
    .await;
    events.publish(Event::AttemptsRecorded { count: batch.len() });
}
