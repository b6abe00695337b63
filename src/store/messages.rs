//! Messages (e-mail and SMS): accepted with their idempotency key, claimed
//! for sending under a lease (as targets are), their sends recorded, and
//! later delivery reports applied. Every status change writes its
//! `message.status` event in the same transaction (the global log).
//!
//! The store never decides: the worker says what a send came to and when a
//! retry is due; `message::status` says which changes are allowed, and the
//! statements below only move a message from the status they were given.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::FromRow;

use super::bulk::{self, Column};
use super::global_events::{append_global_page, GlobalLog};
use super::{BeginWrite, Page, PageRequest, Result, Store, StoreError};
use crate::store::dialect::skip_locked;
use crate::store::with_pool;

#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: String,
    pub channel: String,
    pub status: String,
    pub reason: Option<String>,
    pub recipient: String,
    pub request: String,
    pub rendered: String,
    pub template_id: Option<String>,
    pub template_version: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub provider_id: Option<String>,
    pub rfc_message_id: Option<String>,
    pub max_retries: i64,
    pub tries: i64,
    pub due_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub final_at: Option<i64>,
    pub priority: i64,
    pub opens: i64,
    pub clicks: i64,
    /// The failover provider that carried it (the last one tried).
    pub provider: Option<String>,
    /// WhatsApp: when the contact read it.
    pub read_at: Option<i64>,
}

/// Rows per multi-row statement (nine parameters a row).
const RECORD_ROWS_PER_STATEMENT: usize = 1_000;

pub(crate) const COLUMNS: &str = "id, channel, status, reason, recipient, request, rendered, template_id, template_version, \
     idempotency_key, request_hash, provider_id, rfc_message_id, max_retries, tries, due_at, created_at, \
     updated_at, sent_at, final_at, priority, opens, clicks, provider, read_at";

#[derive(Debug, Clone, FromRow)]
pub struct MessageAttemptRow {
    pub attempt: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub result: Option<String>,
    pub code: Option<String>,
    pub text: Option<String>,
    pub provider: Option<String>,
}

/// A message to accept.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewMessage {
    pub id: String,
    pub channel: String,
    pub recipient: String,
    pub request: String,
    pub rendered: String,
    pub template_id: Option<String>,
    pub template_version: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub rfc_message_id: Option<String>,
    pub max_retries: i64,
    pub due_at: i64,
    /// 0 emergency, 1 transactional, 2 marketing.
    #[serde(default = "transactional")]
    pub priority: i64,
}

fn transactional() -> i64 {
    1
}

/// What accepting a message came to.
#[derive(Debug)]
pub enum Accepted {
    New(MessageRow),
    /// The idempotency key was seen with the same request: the first message.
    Existing(MessageRow),
}

/// Filters of a message list.
#[derive(Debug, Default, Clone)]
pub struct MessageFilter<'a> {
    pub status: Option<&'a str>,
    pub template_id: Option<&'a str>,
    pub recipient: Option<&'a str>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

/// What one send came to, as the worker decided it.
#[derive(Debug, Clone)]
pub struct SendRecord {
    pub id: String,
    pub attempt: i64,
    /// `sent`, `queued` (a retry at `due_at`), `bounced` or `failed`.
    pub status: &'static str,
    /// The attempt's result: accepted | retry | bounced | failed | suppressed.
    pub result: &'static str,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub text: Option<String>,
    pub provider_id: Option<String>,
    /// The failover provider that carried or refused it (`None` with a
    /// single transport).
    pub provider: Option<String>,
    pub due_at: Option<i64>,
    /// Addresses to suppress with this record (a bounce): (channel, address).
    pub suppress: Vec<(String, String)>,
}

/// A delivery report, matched to its message by id or provider id.
#[derive(Debug, Clone)]
pub struct ReportRecord {
    pub channel: String,
    /// herald's message id, or else the provider's.
    pub message_id: Option<String>,
    pub provider_id: Option<String>,
    /// `delivered`, `failed` or `bounced`.
    pub status: &'static str,
    pub code: Option<String>,
    pub text: Option<String>,
    /// Suppress the message's recipient (a bounce report).
    pub suppress: bool,
    /// The address the report is about (an SMPP receipt's source_addr), to
    /// match it to a send left in doubt by a crash.
    pub address: Option<String>,
}

/// One status change, as its `message.status` event says it.
pub(crate) struct Change<'a> {
    pub id: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub reason: Option<&'a str>,
    pub code: Option<&'a str>,
    pub text: Option<&'a str>,
}

pub(crate) fn status_event(log: &mut GlobalLog, now: i64, c: Change<'_>) {
    log.push(
        "message.status",
        now,
        json!({"message_id": c.id, "channel": c.channel, "recipient": c.recipient, "from": c.from,
               "status": c.to, "reason": c.reason, "code": c.code, "text": c.text}),
    );
}

