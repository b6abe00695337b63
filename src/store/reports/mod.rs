//! Delivery reports and sends left in doubt.
//!
//! A report (an SMPP receipt, an e-mail DSN) is acknowledged to its peer
//! only once [`Store::apply_reports`] has applied it to its message or kept
//! it in `message_reports`: a report that overtook the record of its send
//! waits there for [`Store::record_sends`] (see [`settle_kept!`]), and one
//! whose send's acknowledgement was lost in a crash waits for
//! [`Store::recover_messages`], which matches it to the interrupted send by
//! the recipient's address. So a crash neither loses a report nor, on a
//! transport whose reports settle doubt, sends twice a message the peer
//! took.
//!
//! Must not: decide statuses beyond "a report moves a `sent` message to its
//! status"; match a report by address to anything but a send left in doubt.

use std::collections::{HashMap, HashSet};

use sqlx::FromRow;

use super::global_events::{append_global_page, GlobalLog};
use super::messages::{status_event, Change, MessageRow, ReportRecord, SendRecord};
use super::{BeginWrite, Result, Store, StoreError};
use crate::store::with_pool;

mod sort;
use sort::{keep_addresses, keep_inserts, report_lookup, sort_reports, FoundMessage};

/// How long a report that matches no message is kept (the receipts of a
/// long SMS's later parts, another system's messages on the same account),
/// at least; longer when sends wait longer in doubt.
const KEEP_UNMATCHED_MS: i64 = 3_600_000;
/// Interrupted sends looked at per recovery pass.
const RECOVER_BATCH: i64 = 1_000;
/// What an in-doubt send settled by a report says on its attempt.
const SETTLED_TEXT: &str = "the acknowledgement was lost in a restart; the peer's delivery report shows it took the message";

/// A kept report.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct KeptReport {
    pub id: i64,
    pub channel: String,
    pub message_id: Option<String>,
    pub provider_id: Option<String>,
    pub address: Option<String>,
    pub status: String,
    pub code: Option<String>,
    pub text: Option<String>,
    pub suppress: i32,
    pub received_at: i64,
}

pub(crate) const KEPT_COLUMNS: &str =
    "id, channel, message_id, provider_id, address, status, code, text, suppress, received_at";

/// The form addresses are matched in: an SMS number's digits (a receipt's
/// source_addr has no `+`), an e-mail address lower-cased.
pub fn address_key(channel: &str, address: &str) -> String {
    match channel {
        "sms" => address.chars().filter(char::is_ascii_digit).collect(),
        _ => address.trim().to_ascii_lowercase(),
    }
}

/// One report to apply to a `sent` message.
pub(crate) struct Apply<'a> {
    pub id: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub status: &'a str,
    pub code: Option<&'a str>,
    pub text: Option<&'a str>,
    pub suppress: bool,
}

