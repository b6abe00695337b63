//! Node rows: liveness of the herald processes sharing a PostgreSQL database.

use super::{Result, Store};
use crate::store::with_pool;

/// Node liveness, for sharing a PostgreSQL database between herald processes.
impl Store {
    pub async fn register_node(&self, id: &str, now: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2")
            .bind(id).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Refreshes this node's heartbeat; `false` if another node declared it dead.
    pub async fn heartbeat(&self, id: &str, now: i64) -> Result<bool> {
        with_pool!(self, p => Ok(sqlx::query("UPDATE nodes SET heartbeat_at = $2 WHERE id = $1")
            .bind(id).bind(now).execute(p).await?.rows_affected() == 1))
    }

    /// Nodes whose heartbeat is older than `stale_before`, plus node ids of
    /// open attempts that have no node row at all.
    pub async fn dead_nodes(&self, stale_before: i64) -> Result<Vec<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM nodes WHERE heartbeat_at < $1 \
             UNION SELECT DISTINCT node_id FROM calls WHERE ended_at IS NULL AND status = 'in_progress' \
             AND node_id IS NOT NULL AND node_id NOT IN (SELECT id FROM nodes)")
            .bind(stale_before).fetch_all(p).await?))
    }

    /// Nodes whose heartbeat is at `alive_since` or later.
    pub async fn live_nodes(&self, alive_since: i64) -> Result<i64> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1")
            .bind(alive_since).fetch_one(p).await?))
    }

    pub async fn forget_nodes(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            with_pool!(self, p => sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}
