//! Accepting messages, with group commit: every message accepted while a
//! write is in progress is written by the next one, in one transaction (one
//! commit and one global event page for the lot), so concurrent requests
//! share the single writer instead of queueing for it one by one. A caller
//! returns once its own message is committed.
//!
//! How: each caller queues its message, then takes the leader lock; the
//! holder writes everything queued and answers each caller. A caller whose
//! message an earlier leader wrote finds the queue empty and takes its
//! answer. A batch whose transaction fails is written again one message at
//! a time, so each caller gets its own message's error. The write runs on a
//! task of its own, so a caller that goes away does not cut it short.

use std::collections::HashSet;
use std::sync::Mutex;

use sqlx::QueryBuilder;
use tokio::sync::oneshot;

use super::bulk::{self, Bulk, Column};
use super::global_events::{append_global_page, GlobalLog};
use super::messages::{status_event, Accepted, Change, MessageRow, NewMessage, COLUMNS};
use super::{BeginWrite, Result, Store, StoreError};
use crate::store::with_pool;

/// Messages written per transaction at most (and per statement: 14
/// parameters a message on SQLite, which takes at most 32,766).
const ACCEPT_BATCH: usize = 1_000;

type Reply = oneshot::Sender<Result<Inserted>>;

/// What the write came to for one message.
#[derive(Debug)]
enum Inserted {
    New,
    /// The idempotency key was taken (by an earlier message, or by one in
    /// the same batch).
    KeyTaken,
}

/// Messages waiting to be written, and the lock of whoever writes them.
#[derive(Debug, Default)]
pub(crate) struct AcceptQueue {
    waiting: Mutex<Vec<(NewMessage, i64, Reply)>>,
    leader: tokio::sync::Mutex<()>,
}

