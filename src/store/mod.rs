//! The store: every table behind one [`Store`] handle, on SQLite or PostgreSQL.
//!
//! SQL is written once, in the portable subset both databases run (`$N`
//! parameters, `ON CONFLICT`, `RETURNING`, partial indexes; timestamps as
//! epoch milliseconds, ids as text). `with_pool!` runs the same statement on
//! whichever pool is open. Backend-specific setup lives in `sqlite.rs` and
//! `postgres.rs`; a clause that differs between the two comes from
//! `dialect.rs`, and a set of rows is bound through `bulk.rs`.
//!
//! One module per table: `targets`, `claims` (due targets to attempts),
//! `recording` (answers and ends of attempts), `calls`, `dnc`, `nodes`,
//! `campaigns`, `outdials`, `documents`, `oneoff`, `events`, `webhooks`,
//! `apikeys`; for messages, `templates`, `messages` (claims and send
//! records), `accepts` (accepting, written together), `reports` (delivery
//! reports and recovery) and `global_events`.
//!
//! The store never decides anything: callers validate and choose, the store
//! persists atomically (a state change and its event row in one transaction).

mod accepts;
pub mod apikeys;
pub mod bulk;
pub mod calls;
pub mod campaigns;
pub mod claims;
pub mod conversations;
mod dialect;
pub mod dnc;
pub mod documents;
pub mod engagement;
pub mod events;
pub mod fallbacks;
pub mod global_events;
pub mod history;
pub mod inbound;
pub mod messages;
pub mod nodes;
pub mod notification_bulk;
pub mod notifications;
pub mod oneoff;
pub mod outdials;
pub mod page;
pub mod postgres;
pub mod recording;
pub mod reports;
pub mod retention;
pub mod sqlite;
pub mod targets;
pub mod templates;
pub mod ui_sessions;
pub mod webhooks;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{PgPool, SqlitePool};

pub use page::{Page, PageRequest};

/// The open connection pool.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool (the body is compiled
/// once per backend). Keep bodies to a statement or a call: rustfmt does not
/// format a macro's arguments.
macro_rules! with_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The handle every part of herald holds to reach the database.
#[derive(Clone, Debug)]
pub struct Store {
    pub pool: Pool,
    /// SQLite has one writer: write transactions queue here (and wake as soon
    /// as the lock is free) instead of in SQLite's sleeping busy handler.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite: copies the WAL into the database after write transactions.
    checkpointer: Option<std::sync::Arc<sqlite::Checkpointer>>,
    /// This process's metrics (store latency, attempts, events).
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Bumped after each commit that logged events (wakes streams and webhooks).
    log_tail: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Messages being accepted, written together (group commit).
    accepts: std::sync::Arc<accepts::AcceptQueue>,
    /// Taken around writing delivery reports and send records, so that on
    /// PostgreSQL a report this node keeps for a send it is recording is
    /// seen by that record (another node's is settled by the recovery pass).
    report_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        let store = Self::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens `url` without migrating.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let (pool, checkpointer) = if url.starts_with("sqlite:") {
            let (pool, checkpointer) = sqlite::connect(url, max_connections).await?;
            (Pool::Sqlite(pool), checkpointer.map(std::sync::Arc::new))
        } else {
            (
                Pool::Postgres(postgres::connect(url, max_connections).await?),
                None,
            )
        };
        Ok(Store {
            pool,
            write_lock: Default::default(),
            checkpointer,
            metrics: Default::default(),
            log_tail: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
            accepts: Default::default(),
            report_lock: Default::default(),
        })
    }

    /// Taken around write transactions; a no-op on PostgreSQL. On SQLite,
    /// releasing it wakes the checkpointer.
    pub(crate) async fn write_guard(&self) -> WriteGuard<'_> {
        match self.pool {
            Pool::Sqlite(_) => WriteGuard {
                _lock: Some(self.write_lock.lock().await),
                checkpointer: self.checkpointer.as_deref(),
            },
            Pool::Postgres(_) => WriteGuard {
                _lock: None,
                checkpointer: None,
            },
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// This process's metrics registry.
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Records how long the store operation `op` took since `started`.
    pub(crate) fn observe(&self, op: &'static str, started: std::time::Instant) {
        self.metrics
            .store_latency
            .observe(op, started.elapsed().as_secs_f64());
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A cheap round trip, for /healthz.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// SQLite on a file: the number of background checkpoints completed, as
    /// it changes.
    pub fn checkpoints(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.checkpointer.as_ref().map(|c| c.completed())
    }

    /// SQLite: wakes the checkpointer after a write made without
    /// [`Store::write_guard`] (whose release does it).
    pub(crate) fn wrote(&self) {
        if let Some(c) = &self.checkpointer {
            c.written();
        }
    }

    pub async fn close(&self) {
        with_pool!(self, p => p.close().await);
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
    }
}

/// The single writer's turn (SQLite); see [`Store::write_guard`].
pub(crate) struct WriteGuard<'a> {
    _lock: Option<tokio::sync::MutexGuard<'a, ()>>,
    checkpointer: Option<&'a sqlite::Checkpointer>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer {
            c.written();
        }
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`].
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A new time-ordered id (UUIDv7), so paging by id is paging by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_on_unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(what.to_string())
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::Conflict(format!("{what}: it is still referenced"))
        }
        _ => StoreError::Db(e),
    }
}

/// Opens a transaction that will write. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes
/// fails with SQLITE_BUSY_SNAPSHOT when another writer committed in between.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}