/// Moves `sent` messages to their reports' statuses in one statement (a
/// message no longer `sent` is left alone), with each one's event and, for
/// a bounce, the recipient's suppression. At most one report per message.
macro_rules! apply_all {
    ($tx:expr, $log:expr, $now:expr, $applies:expr) => {{
        let applies: &[$crate::store::reports::Apply<'_>] = $applies;
        if !applies.is_empty() {
            let mut qb = sqlx::QueryBuilder::new(
                "UPDATE messages SET status = v.column2, reason = v.column3, final_at = ",
            );
            qb.push_bind($now)
                .push(", updated_at = ")
                .push_bind($now)
                .push(" FROM ");
            $crate::store::bulk::rows(
                &mut qb,
                vec![
                    $crate::store::bulk::Column::Text(applies.iter().map(|a| Some(a.id)).collect()),
                    $crate::store::bulk::Column::Text(
                        applies.iter().map(|a| Some(a.status)).collect(),
                    ),
                    $crate::store::bulk::Column::Text(applies.iter().map(|a| a.text).collect()),
                ],
            );
            qb.push(
                " WHERE messages.id = v.column1 AND messages.status = 'sent' RETURNING messages.id",
            );
            let keep = $crate::store::bulk::keep_prepared(&qb);
            let moved: std::collections::HashSet<String> = qb
                .build_query_scalar::<String>()
                .persistent(keep)
                .fetch_all(&mut *$tx)
                .await?
                .into_iter()
                .collect();
            for a in applies.iter().filter(|a| moved.contains(a.id)) {
                if a.suppress {
                    sqlx::query(
                        "INSERT INTO suppressions (channel, address, reason, created_at) \
                         VALUES ($1, $2, 'bounced', $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(a.channel)
                    .bind(a.recipient)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                }
                $crate::store::messages::status_event(
                    &mut $log,
                    $now,
                    $crate::store::messages::Change {
                        id: a.id,
                        channel: a.channel,
                        recipient: a.recipient,
                        from: "sent",
                        to: a.status,
                        reason: None,
                        code: a.code,
                        text: a.text,
                    },
                );
            }
        }
    }};
}
pub(crate) use apply_all;

/// Applies the kept reports of messages that have just moved to `sent`
/// (`sent`: (id, channel, provider id, recipient)) and drops them, in the
/// caller's transaction: one read, one update, one delete.
macro_rules! settle_kept {
    ($tx:expr, $log:expr, $now:expr, $sent:expr) => {{
        let sent: &[(String, String, Option<String>, String)] = $sent;
        if !sent.is_empty() {
            let mut qb = sqlx::QueryBuilder::new(format!(
                "SELECT {} FROM message_reports WHERE ",
                $crate::store::reports::KEPT_COLUMNS
            ));
            $crate::store::bulk::is_in(
                &mut qb,
                "message_id",
                sent.iter().map(|s| s.0.as_str()).collect(),
            );
            let pids: Vec<&str> = sent.iter().filter_map(|s| s.2.as_deref()).collect();
            if !pids.is_empty() {
                let channels: Vec<&str> = sent
                    .iter()
                    .map(|s| s.1.as_str())
                    .collect::<std::collections::HashSet<_>>()
                    .into_iter()
                    .collect();
                qb.push(" OR (");
                $crate::store::bulk::is_in(&mut qb, "channel", channels);
                qb.push(" AND ");
                $crate::store::bulk::is_in(&mut qb, "provider_id", pids);
                qb.push(")");
            }
            let kept: Vec<$crate::store::reports::KeptReport> =
                qb.build_query_as().fetch_all(&mut *$tx).await?;
            let mut applies = Vec::new();
            let mut taken = std::collections::HashSet::new();
            for k in &kept {
                let Some((id, channel, _, recipient)) =
                    sent.iter().find(|(id, channel, pid, _)| {
                        *channel == k.channel
                            && (k.message_id.as_deref() == Some(id.as_str())
                                || (k.provider_id.is_some() && k.provider_id == *pid))
                    })
                else {
                    continue;
                };
                if taken.insert(id.as_str()) {
                    applies.push($crate::store::reports::Apply {
                        id,
                        channel,
                        recipient,
                        status: k.status.as_str(),
                        code: k.code.as_deref(),
                        text: k.text.as_deref(),
                        suppress: k.suppress != 0,
                    });
                }
            }
            $crate::store::reports::apply_all!($tx, $log, $now, &applies);
            if !kept.is_empty() {
                let mut qb = sqlx::QueryBuilder::new(
                    "DELETE FROM message_reports WHERE id IN (SELECT v.column1 FROM ",
                );
                $crate::store::bulk::rows(
                    &mut qb,
                    vec![$crate::store::bulk::Column::BigInt(
                        kept.iter().map(|k| Some(k.id)).collect(),
                    )],
                );
                qb.push(")");
                qb.build().execute(&mut *$tx).await?;
            }
        }
    }};
}
pub(crate) use settle_kept;

/// A kept report and its `sent` message: (report id, message id,
/// recipient, status, code, text, suppress).
type OvertakenRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i32,
);

/// What a recovery pass decided for one interrupted send.
enum Recovery<'a> {
    /// Settled by a kept report: the peer took it.
    Settled(&'a MessageRow, &'a KeptReport),
    /// Still waiting for a report.
    Waiting,
    /// Sent again (or failed, retries spent).
    Requeue(Box<SendRecord>),
}