impl Store {
    /// Accepts a message (`queued`). With an idempotency key already used:
    /// the first message when the request hash matches, else a
    /// [`StoreError::Conflict`] `idempotency_key_reused`.
    pub async fn accept_message(&self, m: &NewMessage, now: i64) -> Result<Accepted> {
        if let Some(key) = &m.idempotency_key {
            if let Some(found) = self.message_by_key(key).await? {
                return same_request(found, &m.request_hash);
            }
        }
        let (reply, answer) = oneshot::channel();
        self.accepts
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((m.clone(), now, reply));
        {
            let _leader = self.accepts.leader.lock().await;
            loop {
                let batch: Vec<_> = {
                    let mut waiting = self
                        .accepts
                        .waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let n = waiting.len().min(ACCEPT_BATCH);
                    waiting.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                // On a task of its own: a caller that goes away (its client
                // hung up) must not cut the other callers' write short.
                let store = self.clone();
                let _ = tokio::spawn(async move { store.write_accepts(batch).await }).await;
            }
        }
        let inserted = answer
            .await
            .map_err(|_| StoreError::Corrupt("an accepted message was not written".into()))?;
        match inserted? {
            Inserted::New => Ok(Accepted::New(queued_row(m, now))),
            // A concurrent request with the same key won the insert.
            Inserted::KeyTaken => {
                let key = m.idempotency_key.as_deref().unwrap_or_default();
                match self.message_by_key(key).await? {
                    Some(found) => same_request(found, &m.request_hash),
                    None => Err(StoreError::Conflict("idempotency_key".into())),
                }
            }
        }
    }

    /// Writes a batch and answers each of its callers; a failed batch is
    /// written again one message at a time.
    async fn write_accepts(&self, batch: Vec<(NewMessage, i64, Reply)>) {
        let started = std::time::Instant::now();
        let rows: Vec<(&NewMessage, i64)> = batch.iter().map(|(m, now, _)| (m, *now)).collect();
        match self.insert_messages(&rows).await {
            Ok(results) => {
                for ((_, _, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(_) if batch.len() > 1 => {
                for (m, now, reply) in batch {
                    let r = self.insert_messages(&[(&m, now)]).await;
                    let _ = reply.send(r.map(|mut v| v.pop().unwrap_or(Inserted::KeyTaken)));
                }
            }
            Err(e) => {
                if let Some((_, _, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
        self.observe("message_accept", started);
    }

    /// Inserts messages as `queued` with their events, in one transaction.
    async fn insert_messages(&self, rows: &[(&NewMessage, i64)]) -> Result<Vec<Inserted>> {
        let _write = self.write_guard().await;
        let (results, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = GlobalLog::default();
            let mut inserted = HashSet::new();
            for chunk in rows.chunks(ACCEPT_BATCH) {
                let mut qb = message_inserts(chunk);
                let keep = bulk::keep_prepared(&qb);
                let n = qb.build().persistent(keep).execute(&mut *tx).await?.rows_affected();
                if n == chunk.len() as u64 {
                    inserted.extend(chunk.iter().map(|(m, _)| m.id.clone()));
                } else {
                    // An idempotency key was taken: which rows went in.
                    let mut qb = QueryBuilder::new("SELECT id FROM messages WHERE ");
                    bulk::is_in(&mut qb, "id", chunk.iter().map(|(m, _)| m.id.as_str()).collect());
                    inserted.extend(qb.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?);
                }
            }
            let mut results = Vec::with_capacity(rows.len());
            let mut latest = 0;
            for (m, now) in rows {
                if !inserted.contains(&m.id) {
                    results.push(Inserted::KeyTaken);
                    continue;
                }
                status_event(&mut log, *now, Change {
                    id: &m.id, channel: &m.channel, recipient: &m.recipient, from: "", to: "queued",
                    reason: None, code: None, text: None,
                });
                latest = latest.max(*now);
                results.push(Inserted::New);
            }
            let n = append_global_page!(tx, log, latest);
            tx.commit().await?;
            Ok::<_, StoreError>((results, n))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(results)
    }

    pub(crate) async fn message_by_key(&self, key: &str) -> Result<Option<MessageRow>> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE idempotency_key = $1");
        with_pool!(self, p => Ok(sqlx::query_as::<_, MessageRow>(&sql).bind(key).fetch_optional(p).await?))
    }
}

/// Inserts messages as `queued` in one statement; an id or idempotency key
/// already taken skips its row.
pub(super) fn message_inserts<'a, DB: Bulk>(
    rows: &[(&'a NewMessage, i64)],
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO messages (id, channel, status, recipient, request, rendered, template_id, \
         template_version, idempotency_key, request_hash, rfc_message_id, max_retries, due_at, \
         created_at, updated_at, priority) SELECT column1, column2, 'queued', column3, column4, column5, column6, \
         column7, column8, column9, column10, column11, column12, column13, column13, column14 FROM ",
    );
    let text = |get: fn(&'a NewMessage) -> Option<&'a str>| {
        Column::Text(rows.iter().map(|(m, _)| get(m)).collect())
    };
    bulk::rows(
        &mut qb,
        vec![
            text(|m| Some(m.id.as_str())),
            text(|m| Some(m.channel.as_str())),
            text(|m| Some(m.recipient.as_str())),
            text(|m| Some(m.request.as_str())),
            text(|m| Some(m.rendered.as_str())),
            text(|m| m.template_id.as_deref()),
            Column::BigInt(rows.iter().map(|(m, _)| m.template_version).collect()),
            text(|m| m.idempotency_key.as_deref()),
            text(|m| Some(m.request_hash.as_str())),
            text(|m| m.rfc_message_id.as_deref()),
            Column::BigInt(rows.iter().map(|(m, _)| Some(m.max_retries)).collect()),
            Column::BigInt(rows.iter().map(|(m, _)| Some(m.due_at)).collect()),
            Column::BigInt(rows.iter().map(|(_, now)| Some(*now)).collect()),
            Column::BigInt(rows.iter().map(|(m, _)| Some(m.priority)).collect()),
        ],
    );
    // `WHERE true`: SQLite reads `ON` after a bare `FROM …` as a join's.
    qb.push(" WHERE true ON CONFLICT DO NOTHING");
    qb
}

/// The row a message was just inserted as.
fn queued_row(m: &NewMessage, now: i64) -> MessageRow {
    MessageRow {
        id: m.id.clone(),
        channel: m.channel.clone(),
        status: "queued".into(),
        reason: None,
        recipient: m.recipient.clone(),
        request: m.request.clone(),
        rendered: m.rendered.clone(),
        template_id: m.template_id.clone(),
        template_version: m.template_version,
        idempotency_key: m.idempotency_key.clone(),
        request_hash: Some(m.request_hash.clone()),
        provider_id: None,
        rfc_message_id: m.rfc_message_id.clone(),
        max_retries: m.max_retries,
        tries: 0,
        due_at: m.due_at,
        created_at: now,
        updated_at: now,
        sent_at: None,
        final_at: None,
        priority: m.priority,
        opens: 0,
        clicks: 0,
        provider: None,
        read_at: None,
    }
}

fn same_request(found: MessageRow, hash: &str) -> Result<Accepted> {
    if found.request_hash.as_deref() == Some(hash) {
        Ok(Accepted::Existing(found))
    } else {
        Err(StoreError::Conflict("idempotency_key_reused".into()))
    }
}
