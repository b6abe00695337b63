//! A bulk of notifications written a chunk at a time: each chunk's
//! notifications, their deliveries and the messages of the deliveries that
//! start now go in one transaction with their events, so a bulk of 100,000
//! is a hundred transactions, not 300,000. A notification whose idempotency
//! key is already taken (a bulk sent again after a crash) is skipped with
//! its deliveries and messages.

use std::collections::HashSet;

use sqlx::QueryBuilder;

use super::accepts::message_inserts;
use super::bulk::{self, Bulk, Column};
use super::global_events::{append_global_page, GlobalLog};
use super::messages::{status_event as message_event, Change, NewMessage};
use super::notifications::{new_delivery_rows, status_event, NewNotification};
use super::{BeginWrite, Result, Store, StoreError};
use crate::store::with_pool;

/// Notifications per transaction in a bulk.
pub const BULK_CHUNK: usize = 500;

impl Store {
    /// Writes a chunk of a bulk: `ns` with their deliveries (each in the
    /// status given: `queued` when its message is in `messages`), and those
    /// messages. Returns the ids of the notifications written (the others'
    /// keys were taken).
    pub async fn accept_bulk_chunk(
        &self,
        ns: &[NewNotification],
        messages: &[(String, NewMessage)],
        now: i64,
    ) -> Result<HashSet<String>> {
        if ns.is_empty() {
            return Ok(HashSet::new());
        }
        let _write = self.write_guard().await;
        let (inserted, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut qb = notification_inserts(ns, now);
            let n = qb.build().execute(&mut *tx).await?.rows_affected();
            let inserted: HashSet<String> = if n == ns.len() as u64 {
                ns.iter().map(|n| n.id.clone()).collect()
            } else {
                let mut qb = QueryBuilder::new("SELECT id FROM notifications WHERE created_at = ");
                qb.push_bind(now).push(" AND ");
                bulk::is_in(&mut qb, "id", ns.iter().map(|n| n.id.as_str()).collect());
                qb.build_query_scalar::<String>().fetch_all(&mut *tx).await?.into_iter().collect()
            };
            let written: Vec<&NewNotification> = ns.iter().filter(|n| inserted.contains(&n.id)).collect();
            let mut log = GlobalLog::default();
            if !written.is_empty() {
                delivery_inserts(&written, now).build().execute(&mut *tx).await?;
                let rows: Vec<(&NewMessage, i64)> = messages
                    .iter()
                    .filter(|(nid, _)| inserted.contains(nid))
                    .map(|(_, m)| (m, now))
                    .collect();
                for chunk in rows.chunks(1_000) {
                    message_inserts(chunk).build().execute(&mut *tx).await?;
                }
                for (m, _) in &rows {
                    message_event(&mut log, now, Change {
                        id: &m.id, channel: &m.channel, recipient: &m.recipient, from: "", to: "queued",
                        reason: None, code: None, text: None,
                    });
                }
                for n in &written {
                    status_event(&mut log, now, &n.id, "", "queued", &new_delivery_rows(n, now));
                }
            }
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((inserted, logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(inserted)
    }
}

/// The chunk's notifications in one statement; a taken id or key skips its row.
fn notification_inserts<'a, DB: Bulk>(ns: &'a [NewNotification], now: i64) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO notifications (id, status, strategy, fallback_after_ms, recipient, request, idempotency_key, \
         request_hash, bulk_id, created_at, updated_at) SELECT column1, 'queued', column2, column3, column4, column5, \
         column6, column7, column8, column9, column9 FROM ",
    );
    let text = |get: fn(&'a NewNotification) -> Option<&'a str>| {
        Column::Text(ns.iter().map(get).collect())
    };
    bulk::rows(
        &mut qb,
        vec![
            text(|n| Some(n.id.as_str())),
            text(|n| Some(n.strategy.as_str())),
            Column::BigInt(ns.iter().map(|n| n.fallback_after_ms).collect()),
            text(|n| Some(n.recipient.as_str())),
            text(|n| Some(n.request.as_str())),
            text(|n| n.idempotency_key.as_deref()),
            text(|n| Some(n.request_hash.as_str())),
            text(|n| n.bulk_id.as_deref()),
            Column::BigInt(ns.iter().map(|_| Some(now)).collect()),
        ],
    );
    qb.push(" WHERE true ON CONFLICT DO NOTHING");
    qb
}

/// The deliveries of the notifications written, in one statement; one that
/// starts with its message written (`queued`) keeps no pending row.
fn delivery_inserts<'a, DB: Bulk>(ns: &[&'a NewNotification], now: i64) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO notification_deliveries (notification_id, position, channel, status, message_id, pending, \
         started_at, deadline_at, updated_at) SELECT column1, column2, column3, column4, column5, column6, column7, \
         column8, column9 FROM ",
    );
    let all: Vec<(&'a str, i64, &'a super::notifications::NewDelivery)> = ns
        .iter()
        .flat_map(|n| {
            n.deliveries
                .iter()
                .enumerate()
                .map(move |(i, d)| (n.id.as_str(), i as i64, d))
        })
        .collect();
    let starts = |s: &str| s == "starting" || s == "queued";
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(all.iter().map(|(id, _, _)| Some(*id)).collect()),
            Column::BigInt(all.iter().map(|(_, i, _)| Some(*i)).collect()),
            Column::Text(
                all.iter()
                    .map(|(_, _, d)| Some(d.channel.as_str()))
                    .collect(),
            ),
            Column::Text(all.iter().map(|(_, _, d)| Some(d.status)).collect()),
            Column::Text(
                all.iter()
                    .map(|(_, _, d)| Some(d.message_id.as_str()))
                    .collect(),
            ),
            Column::Text(
                all.iter()
                    .map(|(_, _, d)| (d.status != "queued").then_some(d.pending.as_str()))
                    .collect(),
            ),
            Column::BigInt(
                all.iter()
                    .map(|(_, _, d)| starts(d.status).then_some(now))
                    .collect(),
            ),
            Column::BigInt(all.iter().map(|(_, _, d)| d.deadline_at).collect()),
            Column::BigInt(all.iter().map(|_| Some(now)).collect()),
        ],
    );
    qb
}

impl Store {
    /// The answer given to a bulk with this idempotency key, with its
    /// request hash.
    pub async fn bulk_answer(&self, key: &str) -> Result<Option<(String, String)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, String)>(
            "SELECT request_hash, answer FROM notification_bulks WHERE idempotency_key = $1")
            .bind(key).fetch_optional(p).await?))
    }

    /// Keeps a bulk's answer under its key (the first one written wins).
    pub async fn keep_bulk_answer(
        &self,
        id: &str,
        key: &str,
        hash: &str,
        answer: &str,
        now: i64,
    ) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => sqlx::query(
            "INSERT INTO notification_bulks (id, idempotency_key, request_hash, answer, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING")
            .bind(id).bind(key).bind(hash).bind(answer).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
