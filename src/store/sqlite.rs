//! SQLite specifics: file creation, WAL, pragmas, checkpoints. Single node only.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::sync::Notify;

/// WAL pages after which a committing writer checkpoints by itself. The
/// [`Checkpointer`] normally keeps the WAL far below this; it is the
/// backstop for when it cannot (a long read pinning old pages, or a run of
/// writes that do not wake it).
const WAL_AUTOCHECKPOINT_PAGES: &str = "16384";
/// A WAL file larger than this is truncated back to it once checkpointed.
const WAL_SIZE_LIMIT_BYTES: &str = "67108864";

/// Opens (creating if missing, parent directories included) a WAL-mode
/// database, and starts its [`Checkpointer`] (not for an in-memory one).
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
    // (sqlx turns `:memory:` into a shared-cache `file:` name.)
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let path = opts.get_filename();
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
    let checkpointer = (!in_memory).then(|| Checkpointer::start(opts));
    Ok((pool, checkpointer))
}

/// Copies committed WAL pages into the database file on its own connection,
/// after each write transaction, so that this copy and its fsyncs run beside
/// the next writer instead of inside a writer's commit. A passive checkpoint
/// never waits for readers or writers; what it cannot copy yet is copied by
/// the next one. The task ends on [`Checkpointer::close`] or when the
/// checkpointer is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    wake: Arc<Notify>,
    /// Checkpoints completed so far.
    done: tokio::sync::watch::Receiver<u64>,
    stop: tokio_util::sync::CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(opts: SqliteConnectOptions) -> Checkpointer {
        let wake = Arc::new(Notify::new());
        let stop = tokio_util::sync::CancellationToken::new();
        let (woken, stopped) = (wake.clone(), stop.clone());
        let (count, done) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut conn: Option<SqliteConnection> = None;
            // Whether the last attempt failed (one warning per run of failures).
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = woken.notified() => {}
                    _ = stopped.cancelled() => break,
                }
                let result = match conn.as_mut() {
                    Some(c) => checkpoint(c).await,
                    None => match opts.connect().await {
                        Ok(mut c) => {
                            let r = checkpoint(&mut c).await;
                            conn = Some(c);
                            r
                        }
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(()) => {
                        failing = false;
                        count.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "SQLite checkpoint failed; writers checkpoint by themselves until it works again");
                        }
                        failing = true;
                        // A fresh connection for the next attempt.
                        if let Some(c) = conn.take() {
                            let _ = c.close().await;
                        }
                    }
                }
            }
            if let Some(c) = conn {
                let _ = c.close().await;
            }
        });
        Checkpointer {
            wake,
            done,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Something was written: its pages can be copied.
    pub fn written(&self) {
        self.wake.notify_one();
    }

    /// The number of checkpoints completed, as it changes.
    pub fn completed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.done.clone()
    }

    /// Stops the task and closes its connection (call after closing the
    /// pool: the last connection to close checkpoints and removes the WAL).
    pub async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("checkpointer task").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(conn)
        .await
        .map(|_| ())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
