//! Outdial-specific queries beyond the shared document ones.

use super::{BeginWrite, Result, Store, StoreError};
use crate::store::with_pool;

impl Store {
    /// Deletes an outdial and its targets, unless a campaign uses it.
    pub async fn delete_outdial(&self, id: &str) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let used: Option<String> = sqlx::query_scalar("SELECT id FROM campaigns WHERE outdial_id = $1 LIMIT 1")
                .bind(id).fetch_optional(&mut *tx).await?;
            if let Some(campaign) = used {
                return Err(StoreError::Conflict(format!(
                    "outdial {id} is used by campaign {campaign}; delete the campaign first"
                )));
            }
            let done = sqlx::query("DELETE FROM outdials WHERE id = $1").bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
