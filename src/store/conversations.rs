//! Conversations and their messages. Opening one is guarded by a unique
//! index on (channel, our address, the contact's) among open ones; each
//! message (the worker's or the contact's) is numbered within its
//! conversation and written with its `conversation.message` event.

use serde_json::{json, Value};
use sqlx::FromRow;

use super::global_events::{append_global_page, GlobalLog};
use super::{BeginWrite, Page, PageRequest, Result, Store, StoreError};
use crate::store::with_pool;

#[derive(Debug, Clone, FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub channel: String,
    pub our_address: String,
    pub contact_address: String,
    pub our_key: String,
    pub contact_key: String,
    pub worker: String,
    pub route_replies: String,
    pub status: String,
    pub closed_reason: Option<String>,
    pub created_at: i64,
    pub last_activity_at: i64,
    pub closed_at: Option<i64>,
}

const COLUMNS: &str = "id, channel, our_address, contact_address, our_key, contact_key, worker, \
    route_replies, status, closed_reason, created_at, last_activity_at, closed_at";

#[derive(Debug, Clone, FromRow)]
pub struct ConversationMessageRow {
    pub seq: i64,
    pub direction: String,
    pub message_id: String,
    pub body: String,
    pub at: i64,
}

/// One message of a conversation, to add.
#[derive(Debug, Clone)]
pub struct NewConversationMessage<'a> {
    /// `out` (the worker's) or `in` (the contact's).
    pub direction: &'a str,
    pub message_id: &'a str,
    pub body: &'a str,
}

/// The address as matched: its digits (a number), else itself lower-cased.
pub fn address_key(address: &str) -> String {
    let digits: String = address.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || address.chars().any(|c| c.is_ascii_alphabetic()) {
        address.trim().to_ascii_lowercase()
    } else {
        digits
    }
}

/// Who a contact's message is routed to: the worker who opened the
/// conversation, or `unassigned`.
pub fn route_of(c: &ConversationRow) -> String {
    if c.route_replies == "worker" {
        c.worker.clone()
    } else {
        "unassigned".to_string()
    }
}

fn conversation_json(c: &ConversationRow) -> Value {
    json!({"conversation_id": c.id, "channel": c.channel, "worker": c.worker, "from": c.our_address,
           "to": c.contact_address})
}

