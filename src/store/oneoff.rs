//! One-off calls (`POST /v1/calls`): a call row that keeps its own retries.
//! It is `pending` (dial now) or `scheduled` (at `scheduled_at`), becomes
//! `in_progress` while dialed, and ends `completed`, `failed` or `cancelled`;
//! between tries it is `scheduled` again and the finished try's summary is
//! appended to `attempts`.

use serde_json::Value;
use sqlx::Row;

use super::recording::CallFinal;
use super::{dialect, BeginWrite, Result, Store, StoreError};
use crate::domain::specs::CallRequest;
use crate::store::with_pool;

/// A one-off call to store.
#[derive(Debug, Clone)]
pub struct NewOneOff<'a> {
    pub to: &'a str,
    pub from: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub trunk: &'a str,
    /// `pending` or `scheduled`.
    pub status: &'a str,
    pub scheduled_at: i64,
    /// The parsed request.
    pub spec: &'a CallRequest,
}

/// A one-off call claimed for dialing.
#[derive(Debug, Clone)]
pub struct OneOffClaim {
    pub id: String,
    pub to: String,
    pub from: Option<String>,
    pub trunk: String,
    pub spec: CallRequest,
    /// This try's number (1 for the first).
    pub attempt: i32,
}

impl Store {
    pub async fn insert_one_off(&self, c: &NewOneOff<'_>, now: i64) -> Result<String> {
        let id = super::new_id();
        self.insert_one_off_as(&id, c, now).await?;
        Ok(id)
    }

