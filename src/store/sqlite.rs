//! SQLite specifics: file creation, WAL, pragmas, checkpoints. Single node only.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::sync::Notify;

/// WAL pages after which a committing writer checkpoints by itself. The
/// [`Checkpointer`] normally keeps the WAL far below this; it is the
/// backstop for when it cannot (a long read pinning old pages).
const WAL_AUTOCHECKPOINT_PAGES: &str = "16384";
/// A WAL file larger than this is truncated back to it once checkpointed.
const WAL_SIZE_LIMIT_BYTES: &str = "67108864";

/// Opens (creating if missing, parent directories included) a WAL-mode
/// database, and starts its [`Checkpointer`].
pub async fn connect(
    url: &str,
    max_connections: u32,
) -> Result<(SqlitePool, Option<Checkpointer>), sqlx::Error> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES)
        // Rows handed back per query before the connection's worker thread
        // waits for the caller: a claim reads thousands of rows, and at the
        // default (50) every 50 rows cost two thread switches.
        .row_buffer_size(2048);
    let path = opts.get_filename();
    let in_memory = path.to_str() == Some(":memory:");
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !in_memory {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        // A local file does not go stale: no round trip to check it on every acquire.
        .test_before_acquire(false)
        .connect_with(opts.clone())
        .await?;
    let checkpointer = if in_memory {
        None
    } else {
        Some(Checkpointer::start(opts).await?)
    };
    Ok((pool, checkpointer))
}

/// Copies committed WAL pages into the database file on its own connection,
/// after each write transaction, so that this copy and its fsyncs run beside
/// the next writer instead of inside a writer's commit. A passive checkpoint
/// never waits for readers or writers; what it cannot copy yet is copied by
/// the next one. The task ends when the checkpointer is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    wake: Arc<Notify>,
    /// Checkpoints completed so far.
    done: tokio::sync::watch::Receiver<u64>,
    stop: tokio_util::sync::CancellationToken,
}

impl Checkpointer {
    async fn start(opts: SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
        let mut conn = opts.connect().await?;
        let wake = Arc::new(Notify::new());
        let stop = tokio_util::sync::CancellationToken::new();
        let (woken, stopped) = (wake.clone(), stop.clone());
        let (count, done) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = woken.notified() => {}
                    _ = stopped.cancelled() => break,
                }
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut conn)
                    .await
                {
                    Ok(_) => count.send_modify(|n| *n += 1),
                    Err(e) => {
                        tracing::warn!(error = %e, "SQLite checkpoint failed; the next write retries it")
                    }
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { wake, done, stop })
    }

    /// A write transaction ended: its pages can be copied.
    pub fn written(&self) {
        self.wake.notify_one();
    }

    /// The number of checkpoints completed, as it changes.
    pub fn completed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.done.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
