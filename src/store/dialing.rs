//! The scheduler's writes: claiming due targets, recording answers and
//! outcomes, closing interrupted attempts. Every state change is written with
//! its `target_events` row in the same transaction, and guarded on the state
//! it expects, so a change is never applied twice or over another node's.

use serde_json::Value;
use sqlx::Row;

use super::targets::TargetRow;
use super::{BeginWrite, Result, Store, StoreError};
use crate::domain::{Destination, TargetState};
use crate::with_pool;

/// What to do with one due target, decided by the caller's rules.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Dial destination `destination_index` now.
    Dial { destination_index: usize },
    /// Never dial it again (`expired`, `dnc`, …).
    Fail { reason: String },
    /// Not now (outside its calling window): look again at `until`.
    Defer { until: i64 },
}

/// Who is claiming, for what.
#[derive(Debug, Clone)]
pub struct ClaimScope<'a> {
    pub campaign_id: &'a str,
    pub outdial_id: &'a str,
    pub node_id: &'a str,
    pub lease_ms: i64,
    pub trunk: &'a str,
    pub agent_id: Option<&'a str>,
}

/// A target claimed for dialing: its attempt (call) row exists, it is `dialing`.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub call_id: String,
    pub target: TargetRow,
    pub destination_index: usize,
    pub destination: Destination,
    /// The target's attempt number (try_count_current after this dial).
    pub attempt: u32,
}

/// One transition to record.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: TargetState,
    pub to: TargetState,
    pub reason: Option<String>,
}

/// The end of an attempt: the call row's final fields, the target's
/// transitions and where it ends up.
#[derive(Debug, Clone)]
pub struct Completion {
    pub call_id: String,
    pub target_id: String,
    pub campaign_id: Option<String>,
    /// The state the target must be in for this to apply (dialing or answered).
    pub expect: TargetState,
    pub transitions: Vec<Transition>,
    pub next_attempt_at: Option<i64>,
    pub destination_index: usize,
    pub call: CallFinal,
    /// A number to put on the do-not-call list (opt-out).
    pub dnc_add: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CallFinal {
    pub status: String,
    pub outcome: String,
    pub sip_code: Option<i32>,
    pub q850_cause: Option<i32>,
    pub result: Option<String>,
    pub sip_call_id: Option<String>,
    pub from_uri: Option<String>,
    pub to_uri: Option<String>,
    pub invite_sent_at: Option<i64>,
    pub ringing_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
    pub hangup_by: Option<String>,
    pub reason: Option<String>,
}

/// An attempt left open (its node died or herald was killed).
#[derive(Debug, Clone)]
pub struct OpenAttempt {
    pub call_id: String,
    pub target_id: Option<String>,
    pub campaign_id: Option<String>,
    pub destination_index: Option<i32>,
    pub answered_at: Option<i64>,
    pub created_at: i64,
}

const CALL_COLUMNS: &str = "id, campaign_id, target_id, destination_index, attempt, agent_id, trunk, status, \
    sip_call_id, from_uri, to_uri, outcome, sip_code, q850_cause, result, hangup_by, reason, created_at, \
    invite_sent_at, ringing_at, answered_at, ended_at, duration_ms";

const TARGET_COLUMNS: &str =
    "id, outdial_id, name, destinations, destination_index, try_count_max, \
    try_count_current, state, next_attempt_at, not_before, expires_at, timezone, variables, \
    client_token, last_outcome, reason, created_at, updated_at";

impl Store {
    /// Claims up to `limit` due idle targets of the scope's outdial. `decide`
    /// sees each candidate and whether its next destination is on the DNC
    /// list, and says what to do; dialed ones come back with their attempt
    /// rows opened. On PostgreSQL rows locked by another node are skipped.
    pub async fn claim_due_targets(
        &self,
        scope: &ClaimScope<'_>,
        now: i64,
        limit: usize,
        decide: impl Fn(&TargetRow, bool) -> ClaimAction,
    ) -> Result<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lock = if self.backend() == super::Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE outdial_id = $1 AND state = 'idle' \
             AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{lock}"
        );
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let rows = sqlx::query(&select).bind(scope.outdial_id).bind(now).bind(limit as i64)
                .fetch_all(&mut *tx).await?;
            let mut candidates = Vec::with_capacity(rows.len());
            for row in &rows {
                candidates.push(super::targets::decode_target_row(row)?);
            }
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            // The DNC list, for each candidate's next destination.
            let numbers: Vec<&str> = candidates.iter()
                .filter_map(|t| t.destinations.get(t.destination_index as usize).map(|d| d.target.as_str()))
                .collect();
            let mut qb = sqlx::QueryBuilder::new("SELECT number FROM dnc WHERE number IN (");
            let mut sep = qb.separated(", ");
            for n in &numbers {
                sep.push_bind(*n);
            }
            qb.push(")");
            let blocked: std::collections::HashSet<String> =
                qb.build_query_scalar::<String>().fetch_all(&mut *tx).await?.into_iter().collect();

