//! The recorder: campaign attempts' completions arrive on a channel and are
//! written in batches (one transaction each; several at once on PostgreSQL,
//! one on SQLite's single writer). A failed write is retried, never dropped.

use tokio::sync::mpsc;

use super::attempt::until_written;
use crate::clock::Clock;
use crate::events::{Event, EventBus};
use crate::store::recording::Completion;
use crate::store::{Backend, Store};

/// Completions written per transaction.
pub(crate) const RECORD_BATCH: usize = 2048;
/// Record transactions in flight at once on PostgreSQL.
const RECORD_WRITERS_POSTGRES: usize = 4;

/// Writes what arrives on `rx` until every sender is gone.
pub(crate) async fn record_loop(
    store: Store,
    events: EventBus,
    clock: Clock,
    mut rx: mpsc::Receiver<Completion>,
) {
    // Completions of different targets are independent (a target has one live
    // attempt at most), so PostgreSQL takes several batches at once; SQLite
    // has one writer.
    let parallel = match store.backend() {
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
        writing.spawn(record_batch(
            store.clone(),
            events.clone(),
            clock.now_ms(),
            batch,
        ));
    }
    while writing.join_next().await.is_some() {}
}

/// Writes one batch; a failed write is retried, as an attempt's outcome must not be lost.
async fn record_batch(store: Store, events: EventBus, now: i64, batch: Vec<Completion>) {
    until_written("recording attempt outcomes", || {
        store.record_completions(&batch, now)
    })
    .await;
    events.publish(Event::AttemptsRecorded { count: batch.len() });
}
