//! Campaign fallback messages: the failed targets of campaigns that name a
//! fallback and have none yet, and the record of the one made (its message
//! id on the target, and `target.fallback` in the campaign's events).

use sqlx::FromRow;

use super::events::EventLog;
use super::{BeginWrite, Result, Store, StoreError};
use crate::append_event_pages;
use crate::store::with_pool;

/// Failed reasons that get no fallback: the person must not, or cannot, be
/// reached.
pub const NO_FALLBACK_REASONS: [&str; 4] = ["dnc", "invalid_destination", "opted_out", "completed"];

#[derive(Debug, Clone, FromRow)]
pub struct FailedTarget {
    pub id: String,
    pub name: String,
    pub destinations: String,
    pub variables: String,
    pub reason: Option<String>,
}

impl Store {
    /// Campaigns (id, outdial, spec) whose spec names a fallback.
    pub async fn campaigns_with_fallback(&self) -> Result<Vec<(String, String, String)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, String, String)>(
            "SELECT id, outdial_id, spec FROM campaigns WHERE spec LIKE '%\"fallback\"%' ORDER BY id")
            .fetch_all(p).await?))
    }

    /// Failed targets of an outdial without a fallback message yet.
    pub async fn failed_without_fallback(
        &self,
        outdial_id: &str,
        limit: i64,
    ) -> Result<Vec<FailedTarget>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, FailedTarget>(
            "SELECT id, name, destinations, variables, reason FROM targets \
             WHERE outdial_id = $1 AND state = 'failed' AND fallback_message_id IS NULL ORDER BY id LIMIT $2")
            .bind(outdial_id).bind(limit).fetch_all(p).await?))
    }

    /// Records a target's fallback (`message_id` empty: none made, for
    /// `reason`), with its `target.fallback` event; false when another node
    /// recorded it first.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_fallback(
        &self,
        campaign_id: &str,
        target_id: &str,
        channel: &str,
        message_id: &str,
        template_id: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let _write = self.write_guard().await;
        let (moved, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE targets SET fallback_message_id = $1, updated_at = $2 \
                 WHERE id = $3 AND fallback_message_id IS NULL")
                .bind(message_id).bind(now).bind(target_id).execute(&mut *tx).await?.rows_affected();
            let mut log = EventLog::default();
            if n == 1 {
                let id = (!message_id.is_empty()).then_some(message_id);
                log.push_json(campaign_id, serde_json::to_string(&("F", now, target_id, channel, id, template_id, reason))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            let logged = append_event_pages!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((n == 1, logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(moved)
    }
}
