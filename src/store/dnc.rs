//! The do-not-call list: numbers never dialed, added by the API or by an
//! opt-out (the latter with the attempt's result, see `recording`).

use super::{Result, Store};
use crate::store::with_pool;

impl Store {
    /// Adds numbers to the DNC list (existing entries are kept).
    pub async fn add_dnc(&self, number: &str, reason: &str, now: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(number).bind(reason).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    pub async fn get_dnc(&self, number: &str) -> Result<Option<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>("SELECT reason, created_at FROM dnc WHERE number = $1")
            .bind(number).fetch_optional(p).await?))
    }

    pub async fn delete_dnc(&self, number: &str) -> Result<bool> {
        let r = with_pool!(self, p => Ok(sqlx::query("DELETE FROM dnc WHERE number = $1").bind(number).execute(p).await?.rows_affected() == 1));
        self.wrote();
        r
    }
}