impl Store {
    /// Opens a conversation; the one already open for the same channel and
    /// addresses when there is one (`Err`).
    pub async fn open_conversation(
        &self,
        c: &ConversationRow,
        now: i64,
    ) -> Result<std::result::Result<(), ConversationRow>> {
        let _write = self.write_guard().await;
        let opened = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(&format!(
                "INSERT INTO conversations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', NULL, $9, $9, NULL) \
                 ON CONFLICT DO NOTHING"))
                .bind(&c.id).bind(&c.channel).bind(&c.our_address).bind(&c.contact_address).bind(&c.our_key)
                .bind(&c.contact_key).bind(&c.worker).bind(&c.route_replies).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                tx.rollback().await?;
                None
            } else {
                let mut log = GlobalLog::default();
                let mut data = conversation_json(c);
                data["route"] = json!(c.worker);
                log.push("conversation.opened", now, data);
                let logged = append_global_page!(tx, log, now);
                tx.commit().await?;
                Some(logged)
            }
        });
        drop(_write);
        match opened {
            Some(logged) => {
                self.logged(logged);
                Ok(Ok(()))
            }
            None => match self
                .open_conversation_for(&c.channel, &c.our_key, &c.contact_key)
                .await?
            {
                Some(open) => Ok(Err(open)),
                None => Err(StoreError::Conflict("conversation".into())),
            },
        }
    }

    /// The open conversation on `channel` between these addresses (keys).
    pub async fn open_conversation_for(
        &self,
        channel: &str,
        our_key: &str,
        contact_key: &str,
    ) -> Result<Option<ConversationRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM conversations WHERE channel = $1 AND our_key = $2 AND contact_key = $3 AND status = 'open'"
        );
        with_pool!(self, p => Ok(sqlx::query_as::<_, ConversationRow>(&sql)
            .bind(channel).bind(our_key).bind(contact_key).fetch_optional(p).await?))
    }

    pub async fn get_conversation(&self, id: &str) -> Result<ConversationRow> {
        let sql = format!("SELECT {COLUMNS} FROM conversations WHERE id = $1");
        with_pool!(self, p => sqlx::query_as::<_, ConversationRow>(&sql).bind(id).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn list_conversations(
        &self,
        worker: Option<&str>,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ConversationRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM conversations WHERE id > $1 AND ($2 IS NULL OR worker = $2) \
             AND ($3 IS NULL OR status = $3) ORDER BY id LIMIT $4"
        );
        let rows = with_pool!(self, p => sqlx::query_as::<_, ConversationRow>(&sql)
            .bind(page.after_or_start()).bind(worker).bind(status).bind(page.fetch_limit()).fetch_all(p).await)?;
        Ok(page.finish(rows, |c| c.id.clone()))
    }

    pub async fn conversation_messages(&self, id: &str) -> Result<Vec<ConversationMessageRow>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, ConversationMessageRow>(
            "SELECT seq, direction, message_id, body, at FROM conversation_messages WHERE conversation_id = $1 ORDER BY seq")
            .bind(id).fetch_all(p).await?))
    }

    /// Adds a message to an open conversation, with its
    /// `conversation.message` event routed to `route`; a
    /// [`StoreError::Conflict`] when the conversation is closed.
    pub async fn add_conversation_message(
        &self,
        c: &ConversationRow,
        m: &NewConversationMessage<'_>,
        route: &str,
        now: i64,
    ) -> Result<i64> {
        let _write = self.write_guard().await;
        let (seq, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            // Locks the conversation (PostgreSQL) while its next number is taken.
            let open: Option<String> = sqlx::query_scalar(
                "UPDATE conversations SET last_activity_at = $1 WHERE id = $2 AND status = 'open' RETURNING id")
                .bind(now).bind(&c.id).fetch_optional(&mut *tx).await?;
            if open.is_none() {
                tx.rollback().await?;
                return Err(StoreError::Conflict("closed".into()));
            }
            let seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM conversation_messages WHERE conversation_id = $1")
                .bind(&c.id).fetch_one(&mut *tx).await?;
            sqlx::query("INSERT INTO conversation_messages (conversation_id, seq, direction, message_id, body, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&c.id).bind(seq).bind(m.direction).bind(m.message_id).bind(m.body).bind(now)
                .execute(&mut *tx).await?;
            let mut log = GlobalLog::default();
            let mut data = conversation_json(c);
            data["route"] = json!(route);
            data["seq"] = json!(seq);
            data["direction"] = json!(m.direction);
            data["message_id"] = json!(m.message_id);
            data["body"] = json!(m.body);
            log.push("conversation.message", now, data);
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((seq, logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(seq)
    }

    /// Writes one global event on its own (a contact's message that no
    /// conversation takes).
    pub async fn log_global_event(&self, kind: &str, data: Value, now: i64) -> Result<()> {
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = GlobalLog::default();
            log.push(kind, now, data);
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(logged)
        })?;
        drop(_write);
        self.logged(logged);
        Ok(())
    }

    /// Closes open conversations (by id, or every one idle since before
    /// `idle_before`), each with its `conversation.closed` event. Returns
    /// the ones closed.
    pub async fn close_conversations(
        &self,
        id: Option<&str>,
        idle_before: Option<i64>,
        reason: &str,
        now: i64,
    ) -> Result<Vec<ConversationRow>> {
        let _write = self.write_guard().await;
        let sql = format!(
            "UPDATE conversations SET status = 'closed', closed_reason = $1, closed_at = $2 \
             WHERE status = 'open' AND ($3 IS NULL OR id = $3) AND ($4 IS NULL OR last_activity_at < $4) RETURNING {COLUMNS}"
        );
        let (closed, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let closed = sqlx::query_as::<_, ConversationRow>(&sql)
                .bind(reason).bind(now).bind(id).bind(idle_before).fetch_all(&mut *tx).await?;
            let mut log = GlobalLog::default();
            for c in &closed {
                let mut data = conversation_json(c);
                data["route"] = json!(c.worker);
                data["reason"] = json!(reason);
                log.push("conversation.closed", now, data);
            }
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((closed, logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::address_key;

    #[test]
    fn numbers_match_by_their_digits() {
        assert_eq!(address_key("+1 (555) 123-4567"), "15551234567");
        assert_eq!(address_key("15551234567"), "15551234567");
        assert_eq!(address_key("Clinic"), "clinic");
        assert_eq!(address_key("1065"), "1065");
    }
}
