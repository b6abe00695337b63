//! Messages received from contacts (a WhatsApp webhook's messages), kept
//! once per provider id; the last one from a contact opens WhatsApp's
//! 24-hour window.

use super::{Result, Store};
use crate::store::with_pool;

/// A received message to keep.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub channel: String,
    pub provider_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub received_at: i64,
}

impl Store {
    /// Keeps received messages; one already kept (a webhook sent again) is
    /// skipped. Returns how many were new.
    pub async fn record_inbound(&self, messages: &[NewInbound]) -> Result<u64> {
        let _write = self.write_guard().await;
        let mut n = 0;
        for m in messages {
            let id = super::new_id();
            n += with_pool!(self, p => sqlx::query(
                "INSERT INTO inbound_messages (id, channel, provider_id, from_addr, to_addr, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
                .bind(&id).bind(&m.channel).bind(&m.provider_id).bind(&m.from).bind(&m.to).bind(&m.body)
                .bind(m.received_at).execute(p).await.map(|r| r.rows_affected()))?;
        }
        self.wrote();
        Ok(n)
    }

    /// When the contact `from` last wrote on `channel`.
    pub async fn last_inbound_at(&self, channel: &str, from: &str) -> Result<Option<i64>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(received_at) FROM inbound_messages WHERE channel = $1 AND from_addr = $2")
            .bind(channel).bind(from).fetch_one(p).await?))
    }
}