/// Decides the interrupted sends of one channel: each one left in doubt
/// (no provider id recorded) takes the first unused kept report from its
/// recipient that came after it was claimed; one without waits until
/// `in_doubt_ms` after its claim, then is sent again. Pure.
fn decide_recovery<'a>(
    stale: &'a [MessageRow],
    kept: &'a [KeptReport],
    now: i64,
    in_doubt_ms: i64,
) -> Vec<Recovery<'a>> {
    let mut used = HashSet::new();
    let mut by_address: HashMap<&str, Vec<&KeptReport>> = HashMap::new();
    for k in kept {
        if let Some(a) = k.address.as_deref() {
            by_address.entry(a).or_default().push(k);
        }
    }
    stale
        .iter()
        .map(|m| {
            if in_doubt_ms > 0 && m.provider_id.is_none() {
                let key = address_key(&m.channel, &m.recipient);
                let report = by_address.get(key.as_str()).and_then(|ks| {
                    ks.iter()
                        .find(|k| k.received_at >= m.updated_at && !used.contains(&k.id))
                });
                if let Some(k) = report {
                    used.insert(k.id);
                    return Recovery::Settled(m, k);
                }
                if now < m.updated_at + in_doubt_ms {
                    return Recovery::Waiting;
                }
            }
            let spent = m.tries > m.max_retries;
            Recovery::Requeue(Box::new(SendRecord {
                id: m.id.clone(),
                attempt: m.tries,
                status: if spent { "failed" } else { "queued" },
                result: "interrupted",
                reason: spent.then(|| "retries_exhausted".to_string()),
                code: None,
                text: Some("herald stopped while sending".into()),
                provider_id: None,
                provider: None,
                due_at: Some(now),
                suppress: Vec::new(),
            }))
        })
        .collect()
}