impl Store {
    pub async fn get_message(&self, id: &str) -> Result<MessageRow> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE id = $1");
        with_pool!(self, p => sqlx::query_as::<_, MessageRow>(&sql).bind(id).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn message_attempts(&self, id: &str) -> Result<Vec<MessageAttemptRow>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, MessageAttemptRow>(
            "SELECT attempt, started_at, ended_at, result, code, text, provider FROM message_attempts WHERE message_id = $1 ORDER BY attempt")
            .bind(id).fetch_all(p).await?))
    }

    pub async fn list_messages(
        &self,
        channel: &str,
        f: &MessageFilter<'_>,
        page: &PageRequest,
    ) -> Result<Page<MessageRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE channel = $1 AND id > $2 \
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR template_id = $4) AND ($5 IS NULL OR recipient = $5) \
             AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) ORDER BY id LIMIT $8"
        );
        let rows = with_pool!(self, p => sqlx::query_as::<_, MessageRow>(&sql)
            .bind(channel).bind(page.after_or_start()).bind(f.status).bind(f.template_id).bind(f.recipient)
            .bind(f.created_after).bind(f.created_before).bind(page.fetch_limit())
            .fetch_all(p).await)?;
        Ok(page.finish(rows, |m| m.id.clone()))
    }

    /// Replaces a queued message's request and rendering (a PATCH); a
    /// [`StoreError::Conflict`] naming the status once it is not queued.
    pub async fn update_queued_message(&self, m: &NewMessage, now: i64) -> Result<MessageRow> {
        let n = {
            let _write = self.write_guard().await;
            with_pool!(self, p => sqlx::query("UPDATE messages SET recipient = $2, request = $3, rendered = $4, template_id = $5, \
                                               template_version = $6, max_retries = $7, due_at = $8, updated_at = $9 \
                                               WHERE id = $1 AND status = 'queued'")
                .bind(&m.id).bind(&m.recipient).bind(&m.request).bind(&m.rendered).bind(&m.template_id)
                .bind(m.template_version).bind(m.max_retries).bind(m.due_at).bind(now)
                .execute(p).await.map(|r| r.rows_affected()))?
        };
        let row = self.get_message(&m.id).await?;
        if n == 0 {
            return Err(StoreError::Conflict(row.status));
        }
        Ok(row)
    }

    /// Cancels a queued message; a [`StoreError::Conflict`] naming the
    /// status once it is not queued.
    pub async fn cancel_message(&self, id: &str, reason: &str, now: i64) -> Result<MessageRow> {
        let row = self.get_message(id).await?;
        if row.status != "queued" {
            return Err(StoreError::Conflict(row.status));
        }
        let mut log = GlobalLog::default();
        status_event(
            &mut log,
            now,
            Change {
                id,
                channel: &row.channel,
                recipient: &row.recipient,
                from: "queued",
                to: "cancelled",
                reason: Some(reason),
                code: None,
                text: None,
            },
        );
        let _write = self.write_guard().await;
        let n = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE messages SET status = 'cancelled', reason = $2, final_at = $3, updated_at = $3 \
                                 WHERE id = $1 AND status = 'queued'")
                .bind(id).bind(reason).bind(now).execute(&mut *tx).await?.rows_affected();
            let logged = if n == 1 { append_global_page!(tx, log, now) } else { 0 };
            tx.commit().await?;
            Ok::<_, StoreError>((n, logged))
        })?;
        drop(_write);
        self.logged(n.1);
        let row = self.get_message(id).await?;
        if n.0 == 0 {
            return Err(StoreError::Conflict(row.status));
        }
        Ok(row)
    }

    /// Deletes a message and its attempts, unless it is being sent (a
    /// [`StoreError::Conflict`] `sending`). False when there was none.
    pub async fn delete_message(&self, id: &str, channel: &str) -> Result<bool> {
        let _write = self.write_guard().await;
        let n = with_pool!(self, p => sqlx::query("DELETE FROM messages WHERE id = $1 AND channel = $2 AND status <> 'sending'")
            .bind(id).bind(channel).execute(p).await.map(|r| r.rows_affected()))?;
        if n == 1 {
            return Ok(true);
        }
        drop(_write);
        match self.get_message(id).await {
            Ok(m) if m.channel == channel => Err(StoreError::Conflict(m.status)),
            _ => Ok(false),
        }
    }

    /// Claims up to `limit` queued messages of `channel` due by `now`: each
    /// moves to `sending` under `owner`'s lease, its try count and a new
    /// attempt row, with its event, in one transaction.
    pub async fn claim_messages(
        &self,
        channel: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
        below_priority: Option<i64>,
    ) -> Result<Vec<MessageRow>> {
        let started = std::time::Instant::now();
        let _write = self.write_guard().await;
        let (rows, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            // The due ones, in one statement (rows another node holds are
            // skipped on PostgreSQL), and their attempt rows in another.
            let claim = format!("UPDATE messages SET status = 'sending', tries = tries + 1, lease_owner = $1, \
                                 lease_expires_at = $2, updated_at = $3 WHERE status = 'queued' AND id IN \
                                 (SELECT id FROM messages WHERE status = 'queued' AND channel = $4 AND due_at <= $3 \
                                 AND priority < $6 ORDER BY priority, due_at LIMIT $5{}) RETURNING {COLUMNS}", skip_locked(p));
            let mut rows: Vec<MessageRow> = sqlx::query_as(&claim).bind(owner).bind(now + lease_ms).bind(now)
                .bind(channel).bind(limit).bind(below_priority.unwrap_or(i64::MAX)).fetch_all(&mut *tx).await?;
            rows.sort_by_key(|r| (r.priority, r.due_at));
            let mut log = GlobalLog::default();
            if !rows.is_empty() {
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO message_attempts (message_id, attempt, started_at) ");
                qb.push_values(&rows, |mut b, row| {
                    b.push_bind(&row.id).push_bind(row.tries).push_bind(now);
                });
                qb.build().execute(&mut *tx).await?;
            }
            for row in &rows {
                status_event(&mut log, now, Change { id: &row.id, channel: &row.channel, recipient: &row.recipient, from: "queued", to: "sending", reason: None, code: None, text: None });
            }
            let n = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((rows, n))
        })?;
        drop(_write);
        self.logged(logged);
        self.observe("message_claim", started);
        Ok(rows)
    }

    /// Writes what sends came to, in one transaction: each message moves
    /// from `sending` (and only from it) to its record's status, its attempt
    /// row is closed, bounced addresses are suppressed, each change with its
    /// event.
    /// When messages on `channel` were sent to `recipient` since `since` (ms).
    pub async fn message_sends_to(
        &self,
        channel: &str,
        recipient: &str,
        since: i64,
    ) -> Result<Vec<i64>> {
        with_pool!(self, p => {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT sent_at FROM messages WHERE recipient = $1 AND channel = $2 AND sent_at >= $3")
                .bind(recipient).bind(channel).bind(since).fetch_all(p).await?)
        })
    }

    pub async fn record_sends(&self, records: &[SendRecord], now: i64) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let _reports = self.report_lock.lock().await;
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = GlobalLog::default();
            // Messages now `sent`: reports that overtook this record wait for them.
            let mut sent = Vec::new();
            for chunk in records.chunks(RECORD_ROWS_PER_STATEMENT) {
                let at = |cond: bool| cond.then_some(now);
                let mut qb = sqlx::QueryBuilder::new("UPDATE messages SET status = v.column2, reason = v.column3, \
                    provider_id = COALESCE(v.column4, messages.provider_id), due_at = COALESCE(v.column5, messages.due_at), \
                    sent_at = COALESCE(v.column6, messages.sent_at), final_at = v.column7, \
                    provider = COALESCE(v.column8, messages.provider), \
                    tries = messages.tries - v.column9, \
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ");
                qb.push_bind(now).push(" FROM ");
                bulk::rows(&mut qb, vec![
                    Column::Text(chunk.iter().map(|r| Some(r.id.as_str())).collect()),
                    Column::Text(chunk.iter().map(|r| Some(r.status)).collect()),
                    Column::Text(chunk.iter().map(|r| r.reason.as_deref()).collect()),
                    Column::Text(chunk.iter().map(|r| r.provider_id.as_deref()).collect()),
                    Column::BigInt(chunk.iter().map(|r| r.due_at).collect()),
                    Column::BigInt(chunk.iter().map(|r| at(r.status == "sent")).collect()),
                    Column::BigInt(chunk.iter().map(|r| at(matches!(r.status, "bounced" | "failed"))).collect()),
                    // The message names the provider that carried it; each
                    // attempt, the one it went to.
                    Column::Text(chunk.iter().map(|r| r.provider.as_deref().filter(|_| r.status == "sent")).collect()),
                    // A claim held back (a frequency cap) was not a try.
                    Column::Int(chunk.iter().map(|r| Some(i32::from(r.result == crate::message::caps::DEFERRED))).collect()),
                ]);
                qb.push(" WHERE messages.id = v.column1 AND messages.status = 'sending' \
                          RETURNING messages.id, messages.channel, messages.recipient");
                let keep = bulk::keep_prepared(&qb);
                let moved: HashMap<String, (String, String)> = qb.build_query_as::<(String, String, String)>()
                    .persistent(keep).fetch_all(&mut *tx).await?
                    .into_iter().map(|(id, channel, recipient)| (id, (channel, recipient))).collect();
                let mut qb = sqlx::QueryBuilder::new("UPDATE message_attempts SET ended_at = ");
                qb.push_bind(now).push(", result = v.column3, code = v.column4, text = v.column5, provider = v.column6 FROM ");
                bulk::rows(&mut qb, vec![
                    Column::Text(chunk.iter().map(|r| Some(r.id.as_str())).collect()),
                    Column::Int(chunk.iter().map(|r| Some(r.attempt as i32)).collect()),
                    Column::Text(chunk.iter().map(|r| Some(r.result)).collect()),
                    Column::Text(chunk.iter().map(|r| r.code.as_deref()).collect()),
                    Column::Text(chunk.iter().map(|r| r.text.as_deref()).collect()),
                    Column::Text(chunk.iter().map(|r| r.provider.as_deref()).collect()),
                ]);
                qb.push(" WHERE message_attempts.message_id = v.column1 AND message_attempts.attempt = v.column2 \
                          AND message_attempts.ended_at IS NULL");
                qb.build().persistent(keep).execute(&mut *tx).await?;
                for r in chunk {
                    let Some((channel, recipient)) = moved.get(&r.id) else { continue };
                    if r.result == crate::message::caps::DEFERRED {
                        // Held back, not tried: no attempt to keep.
                        sqlx::query("DELETE FROM message_attempts WHERE message_id = $1 AND attempt = $2")
                            .bind(&r.id).bind(r.attempt).execute(&mut *tx).await?;
                    }
                    for (c, a) in &r.suppress {
                        sqlx::query("INSERT INTO suppressions (channel, address, reason, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                            .bind(c).bind(a).bind("bounced").bind(now).execute(&mut *tx).await?;
                    }
                    status_event(&mut log, now, Change { id: &r.id, channel, recipient, from: "sending", to: r.status, reason: r.reason.as_deref(), code: r.code.as_deref(), text: r.text.as_deref() });
                    if r.status == "sent" {
                        sent.push((r.id.clone(), channel.clone(), r.provider_id.clone(), recipient.clone()));
                    }
                }
            }
            crate::store::reports::settle_kept!(tx, log, now, &sent);
            let n = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(n)
        })?;
        drop(_write);
        self.logged(logged);
        self.observe("message_record", started);
        Ok(())
    }

    /// Of `addresses` on `channel`, those on its suppression list.
    pub async fn suppressed(&self, channel: &str, addresses: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for a in addresses {
            let hits: i64 = with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE channel = $1 AND address = $2")
                .bind(channel).bind(a).fetch_one(p).await)?;
            if hits > 0 {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    /// Which list keeps SMS from `number`: `"suppression"` (the SMS
    /// suppression list), `"dnc"` (the call DNC list), or none; one read.
    pub async fn sms_blocked_by(&self, number: &str) -> Result<Option<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar(
            "SELECT 'suppression' FROM suppressions WHERE channel = 'sms' AND address = $1 \
             UNION ALL SELECT 'dnc' FROM dnc WHERE number = $1 LIMIT 1")
            .bind(number).fetch_optional(p).await?))
    }

    pub async fn add_suppression(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query("INSERT INTO suppressions (channel, address, reason, created_at) VALUES ($1, $2, $3, $4) \
                                           ON CONFLICT (channel, address) DO UPDATE SET reason = $3")
            .bind(channel).bind(address).bind(reason).bind(now).execute(p).await.map(|_| ()))?;
        self.wrote();
        Ok(())
    }

    pub async fn get_suppression(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>("SELECT reason, created_at FROM suppressions WHERE channel = $1 AND address = $2")
            .bind(channel).bind(address).fetch_optional(p).await?))
    }

    pub async fn delete_suppression(&self, channel: &str, address: &str) -> Result<bool> {
        let n = with_pool!(self, p => sqlx::query("DELETE FROM suppressions WHERE channel = $1 AND address = $2")
            .bind(channel).bind(address).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(n == 1)
    }

    /// Messages by channel and status, for `/metrics` and the demo.
    pub async fn message_counts(&self) -> Result<Vec<(String, String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, String, i64)>(
            "SELECT channel, status, COUNT(*) FROM messages GROUP BY channel, status ORDER BY channel, status")
            .fetch_all(p).await?))
    }
}

/// The JSON of a stored request, or `null` when corrupt.
pub fn request_json(m: &MessageRow) -> Value {
    serde_json::from_str(&m.request).unwrap_or(Value::Null)
}
