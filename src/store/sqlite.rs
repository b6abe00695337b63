//! SQLite specifics: file creation, WAL, pragmas. Single node only.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// Opens (creating if missing, parent directories included) a WAL-mode database.
pub async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        // Rows handed back per query before the connection's worker thread
        // waits for the caller: a claim reads thousands of rows, and at the
        // default (50) every 50 rows cost two thread switches.
        .row_buffer_size(2048);
    let path = opts.get_filename();
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && path.to_str() != Some(":memory:") {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
    }
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(opts)
        .await
}
