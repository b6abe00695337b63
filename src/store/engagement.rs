//! Engagement: an e-mail's open of the tracking pixel or click through the
//! redirect, counted on the message with its `message.opened` /
//! `message.clicked` event; a WhatsApp message read (`read_at`, once, with
//! `message.read`).

use serde_json::json;

use super::global_events::{append_global_page, GlobalLog};
use super::{BeginWrite, Result, Store, StoreError};
use crate::store::with_pool;

impl Store {
    /// The rendering of a tracked e-mail (`None`: no such message, or not tracked).
    pub async fn tracked_rendering(&self, id: &str) -> Result<Option<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT rendered FROM messages WHERE id = $1 AND channel = 'email' AND body_purged_at IS NULL")
            .bind(id).fetch_optional(p).await?))
    }

    /// Counts an open (`url` None) or a click on `url`; false when no
    /// e-mail has this id.
    pub async fn record_engagement(&self, id: &str, url: Option<&str>, now: i64) -> Result<bool> {
        let (column, kind) = match url {
            None => ("opens", "message.opened"),
            Some(_) => ("clicks", "message.clicked"),
        };
        let _write = self.write_guard().await;
        let (found, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let recipient: Option<String> = sqlx::query_scalar(&format!(
                "UPDATE messages SET {column} = {column} + 1 WHERE id = $1 AND channel = 'email' RETURNING recipient"))
                .bind(id).fetch_optional(&mut *tx).await?;
            let mut log = GlobalLog::default();
            if let Some(r) = &recipient {
                log.push(kind, now, json!({"message_id": id, "channel": "email", "recipient": r, "url": url}));
            }
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((recipient.is_some(), logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(found)
    }

    /// Notes that the WhatsApp message the provider calls `provider_id` was
    /// read at `at` (the first report only); false when none matched (not
    /// sent from here, or already read).
    pub async fn record_read(&self, provider_id: &str, at: i64, now: i64) -> Result<bool> {
        let _write = self.write_guard().await;
        let (found, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let row: Option<(String, String)> = sqlx::query_as(
                "UPDATE messages SET read_at = $1 WHERE channel = 'whatsapp' AND provider_id = $2 AND read_at IS NULL \
                 RETURNING id, recipient")
                .bind(at).bind(provider_id).fetch_optional(&mut *tx).await?;
            let mut log = GlobalLog::default();
            if let Some((id, r)) = &row {
                let read_at = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                log.push("message.read", now, json!({"message_id": id, "channel": "whatsapp", "recipient": r, "read_at": read_at}));
            }
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((row.is_some(), logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(found)
    }
}