            let mut claimed = Vec::new();
            for mut t in candidates {
                let next = t.destinations.get(t.destination_index as usize).map(|d| d.target.clone());
                let on_dnc = next.as_ref().is_some_and(|n| blocked.contains(n));
                match decide(&t, on_dnc) {
                    ClaimAction::Defer { until } => {
                        sqlx::query("UPDATE targets SET next_attempt_at = $2 WHERE id = $1 AND state = 'idle'")
                            .bind(&t.id).bind(until).execute(&mut *tx).await?;
                    }
                    ClaimAction::Fail { reason } => {
                        sqlx::query("UPDATE targets SET state = 'failed', reason = $2, updated_at = $3 \
                                     WHERE id = $1 AND state = 'idle'")
                            .bind(&t.id).bind(&reason).bind(now).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, reason) \
                                     VALUES ($1, $2, 'idle', 'failed', $3, $4)")
                            .bind(&t.id).bind(scope.campaign_id).bind(now).bind(&reason).execute(&mut *tx).await?;
                    }
                    ClaimAction::Dial { destination_index } => {
                        let Some(dest) = t.destinations.get_mut(destination_index) else {
                            return Err(StoreError::Corrupt(format!("target {} has no destination {destination_index}", t.id)));
                        };
                        dest.try_count += 1;
                        let destination = dest.clone();
                        t.try_count_current += 1;
                        t.destination_index = destination_index as i32;
                        t.state = TargetState::Dialing;
                        let call_id = super::new_id();
                        let dests = serde_json::to_string(&t.destinations).expect("destinations serialize");
                        sqlx::query("UPDATE targets SET state = 'dialing', destinations = $2, destination_index = $3, \
                                     try_count_current = try_count_current + 1, lease_owner = $4, lease_expires_at = $5, \
                                     updated_at = $6 WHERE id = $1 AND state = 'idle'")
                            .bind(&t.id).bind(&dests).bind(destination_index as i32).bind(scope.node_id)
                            .bind(now + scope.lease_ms).bind(now).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id) \
                                     VALUES ($1, $2, 'idle', 'dialing', $3, $4)")
                            .bind(&t.id).bind(scope.campaign_id).bind(now).bind(&call_id).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO calls (id, campaign_id, target_id, destination_index, attempt, agent_id, \
                                     trunk, status, to_uri, node_id, created_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress', $8, $9, $10)")
                            .bind(&call_id).bind(scope.campaign_id).bind(&t.id).bind(destination_index as i32)
                            .bind(t.try_count_current).bind(scope.agent_id).bind(scope.trunk).bind(&destination.target)
                            .bind(scope.node_id).bind(now).execute(&mut *tx).await?;
                        let attempt = t.try_count_current as u32;
                        claimed.push(Claimed { call_id, target: t, destination_index, destination, attempt });
                    }
                }
            }
            tx.commit().await?;
            Ok(claimed)
        })
    }

    /// Records that a call was answered: dialing → answered, with its event.
    pub async fn record_answer(
        &self,
        call_id: &str,
        target_id: &str,
        campaign_id: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE calls SET answered_at = $2 WHERE id = $1").bind(call_id).bind(at).execute(&mut *tx).await?;
            let moved = sqlx::query("UPDATE targets SET state = 'answered', updated_at = $2 WHERE id = $1 AND state = 'dialing'")
                .bind(target_id).bind(at).execute(&mut *tx).await?.rows_affected() == 1;
            if moved {
                sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code) \
                             VALUES ($1, $2, 'dialing', 'answered', $3, $4, 200)")
                    .bind(target_id).bind(campaign_id).bind(at).bind(call_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(moved)
        })
    }

    /// Records finished attempts in one transaction. A completion whose
    /// target is no longer in the expected state only closes its call row.
    pub async fn record_completions(&self, batch: &[Completion], now: i64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for c in batch {
                let f = &c.call;
                sqlx::query("UPDATE calls SET status = $2, outcome = $3, sip_code = $4, q850_cause = $5, result = $6, \
                             sip_call_id = COALESCE($7, sip_call_id), from_uri = COALESCE($8, from_uri), \
                             to_uri = COALESCE($9, to_uri), invite_sent_at = $10, ringing_at = $11, \
                             answered_at = COALESCE($12, answered_at), ended_at = $13, \
                             duration_ms = CASE WHEN COALESCE($12, answered_at) IS NULL THEN NULL ELSE $13 - COALESCE($12, answered_at) END, \
                             hangup_by = $14, reason = $15 WHERE id = $1")
                    .bind(&c.call_id).bind(&f.status).bind(&f.outcome).bind(f.sip_code).bind(f.q850_cause)
                    .bind(&f.result).bind(&f.sip_call_id).bind(&f.from_uri).bind(&f.to_uri)
                    .bind(f.invite_sent_at).bind(f.ringing_at).bind(f.answered_at).bind(f.ended_at)
                    .bind(&f.hangup_by).bind(&f.reason)
                    .execute(&mut *tx).await?;
                let Some(last) = c.transitions.last() else { continue };
                let moved = sqlx::query("UPDATE targets SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at), \
                             destination_index = $4, last_outcome = $5, reason = $6, lease_owner = NULL, \
                             lease_expires_at = NULL, updated_at = $7 WHERE id = $1 AND state = $8")
                    .bind(&c.target_id).bind(last.to.as_str()).bind(c.next_attempt_at).bind(c.destination_index as i32)
                    .bind(&f.outcome).bind(&last.reason).bind(now).bind(c.expect.as_str())
                    .execute(&mut *tx).await?.rows_affected() == 1;
                if !moved {
                    continue;
                }
                for t in &c.transitions {
                    let code = if t.from == c.expect && t.from == TargetState::Dialing { f.sip_code } else { None };
                    sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(&c.target_id).bind(&c.campaign_id).bind(t.from.as_str()).bind(t.to.as_str())
                        .bind(f.ended_at).bind(&c.call_id).bind(code).bind(&t.reason)
                        .execute(&mut *tx).await?;
                }
                if let Some(n) = &c.dnc_add {
                    sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, 'opted_out', $2) ON CONFLICT DO NOTHING")
                        .bind(n).bind(now).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Attempts still open: all of them (`node_ids` None, single node at
    /// start), or those of the given nodes (dead nodes, on PostgreSQL).
    pub async fn open_attempts(&self, node_ids: Option<&[String]>) -> Result<Vec<OpenAttempt>> {
        let base = "SELECT id, target_id, campaign_id, destination_index, answered_at, created_at FROM calls \
                    WHERE ended_at IS NULL AND status = 'in_progress'";
        with_pool!(self, p => {
            let rows = match node_ids {
                None => sqlx::query(base).fetch_all(p).await?,
                Some(ids) => {
                    let mut qb = sqlx::QueryBuilder::new(format!("{base} AND node_id IN ("));
                    let mut sep = qb.separated(", ");
                    for id in ids {
                        sep.push_bind(id);
                    }
                    qb.push(")");
                    qb.build().fetch_all(p).await?
                }
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(OpenAttempt {
                    call_id: row.try_get("id")?,
                    target_id: row.try_get("target_id")?,
                    campaign_id: row.try_get("campaign_id")?,
                    destination_index: row.try_get("destination_index")?,
                    answered_at: row.try_get("answered_at")?,
                    created_at: row.try_get("created_at")?,
                });
            }
            Ok(out)
        })
    }

    /// Sets a campaign's status if it is in one of `from`; returns whether it changed.
    pub async fn set_campaign_status(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let mut qb_sql = String::from("UPDATE campaigns SET status = $2, status_reason = $3, updated_at = $4, \
            started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN $4 ELSE started_at END, \
            finished_at = CASE WHEN $2 IN ('stopped', 'finished') THEN $4 ELSE NULL END WHERE id = $1 AND status IN (");
        for (i, _) in from.iter().enumerate() {
            if i > 0 {
                qb_sql.push_str(", ");
            }
            qb_sql.push_str(&format!("${}", i + 5));
        }
        qb_sql.push(')');
        with_pool!(self, p => {
            let mut q = sqlx::query(&qb_sql).bind(id).bind(to).bind(reason).bind(now);
            for f in from {
                q = q.bind(*f);
            }
            Ok(q.execute(p).await?.rows_affected() == 1)
        })
    }

    /// Campaigns in one of `statuses` (the scheduler's work list).
    pub async fn campaign_ids_with_status(
        &self,
        statuses: &[&str],
    ) -> Result<Vec<(String, String)>> {
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id, status FROM campaigns WHERE status IN ({list}) ORDER BY id");
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, String)>(&sql).fetch_all(p).await?))
    }

    /// Whether the outdial has targets that are not finished or failed,
    /// and whether any is due or being dialed (for `finished`).
    pub async fn outdial_activity(&self, outdial_id: &str) -> Result<(i64, i64)> {
        with_pool!(self, p => {
            let row = sqlx::query("SELECT \
                COALESCE(SUM(CASE WHEN state NOT IN ('finished', 'failed') THEN 1 ELSE 0 END), 0) AS open, \
                COALESCE(SUM(CASE WHEN state IN ('dialing', 'answered') THEN 1 ELSE 0 END), 0) AS live \
                FROM targets WHERE outdial_id = $1").bind(outdial_id).fetch_one(p).await?;
            Ok((row.try_get::<i64, _>("open")?, row.try_get::<i64, _>("live")?))
        })
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

    /// Adds numbers to the DNC list (existing entries are kept).
    pub async fn add_dnc(&self, number: &str, reason: &str, now: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(number).bind(reason).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn get_dnc(&self, number: &str) -> Result<Option<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>("SELECT reason, created_at FROM dnc WHERE number = $1")
            .bind(number).fetch_optional(p).await?))
    }

    pub async fn delete_dnc(&self, number: &str) -> Result<bool> {
        with_pool!(self, p => Ok(sqlx::query("DELETE FROM dnc WHERE number = $1").bind(number).execute(p).await?.rows_affected() == 1))
    }

    /// A page of calls, filtered.
    pub async fn list_calls(
        &self,
        campaign_id: Option<&str>,
        target_id: Option<&str>,
        outcome: Option<&str>,
        page: &super::PageRequest,
    ) -> Result<super::Page<Value>> {
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id > $1");
        let mut n = 2;
        for (col, v) in [
            ("campaign_id", campaign_id),
            ("target_id", target_id),
            ("outcome", outcome),
        ] {
            if v.is_some() {
                sql.push_str(&format!(" AND {col} = ${n}"));
                n += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${n}"));
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query(&sql).bind(page.after_or_start());
            for v in [campaign_id, target_id, outcome].into_iter().flatten() {
                q = q.bind(v);
            }
            let rows = q.bind(page.fetch_limit()).fetch_all(p).await?;
            rows.iter().map(call_row_json).collect::<Result<Vec<_>>>()
        })?;
        Ok(page.finish(rows, |v| v["id"].as_str().unwrap_or_default().to_string()))
    }

    /// A call row, as JSON-ready columns.
    pub async fn get_call(&self, id: &str) -> Result<Value> {
        with_pool!(self, p => {
            let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"))
                .bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            call_row_json(&row)
        })
    }
}