impl Store {
    /// Applies delivery reports in one transaction: a report on a `sent`
    /// message moves it to the report's status; one whose message is still
    /// `sending`, or that matches no message, is kept (once per provider
    /// id) until its message can take it; one on a message already final is
    /// dropped. When this returns, every report is applied or kept, and the
    /// peer may be told so.
    pub async fn apply_reports(&self, reports: &[ReportRecord], now: i64) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let _reports = self.report_lock.lock().await;
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = GlobalLog::default();
            // Every report's message, in one read.
            let found: Vec<FoundMessage> = report_lookup(reports).build_query_as().fetch_all(&mut *tx).await?;
            let (applies, keeps) = sort_reports(reports, &found);
            apply_all!(tx, log, now, &applies);
            if !keeps.is_empty() {
                let addresses = keep_addresses(&keeps);
                keep_inserts(&keeps, &addresses, now).build().execute(&mut *tx).await?;
            }
            let n = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(n)
        })?;
        drop(_write);
        self.logged(logged);
        self.observe("message_report", started);
        Ok(())
    }

    /// Sends of `channel` left `sending` by a node whose lease ran out (a
    /// crash). With `in_doubt_ms` 0 each goes back to `queued`, due now (or
    /// `failed` when its retries are spent), its attempt closed as
    /// `interrupted`. With `in_doubt_ms` > 0 (the channel's reports settle
    /// doubt) a send with no provider id recorded is first matched to a kept
    /// report from its recipient: found, it is `sent` (the peer took it)
    /// and the report applied; not found, it waits until `in_doubt_ms`
    /// after its claim. Also drops unmatched reports past keeping. Answers
    /// how many sends it recovered.
    pub async fn recover_messages(
        &self,
        channel: &str,
        now: i64,
        in_doubt_ms: i64,
    ) -> Result<usize> {
        let sql = format!(
            "SELECT {} FROM messages WHERE status = 'sending' AND channel = $1 AND lease_expires_at < $2 \
             ORDER BY lease_expires_at LIMIT {RECOVER_BATCH}",
            super::messages::COLUMNS
        );
        let keep_ms = KEEP_UNMATCHED_MS.max(2 * in_doubt_ms);
        {
            let _write = self.write_guard().await;
            with_pool!(self, p => sqlx::query("DELETE FROM message_reports WHERE channel = $1 AND received_at < $2")
                .bind(channel).bind(now - keep_ms).execute(p).await.map(|r| r.rows_affected()))?;
        }
        self.settle_overtaken(channel, now).await?;
        let stale: Vec<MessageRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(channel).bind(now).fetch_all(p).await)?;
        if stale.is_empty() {
            return Ok(0);
        }
        let addresses: Vec<String> = stale
            .iter()
            .filter(|m| in_doubt_ms > 0 && m.provider_id.is_none())
            .map(|m| address_key(channel, &m.recipient))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let kept: Vec<KeptReport> = if addresses.is_empty() {
            Vec::new()
        } else {
            with_pool!(self, p => {
                let mut qb = sqlx::QueryBuilder::new(format!(
                    "SELECT {KEPT_COLUMNS} FROM message_reports WHERE channel = "));
                qb.push_bind(channel).push(" AND provider_id IS NOT NULL AND address IN (");
                let mut sep = qb.separated(", ");
                for a in &addresses {
                    sep.push_bind(a.as_str());
                }
                qb.push(") ORDER BY received_at, id");
                qb.build_query_as().fetch_all(p).await
            })?
        };
        let decided = decide_recovery(&stale, &kept, now, in_doubt_ms);
        let mut requeue = Vec::new();
        let mut settled = Vec::new();
        for d in decided {
            match d {
                Recovery::Requeue(r) => requeue.push(*r),
                Recovery::Settled(m, k) => settled.push((m, k)),
                Recovery::Waiting => {}
            }
        }
        let recovered = requeue.len() + settled.len();
        self.record_sends(&requeue, now).await?;
        if !settled.is_empty() {
            self.settle_in_doubt(&settled, now).await?;
            tracing::info!(channel, settled = settled.len(), "sends interrupted by a restart were settled by their delivery reports; not sent again");
        }
        Ok(recovered)
    }

    /// Kept reports whose message is `sent` by now: applied and dropped.
    /// (A report kept by another node while this one recorded the send
    /// misses the record's own look at kept reports.)
    async fn settle_overtaken(&self, channel: &str, now: i64) -> Result<()> {
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let found: Vec<OvertakenRow> = sqlx::query_as(
                "SELECT r.id, m.id, m.recipient, r.status, r.code, r.text, r.suppress FROM message_reports r \
                 JOIN messages m ON m.channel = r.channel AND m.provider_id = r.provider_id \
                 WHERE r.channel = $1 AND m.status = 'sent' LIMIT 1000")
                .bind(channel).fetch_all(&mut *tx).await?;
            let mut log = GlobalLog::default();
            let mut seen = HashSet::new();
            let applies: Vec<Apply> = found.iter()
                .filter(|f| seen.insert(f.1.as_str()))
                .map(|(_, id, recipient, status, code, text, suppress)| Apply {
                    id, channel, recipient, status, code: code.as_deref(), text: text.as_deref(), suppress: *suppress != 0,
                })
                .collect();
            apply_all!(tx, log, now, &applies);
            for (kept, ..) in &found {
                sqlx::query("DELETE FROM message_reports WHERE id = $1").bind(kept).execute(&mut *tx).await?;
            }
            let n = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(n)
        })?;
        drop(_write);
        self.logged(logged);
        Ok(())
    }

    /// In-doubt sends the peer took (each with its report): `sending` →
    /// `sent` with the report's provider id, the attempt closed as
    /// accepted, then the report applied and dropped; one transaction.
    async fn settle_in_doubt(
        &self,
        settled: &[(&MessageRow, &KeptReport)],
        now: i64,
    ) -> Result<()> {
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = GlobalLog::default();
            let mut applies = Vec::new();
            for (m, k) in settled {
                let moved = sqlx::query("UPDATE messages SET status = 'sent', provider_id = $2, sent_at = $3, \
                                         lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
                                         WHERE id = $1 AND status = 'sending' AND provider_id IS NULL")
                    .bind(&m.id).bind(&k.provider_id).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
                if !moved {
                    continue;
                }
                sqlx::query("UPDATE message_attempts SET ended_at = $3, result = 'accepted', text = $4 \
                             WHERE message_id = $1 AND attempt = $2 AND ended_at IS NULL")
                    .bind(&m.id).bind(m.tries).bind(now).bind(SETTLED_TEXT).execute(&mut *tx).await?;
                status_event(&mut log, now, Change {
                    id: &m.id, channel: &m.channel, recipient: &m.recipient, from: "sending", to: "sent",
                    reason: None, code: None, text: Some(SETTLED_TEXT),
                });
                applies.push(Apply {
                    id: &m.id, channel: &m.channel, recipient: &m.recipient, status: &k.status,
                    code: k.code.as_deref(), text: k.text.as_deref(), suppress: k.suppress != 0,
                });
                sqlx::query("DELETE FROM message_reports WHERE id = $1").bind(k.id).execute(&mut *tx).await?;
            }
            apply_all!(tx, log, now, &applies);
            let n = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(n)
        })?;
        drop(_write);
        self.logged(logged);
        Ok(())
    }

    /// Reports kept, for a channel (tests, `/metrics`).
    pub async fn kept_reports(&self, channel: &str) -> Result<i64> {
        with_pool!(self, p => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM message_reports WHERE channel = $1")
            .bind(channel).fetch_one(p).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, to: &str, claimed_at: i64, provider_id: Option<&str>) -> MessageRow {
        MessageRow {
            id: id.into(),
            channel: "sms".into(),
            status: "sending".into(),
            reason: None,
            recipient: to.into(),
            request: "{}".into(),
            rendered: "{}".into(),
            template_id: None,
            template_version: None,
            idempotency_key: None,
            request_hash: None,
            provider_id: provider_id.map(str::to_string),
            rfc_message_id: None,
            max_retries: 3,
            tries: 1,
            due_at: 0,
            created_at: 0,
            updated_at: claimed_at,
            sent_at: None,
            final_at: None,
            priority: 1,
            opens: 0,
            clicks: 0,
            provider: None,
            read_at: None,
        }
    }

    fn report(id: i64, address: &str, at: i64) -> KeptReport {
        KeptReport {
            id,
            channel: "sms".into(),
            message_id: None,
            provider_id: Some(format!("p{id}")),
            address: Some(address.into()),
            status: "delivered".into(),
            code: None,
            text: None,
            suppress: 0,
            received_at: at,
        }
    }

    fn kinds(d: &[Recovery<'_>]) -> Vec<String> {
        d.iter()
            .map(|r| match r {
                Recovery::Settled(m, k) => format!("{}<-{}", m.id, k.id),
                Recovery::Waiting => "wait".into(),
                Recovery::Requeue(r) => format!("{}:{}", r.id, r.status),
            })
            .collect()
    }

    #[test]
    fn in_doubt_sends_take_reports_from_their_recipient_after_their_claim() {
        let stale = vec![
            message("a", "+15550001111", 100, None),
            message("b", "+15550001111", 100, None),
            message("c", "+15550002222", 100, None),
            message("d", "+15550003333", 100, Some("x")),
        ];
        let kept = vec![
            // Before the claim: another, earlier message's receipt.
            report(1, "15550002222", 50),
            report(2, "15550001111", 120),
            report(3, "15550001111", 130),
        ];
        let cases: [(i64, i64, Vec<&str>); 3] = [
            // Within the wait: two settled, c waits, d (acknowledged) requeued.
            (1_000, 5_000, vec!["a<-2", "b<-3", "wait", "d:queued"]),
            // Past the wait: c is sent again.
            (9_000, 5_000, vec!["a<-2", "b<-3", "c:queued", "d:queued"]),
            // Without doubt-settling: everything goes back at once.
            (
                1_000,
                0,
                vec!["a:queued", "b:queued", "c:queued", "d:queued"],
            ),
        ];
        for (now, wait, want) in cases {
            assert_eq!(
                kinds(&decide_recovery(&stale, &kept, now, wait)),
                want,
                "now {now}, wait {wait}"
            );
        }
    }

    #[test]
    fn one_report_settles_one_send_only() {
        let stale = vec![
            message("a", "+15550001111", 100, None),
            message("b", "+15550001111", 100, None),
        ];
        let kept = vec![report(7, "15550001111", 150)];
        assert_eq!(
            kinds(&decide_recovery(&stale, &kept, 200, 5_000)),
            vec!["a<-7", "wait"]
        );
    }

    #[test]
    fn addresses_compare_as_digits_or_lower_case() {
        assert_eq!(address_key("sms", "+1 (555) 000-1111"), "15550001111");
        assert_eq!(address_key("email", " A@B.io "), "a@b.io");
    }
}
