//! Call rows: every attempt of a campaign and every one-off call, read back
//! as typed [`CallRow`]s (the API renders them), and counts of a campaign's
//! attempts.

use serde_json::Value;
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::store::with_pool;

const CALL_COLUMNS: &str = "id, campaign_id, target_id, destination_index, attempt, agent_id, trunk, status, \
    sip_call_id, from_uri, to_uri, outcome, sip_code, q850_cause, result, hangup_by, reason, created_at, \
    invite_sent_at, ringing_at, answered_at, ended_at, duration_ms, scheduled_at, spec, attempts, \
    answered_by, amd_ms";

/// Filters of `GET /v1/calls`.
#[derive(Debug, Default, Clone)]
pub struct CallFilter<'a> {
    pub campaign_id: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub status: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

/// A campaign's attempts counted, for its end-of-run summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSummary {
    /// Attempts by outcome (`in_progress` for live ones), by name.
    pub outcomes: Vec<(String, i64)>,
    /// Answered attempts by the agent's result (`none` without one), by name.
    pub results: Vec<(String, i64)>,
    /// Every attempt.
    pub attempts: i64,
    /// Targets dialed at least once.
    pub targets_dialed: i64,
}

impl Store {
    /// Counts a campaign's attempts by outcome and by result.
    pub async fn campaign_call_summary(&self, campaign_id: &str) -> Result<CallSummary> {
        let outcomes: Vec<(String, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT COALESCE(outcome, 'in_progress'), COUNT(*) FROM calls WHERE campaign_id = $1 \
             GROUP BY 1 ORDER BY 1")
            .bind(campaign_id).fetch_all(p).await)?;
        let results: Vec<(String, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT COALESCE(result, 'none'), COUNT(*) FROM calls WHERE campaign_id = $1 \
             AND outcome = 'answered' GROUP BY 1 ORDER BY 1")
            .bind(campaign_id).fetch_all(p).await)?;
        let (attempts, targets_dialed): (i64, i64) = with_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT target_id) FROM calls WHERE campaign_id = $1")
            .bind(campaign_id).fetch_one(p).await)?;
        Ok(CallSummary {
            outcomes,
            results,
            attempts,
            targets_dialed,
        })
    }

    /// The variables of targets whose answered call in `campaign_id` ended
    /// with the agent's `result` (the demo's follow-up e-mails).
    pub async fn targets_with_result(
        &self,
        campaign_id: &str,
        result: &str,
    ) -> Result<Vec<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT t.variables FROM calls c JOIN targets t ON t.id = c.target_id \
             WHERE c.campaign_id = $1 AND c.result = $2 ORDER BY t.id")
            .bind(campaign_id).bind(result).fetch_all(p).await?))
    }

    /// Attempts of a campaign by outcome, and how many are live.
    pub async fn campaign_call_stats(
        &self,
        campaign_id: &str,
    ) -> Result<(Vec<(String, i64)>, i64)> {
        with_pool!(self, p => {
            let by: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT outcome, COUNT(*) FROM calls WHERE campaign_id = $1 GROUP BY outcome")
                .bind(campaign_id).fetch_all(p).await?;
            let live = by.iter().filter(|(o, _)| o.is_none()).map(|(_, n)| n).sum();
            Ok((by.into_iter().filter_map(|(o, n)| o.map(|o| (o, n))).collect(), live))
        })
    }

    /// Attempts a campaign started since `since_ms`. Ids are UUIDv7, whose
    /// first 48 bits are the creation time, so this is a range on the index.
    pub async fn campaign_calls_since(&self, campaign_id: &str, since_ms: i64) -> Result<i64> {
        let ms = since_ms.max(0) as u64;
        let lower = format!("{:08x}-{:04x}-", ms >> 16, ms & 0xffff);
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM calls WHERE campaign_id = $1 AND id >= $2")
            .bind(campaign_id).bind(&lower).fetch_one(p).await?))
    }
    /// A page of calls, filtered.
    pub async fn list_calls(
        &self,
        f: &CallFilter<'_>,
        page: &super::PageRequest,
    ) -> Result<super::Page<CallRow>> {
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id > $1");
        let mut n = 2;
        let texts = [
            ("campaign_id", f.campaign_id),
            ("target_id", f.target_id),
            ("outcome", f.outcome),
            ("status", f.status),
            ("agent_id", f.agent_id),
        ];
        for (col, v) in texts {
            if v.is_some() {
                sql.push_str(&format!(" AND {col} = ${n}"));
                n += 1;
            }
        }
        for (cond, v) in [
            ("created_at >= ", f.created_after),
            ("created_at < ", f.created_before),
        ] {
            if v.is_some() {
                sql.push_str(&format!(" AND {cond}${n}"));
                n += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${n}"));
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query(&sql).bind(page.after_or_start());
            for v in texts.iter().filter_map(|(_, v)| *v) {
                q = q.bind(v);
            }
            for v in [f.created_after, f.created_before].into_iter().flatten() {
                q = q.bind(v);
            }
            let rows = q.bind(page.fetch_limit()).fetch_all(p).await?;
            rows.iter().map(decode_call_row).collect::<Result<Vec<_>>>()
        })?;
        Ok(page.finish(rows, |c: &CallRow| c.id.clone()))
    }

    /// A call row.
    pub async fn get_call(&self, id: &str) -> Result<CallRow> {
        with_pool!(self, p => {
            let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"))
                .bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            decode_call_row(&row)
        })
    }
}