fn call_row_json<R: Row>(row: &R) -> Result<Value>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let ts = |c: &str| -> Result<Value> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map_or(Value::Null, |ms| {
            Value::String(super::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }))
    };
    Ok(serde_json::json!({
        "id": row.try_get::<String, _>("id")?,
        "campaign_id": row.try_get::<Option<String>, _>("campaign_id")?,
        "target_id": row.try_get::<Option<String>, _>("target_id")?,
        "destination_index": row.try_get::<Option<i32>, _>("destination_index")?,
        "attempt": row.try_get::<i32, _>("attempt")?,
        "agent_id": row.try_get::<Option<String>, _>("agent_id")?,
        "trunk": row.try_get::<Option<String>, _>("trunk")?,
        "status": row.try_get::<String, _>("status")?,
        "sip_call_id": row.try_get::<Option<String>, _>("sip_call_id")?,
        "from": row.try_get::<Option<String>, _>("from_uri")?,
        "to": row.try_get::<Option<String>, _>("to_uri")?,
        "outcome": row.try_get::<Option<String>, _>("outcome")?,
        "sip_code": row.try_get::<Option<i32>, _>("sip_code")?,
        "q850_cause": row.try_get::<Option<i32>, _>("q850_cause")?,
        "result": row.try_get::<Option<String>, _>("result")?,
        "hangup_by": row.try_get::<Option<String>, _>("hangup_by")?,
        "reason": row.try_get::<Option<String>, _>("reason")?,
        "created_at": ts("created_at")?,
        "invite_sent_at": ts("invite_sent_at")?,
        "ringing_at": ts("ringing_at")?,
        "answered_at": ts("answered_at")?,
        "ended_at": ts("ended_at")?,
        "duration_ms": row.try_get::<Option<i64>, _>("duration_ms")?,
    }))
}

/// Node liveness, for sharing a PostgreSQL database between herald processes.
impl Store {
    pub async fn register_node(&self, id: &str, now: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query("INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2")
            .bind(id).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Refreshes this node's heartbeat; `false` if another node declared it dead.
    pub async fn heartbeat(&self, id: &str, now: i64) -> Result<bool> {
        with_pool!(self, p => Ok(sqlx::query("UPDATE nodes SET heartbeat_at = $2 WHERE id = $1")
            .bind(id).bind(now).execute(p).await?.rows_affected() == 1))
    }

    /// Nodes whose heartbeat is older than `stale_before`, plus node ids of
    /// open attempts that have no node row at all.
    pub async fn dead_nodes(&self, stale_before: i64) -> Result<Vec<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM nodes WHERE heartbeat_at < $1 \
             UNION SELECT DISTINCT node_id FROM calls WHERE ended_at IS NULL AND status = 'in_progress' \
             AND node_id IS NOT NULL AND node_id NOT IN (SELECT id FROM nodes)")
            .bind(stale_before).fetch_all(p).await?))
    }

    pub async fn forget_nodes(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            with_pool!(self, p => sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}