    /// Inserts a one-off call under a given id; a call already stored under
    /// it is kept as it is (a notification's voice delivery started twice).
    pub async fn insert_one_off_as(&self, id: &str, c: &NewOneOff<'_>, now: i64) -> Result<()> {
        let spec = crate::domain::specs::to_document(c.spec).to_string();
        with_pool!(self, p => sqlx::query(
            "INSERT INTO calls (id, attempt, agent_id, trunk, status, to_uri, from_uri, spec, created_at, scheduled_at) \
             VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING")
            .bind(id).bind(c.agent_id).bind(c.trunk).bind(c.status).bind(c.to).bind(c.from).bind(&spec)
            .bind(now).bind(c.scheduled_at).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    /// How many one-off calls are due at `now`, per agent (`None`: calls
    /// without an agent).
    pub async fn due_one_offs_by_agent(&self, now: i64) -> Result<Vec<(Option<String>, i64)>> {
        with_pool!(self, p => {
            let rows = sqlx::query("SELECT agent_id, COUNT(*) AS n FROM calls WHERE status IN ('pending', 'scheduled') \
                AND scheduled_at <= $1 GROUP BY agent_id")
                .bind(now).fetch_all(p).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<Option<String>, _>("agent_id")?, r.try_get::<i64, _>("n")?)))
                .collect::<Result<Vec<_>>>()
        })
    }

    /// Claims up to `limit` one-off calls of `agent` (`None`: calls without
    /// an agent) due at `now`, oldest first (skipping ones another node holds).
    pub async fn claim_due_one_offs(
        &self,
        node_id: &str,
        now: i64,
        agent: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OneOffClaim>> {
        let of_agent = if agent.is_some() {
            "agent_id = $3"
        } else {
            "agent_id IS NULL AND $3 IS NULL"
        };
        let select = format!(
            "SELECT id, to_uri, from_uri, trunk, spec, attempt FROM calls WHERE status IN ('pending', 'scheduled') \
             AND scheduled_at <= $1 AND {of_agent} ORDER BY scheduled_at LIMIT $2"
        );
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let select = format!("{select}{}", dialect::skip_locked(p));
            let mut tx = p.begin_write().await?;
            let rows = sqlx::query(&select).bind(now).bind(limit as i64).bind(agent).fetch_all(&mut *tx).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let spec: String = row.try_get("spec")?;
                let claim = OneOffClaim {
                    id: row.try_get("id")?,
                    to: row.try_get::<Option<String>, _>("to_uri")?.unwrap_or_default(),
                    from: row.try_get("from_uri")?,
                    trunk: row.try_get::<Option<String>, _>("trunk")?.unwrap_or_else(|| "default".into()),
                    spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(format!("call spec: {e}")))?,
                    attempt: row.try_get::<i32, _>("attempt")? + 1,
                };
                // A new try: the last try's fields are in `attempts` already.
                sqlx::query("UPDATE calls SET status = 'in_progress', node_id = $2, attempt = $3, outcome = NULL, \
                             sip_code = NULL, q850_cause = NULL, sip_call_id = NULL, invite_sent_at = NULL, \
                             ringing_at = NULL, answered_at = NULL, ended_at = NULL, duration_ms = NULL, \
                             hangup_by = NULL, reason = NULL, result = NULL WHERE id = $1")
                    .bind(&claim.id).bind(node_id).bind(claim.attempt).execute(&mut *tx).await?;
                out.push(claim);
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Closes a one-off call's try number `attempt`: `status` is `scheduled`
    /// (with `next_at`) for another try, else `completed` or `failed`. The
    /// try's summary is appended to `attempts`. A try already closed, or one
    /// the call has moved past (two recoveries of the same dead node), is
    /// left alone.
    pub async fn finish_one_off(
        &self,
        id: &str,
        attempt: i32,
        f: &CallFinal,
        status: &str,
        next_at: Option<i64>,
    ) -> Result<()> {
        self.finish_one_off_opting_out(id, attempt, f, status, next_at, None)
            .await
    }

    /// As [`Store::finish_one_off`]; `opted_out` (the number called) is put
    /// on the do-not-call list in the same transaction.
    pub async fn finish_one_off_opting_out(
        &self,
        id: &str,
        attempt: i32,
        f: &CallFinal,
        status: &str,
        next_at: Option<i64>,
        opted_out: Option<&str>,
    ) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let Some(row) = sqlx::query("SELECT attempts FROM calls WHERE id = $1 AND status = 'in_progress' AND attempt = $2")
                .bind(id).bind(attempt).fetch_optional(&mut *tx).await? else { return Ok(()) };
            let attempts: String = row.try_get("attempts")?;
            let mut list: Vec<Value> = serde_json::from_str(&attempts).unwrap_or_default();
            let ts = |ms: Option<i64>| ms.map(|m| super::from_ms(m).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            list.push(serde_json::json!({
                "attempt": attempt, "outcome": f.outcome, "sip_code": f.sip_code, "q850_cause": f.q850_cause,
                "sip_call_id": f.sip_call_id, "invite_sent_at": ts(f.invite_sent_at), "ringing_at": ts(f.ringing_at),
                "answered_at": ts(f.answered_at), "ended_at": ts(Some(f.ended_at)), "hangup_by": f.hangup_by,
                "reason": f.reason, "result": f.result,
            }));
            sqlx::query("UPDATE calls SET status = $2, outcome = $3, sip_code = $4, q850_cause = $5, sip_call_id = $6, \
                         invite_sent_at = $7, ringing_at = $8, answered_at = COALESCE($9, answered_at), ended_at = $10, \
                         duration_ms = $10 - COALESCE($9, answered_at), hangup_by = $11, reason = $12, attempts = $13, \
                         scheduled_at = COALESCE($14, scheduled_at), node_id = NULL, result = $15 WHERE id = $1")
                .bind(id).bind(status).bind(&f.outcome).bind(f.sip_code).bind(f.q850_cause).bind(&f.sip_call_id)
                .bind(f.invite_sent_at).bind(f.ringing_at).bind(f.answered_at).bind(f.ended_at).bind(&f.hangup_by)
                .bind(&f.reason).bind(Value::Array(list).to_string()).bind(next_at).bind(&f.result)
                .execute(&mut *tx).await?;
            if let Some(number) = opted_out {
                sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, 'opted_out', $2) ON CONFLICT DO NOTHING")
                    .bind(number).bind(f.ended_at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.metrics.one_off_tries.add(&f.outcome, 1);
        if let Some(code) = f.sip_code {
            self.metrics.sip_final.add(&code.to_string(), 1);
        }
        Ok(())
    }

    /// Closes a claimed one-off call that was not dialed (its number is on
    /// the do-not-call list): `failed` with `reason`, no try recorded.
    pub async fn refuse_one_off(&self, id: &str, reason: &str, now: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("UPDATE calls SET status = 'failed', reason = $2, ended_at = $3, node_id = NULL \
            WHERE id = $1 AND status = 'in_progress'")
            .bind(id).bind(reason).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    /// Puts a claimed one-off call back, undialed, to wait until `until`
    /// (the compliance gate's "not now"): `scheduled`, its try not counted,
    /// `reason` saying why.
    pub async fn defer_one_off(
        &self,
        id: &str,
        attempt: i32,
        until: i64,
        reason: &str,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query("UPDATE calls SET status = 'scheduled', scheduled_at = $3, reason = $4, \
            node_id = NULL, attempt = attempt - 1 WHERE id = $1 AND status = 'in_progress' AND attempt = $2")
            .bind(id).bind(attempt).bind(until).bind(reason).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    /// Notes who answered a call (the answering-machine detector's verdict)
    /// and when, in ms after the answer.
    pub async fn record_amd(&self, id: &str, answered_by: &str, amd_ms: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("UPDATE calls SET answered_by = $2, amd_ms = $3 WHERE id = $1")
            .bind(id).bind(answered_by).bind(amd_ms).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    /// Notes when a one-off call was answered.
    pub async fn mark_call_answered(&self, id: &str, at: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("UPDATE calls SET answered_at = $2 WHERE id = $1")
            .bind(id).bind(at).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        Ok(())
    }

    /// Moves a pending or scheduled one-off call to `at`; false if it is not waiting.
    pub async fn reschedule_one_off(&self, id: &str, at: i64) -> Result<bool> {
        let r = with_pool!(self, p => Ok(sqlx::query("UPDATE calls SET scheduled_at = $2, status = 'scheduled' \
            WHERE id = $1 AND campaign_id IS NULL AND status IN ('pending', 'scheduled')")
            .bind(id).bind(at).execute(p).await?.rows_affected() == 1));
        self.wrote();
        r
    }

    /// Cancels a pending or scheduled one-off call; false if it is not waiting.
    pub async fn cancel_one_off(&self, id: &str, reason: &str, now: i64) -> Result<bool> {
        let r = with_pool!(self, p => Ok(sqlx::query("UPDATE calls SET status = 'cancelled', reason = $2, ended_at = $3 \
            WHERE id = $1 AND campaign_id IS NULL AND status IN ('pending', 'scheduled')")
            .bind(id).bind(reason).bind(now).execute(p).await?.rows_affected() == 1));
        self.wrote();
        r
    }

    /// Deletes a call that is not being dialed; false if it is.
    pub async fn delete_call(&self, id: &str) -> Result<bool> {
        let r = with_pool!(self, p => Ok(sqlx::query("DELETE FROM calls WHERE id = $1 AND status <> 'in_progress'")
            .bind(id).execute(p).await?.rows_affected() == 1));
        self.wrote();
        r
    }
}