/// A call (an attempt of a campaign, or a one-off call) as stored.
/// Timestamps are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub id: String,
    pub campaign_id: Option<String>,
    pub target_id: Option<String>,
    pub destination_index: Option<i32>,
    pub attempt: i32,
    pub agent_id: Option<String>,
    pub trunk: Option<String>,
    pub status: String,
    pub sip_call_id: Option<String>,
    pub from_uri: Option<String>,
    pub to_uri: Option<String>,
    pub outcome: Option<String>,
    pub sip_code: Option<i32>,
    pub q850_cause: Option<i32>,
    pub result: Option<String>,
    pub hangup_by: Option<String>,
    pub reason: Option<String>,
    /// The answering-machine detector's verdict, and when (ms after the answer).
    pub answered_by: Option<String>,
    pub amd_ms: Option<i64>,
    pub created_at: Option<i64>,
    pub invite_sent_at: Option<i64>,
    pub ringing_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub scheduled_at: Option<i64>,
    /// A one-off call's request as accepted (`Null` for a campaign's attempt).
    pub request: Value,
    /// A one-off call's earlier tries.
    pub attempts: Value,
}

fn decode_call_row<R: Row>(row: &R) -> Result<CallRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let json = |c: &str| -> Result<Value> {
        Ok(serde_json::from_str::<Value>(&row.try_get::<String, _>(c)?).unwrap_or(Value::Null))
    };
    Ok(CallRow {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        target_id: row.try_get("target_id")?,
        destination_index: row.try_get("destination_index")?,
        attempt: row.try_get("attempt")?,
        agent_id: row.try_get("agent_id")?,
        trunk: row.try_get("trunk")?,
        status: row.try_get("status")?,
        sip_call_id: row.try_get("sip_call_id")?,
        from_uri: row.try_get("from_uri")?,
        to_uri: row.try_get("to_uri")?,
        outcome: row.try_get("outcome")?,
        sip_code: row.try_get("sip_code")?,
        q850_cause: row.try_get("q850_cause")?,
        result: row.try_get("result")?,
        hangup_by: row.try_get("hangup_by")?,
        reason: row.try_get("reason")?,
        answered_by: row.try_get("answered_by")?,
        amd_ms: row.try_get("amd_ms")?,
        created_at: row.try_get("created_at")?,
        invite_sent_at: row.try_get("invite_sent_at")?,
        ringing_at: row.try_get("ringing_at")?,
        answered_at: row.try_get("answered_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_ms: row.try_get("duration_ms")?,
        scheduled_at: row.try_get("scheduled_at")?,
        request: json("spec")?,
        attempts: json("attempts")?,
    })
}
