//! The scheduler's writes: claiming due targets, recording answers and
//! outcomes, closing interrupted attempts. Every state change is written with
//! its `target_events` row in the same transaction, and guarded on the state
//! it expects, so a change is never applied twice or over another node's.

use serde_json::Value;
use sqlx::Row;

use super::bulk::{self, Column};
use super::events::{EventLog, EventRecord};
use super::targets::TargetRow;
use super::{BeginWrite, Result, Store, StoreError};
use crate::domain::{Destination, TargetState};
use crate::{append_event_pages, with_pool};

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

/// Rows per multi-row statement: on SQLite each row's cells are parameters,
/// and a statement takes at most 32,766 (a claim's statements take up to 5
/// per row, a record's `calls` update 13), so that a claim or a record batch
/// is a few statements, not a few per 500 rows: each statement is a round
/// trip to the connection's thread.
const CLAIM_ROWS_PER_STATEMENT: usize = 3_000;
const RECORD_ROWS_PER_STATEMENT: usize = 2_048;
/// Numbers per DNC lookup (one parameter each on SQLite).
const DNC_NUMBERS_PER_STATEMENT: usize = 10_000;

const CALL_COLUMNS: &str = "id, campaign_id, target_id, destination_index, attempt, agent_id, trunk, status, \
    sip_call_id, from_uri, to_uri, outcome, sip_code, q850_cause, result, hangup_by, reason, created_at, \
    invite_sent_at, ringing_at, answered_at, ended_at, duration_ms, scheduled_at, spec, attempts";

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

const TARGET_COLUMNS: &str =
    "id, outdial_id, name, destinations, destination_index, try_count_max, \
    try_count_current, state, next_attempt_at, not_before, expires_at, timezone, variables, \
    client_token, last_outcome, reason, created_at, updated_at";

/// The `target_events` inserts for the transitions of some completions, a
/// multi-row statement per [`RECORD_ROWS_PER_STATEMENT`] events.
macro_rules! transition_inserts {
    ($completions:expr) => {{
        let rows: Vec<(&Completion, &Transition)> = $completions
            .flat_map(|c: &Completion| c.transitions.iter().map(move |t| (c, t)))
            .collect();
        let mut statements = Vec::new();
        for chunk in rows.chunks(RECORD_ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO target_events \
                 (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason) \
                 SELECT column1, column2, column3, column4, column5, column6, column7, column8 FROM ",
            );
            bulk::rows(&mut qb, vec![
                Column::Text(chunk.iter().map(|(c, _)| Some(c.target_id.as_str())).collect()),
                Column::Text(chunk.iter().map(|(c, _)| c.campaign_id.as_deref()).collect()),
                Column::Text(chunk.iter().map(|(_, t)| Some(t.from.as_str())).collect()),
                Column::Text(chunk.iter().map(|(_, t)| Some(t.to.as_str())).collect()),
                Column::BigInt(chunk.iter().map(|(c, _)| Some(c.call.ended_at)).collect()),
                Column::Text(chunk.iter().map(|(c, _)| Some(c.call_id.as_str())).collect()),
                Column::Int(chunk.iter().map(|(c, t)| {
                    if t.from == TargetState::Dialing { c.call.sip_code } else { None }
                }).collect()),
                Column::Text(chunk.iter().map(|(_, t)| t.reason.as_deref()).collect()),
            ]);
            statements.push(qb);
        }
        statements
    }};
}

/// The numbers on the DNC list among the candidates' next destinations.
macro_rules! dnc_of {
    ($candidates:expr, $exec:expr) => {{
        let numbers: Vec<&str> = $candidates
            .iter()
            .filter_map(|t: &TargetRow| {
                t.destinations
                    .get(t.destination_index as usize)
                    .map(|d| d.target.as_str())
            })
            .collect();
        let mut blocked = std::collections::HashSet::new();
        for chunk in numbers.chunks(DNC_NUMBERS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::new("SELECT number FROM dnc WHERE ");
            bulk::is_in(&mut qb, "number", chunk.to_vec());
            let keep = bulk::keep_prepared(&qb);
            blocked.extend(
                qb.build_query_scalar::<String>()
                    .persistent(keep)
                    .fetch_all($exec)
                    .await?,
            );
        }
        blocked
    }};
}

impl Store {
    /// Claims up to `limit` due idle targets of the scope's outdial. `decide`
    /// sees each candidate and whether its next destination is on the DNC
    /// list, and says what to do; dialed ones come back with their attempt
    /// rows opened.
    ///
    /// On PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED` in the
    /// writing transaction (rows another node holds are skipped). On SQLite
    /// they are read, decided and their statements built before the single
    /// writer is taken, so that this work overlaps the recorder's writes; the
    /// writes are then guarded on the row being as read (idle, same
    /// `updated_at` and try count), and a target that changed in between is
    /// left for the next claim.
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
        let postgres = self.backend() == super::Backend::Postgres;
        let lock = if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE outdial_id = $1 AND state = 'idle' \
             AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{lock}"
        );
        let started = std::time::Instant::now();
        let (claimed, logged) = with_pool!(self, p => {
            // SQLite: read and decide outside the writer.
            let mut plan = None;
            // Reads the due targets and the DNC entries with `$exec`, and decides.
            macro_rules! read_and_decide {
                ($exec:expr) => {{
                    let rows = sqlx::query(&select).bind(scope.outdial_id).bind(now).bind(limit as i64)
                        .fetch_all($exec).await?;
                    let candidates = rows.iter().map(super::targets::decode_target_row).collect::<Result<Vec<_>>>()?;
                    if candidates.is_empty() {
                        return Ok(Vec::new());
                    }
                    let blocked = dnc_of!(&candidates, $exec);
                    ClaimPlan::new(now, candidates, &blocked, &decide, &self.metrics)?
                }};
            }
            if !postgres {
                plan = Some(read_and_decide!(p));
            }
            let _write = self.write_guard().await;
            let mut tx = p.begin_write().await?;
            let plan = match plan {
                Some(plan) => plan,
                None => read_and_decide!(&mut *tx),
            };
            let ClaimPlan { mut claimed, started_events, fails, defers } = plan;
            let mut log = EventLog::default();
            for (id, until, updated_at) in &defers {
                sqlx::query("UPDATE targets SET next_attempt_at = $2 WHERE id = $1 AND state = 'idle' AND updated_at = $3")
                    .bind(id).bind(until).bind(updated_at).execute(&mut *tx).await?;
            }
            for (id, reason, updated_at) in &fails {
                let moved = sqlx::query("UPDATE targets SET state = 'failed', reason = $2, updated_at = $3 \
                             WHERE id = $1 AND state = 'idle' AND updated_at = $4")
                    .bind(id).bind(reason).bind(now).bind(updated_at).execute(&mut *tx).await?.rows_affected() == 1;
                if !moved {
                    continue;
                }
                sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, reason) \
                             VALUES ($1, $2, 'idle', 'failed', $3, $4)")
                    .bind(id).bind(scope.campaign_id).bind(now).bind(reason).execute(&mut *tx).await?;
                log.push(scope.campaign_id, &EventRecord::Transition {
                    at: now, target_id: id, attempt_id: None, from: "idle", to: "failed",
                    sip_code: None, reason: Some(reason.as_str()),
                });
            }
            // The dialed ones in three statements per chunk, not three per row.
            let dests: Vec<String> = claimed.iter()
                .map(|c| serde_json::to_string(&c.target.destinations).expect("destinations serialize"))
                .collect();
            let mut dialed = std::collections::HashSet::new();
            for (chunk, dests) in claimed.chunks(CLAIM_ROWS_PER_STATEMENT).zip(dests.chunks(CLAIM_ROWS_PER_STATEMENT)) {
                let mut qb = sqlx::QueryBuilder::new("UPDATE targets SET state = 'dialing', destinations = v.column2, \
                    destination_index = v.column3, try_count_current = try_count_current + 1, lease_owner = ");
                qb.push_bind(scope.node_id).push(", lease_expires_at = ").push_bind(now + scope.lease_ms)
                    .push(", updated_at = ").push_bind(now).push(" FROM ");
                bulk::rows(&mut qb, vec![
                    Column::Text(chunk.iter().map(|c| Some(c.target.id.as_str())).collect()),
                    Column::Text(dests.iter().map(|d| Some(d.as_str())).collect()),
                    Column::Int(chunk.iter().map(|c| Some(c.destination_index as i32)).collect()),
                    Column::BigInt(chunk.iter().map(|c| Some(c.target.updated_at)).collect()),
                    Column::Int(chunk.iter().map(|c| Some(c.target.try_count_current - 1)).collect()),
                ]);
                qb.push(" WHERE targets.id = v.column1 AND targets.state = 'idle' \
                    AND targets.updated_at = v.column4 AND targets.try_count_current = v.column5 RETURNING targets.id");
                let keep = bulk::keep_prepared(&qb);
                let moved: Vec<String> = qb.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?;
                let all = moved.len() == chunk.len();
                let moved: std::collections::HashSet<String> = moved.into_iter().collect();
                let rows: Vec<&Claimed> = chunk.iter().filter(|c| all || moved.contains(&c.target.id)).collect();
                if rows.is_empty() {
                    continue;
                }
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id) SELECT column1, ");
                qb.push_bind(scope.campaign_id).push(", 'idle', 'dialing', ").push_bind(now).push(", column2 FROM ");
                bulk::rows(&mut qb, vec![
                    Column::Text(rows.iter().map(|c| Some(c.target.id.as_str())).collect()),
                    Column::Text(rows.iter().map(|c| Some(c.call_id.as_str())).collect()),
                ]);
                qb.build().persistent(keep).execute(&mut *tx).await?;
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO calls (id, campaign_id, target_id, destination_index, \
                    attempt, agent_id, trunk, status, to_uri, node_id, created_at) SELECT column1, ");
                qb.push_bind(scope.campaign_id).push(", column2, column3, column4, ").push_bind(scope.agent_id)
                    .push(", ").push_bind(scope.trunk).push(", 'in_progress', column5, ").push_bind(scope.node_id)
                    .push(", ").push_bind(now).push(" FROM ");
                bulk::rows(&mut qb, vec![
                    Column::Text(rows.iter().map(|c| Some(c.call_id.as_str())).collect()),
                    Column::Text(rows.iter().map(|c| Some(c.target.id.as_str())).collect()),
                    Column::Int(rows.iter().map(|c| Some(c.destination_index as i32)).collect()),
                    Column::Int(rows.iter().map(|c| Some(c.attempt as i32)).collect()),
                    Column::Text(rows.iter().map(|c| Some(c.destination.target.as_str())).collect()),
                ]);
                qb.build().persistent(keep).execute(&mut *tx).await?;
                dialed.extend(rows.iter().map(|c| c.call_id.clone()));
            }
            for (c, events) in claimed.iter().zip(started_events) {
                if dialed.contains(&c.call_id) {
                    for e in events {
                        log.push_json(scope.campaign_id, e);
                    }
                }
            }
            let logged = append_event_pages!(tx, log, now);
            tx.commit().await?;
            claimed.retain(|c| dialed.contains(&c.call_id));
            Ok::<_, StoreError>((claimed, logged))
        })?;
        self.logged(logged);
        self.metrics.attempts_started.add(claimed.len() as u64);
        self.observe("claim", started);
        Ok(claimed)
    }

    /// Records that a call was answered: dialing → answered, with its event.
    pub async fn record_answer(
        &self,
        call_id: &str,
        target_id: &str,
        campaign_id: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        let _write = self.write_guard().await;
        let (moved, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE calls SET answered_at = $2 WHERE id = $1").bind(call_id).bind(at).execute(&mut *tx).await?;
            let moved = sqlx::query("UPDATE targets SET state = 'answered', updated_at = $2 WHERE id = $1 AND state = 'dialing'")
                .bind(target_id).bind(at).execute(&mut *tx).await?.rows_affected() == 1;
            let mut log = EventLog::default();
            if moved {
                sqlx::query("INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code) \
                             VALUES ($1, $2, 'dialing', 'answered', $3, $4, 200)")
                    .bind(target_id).bind(campaign_id).bind(at).bind(call_id).execute(&mut *tx).await?;
                if let Some(c) = campaign_id {
                    log.push(c, &EventRecord::AttemptAnswered { at, attempt_id: call_id, target_id });
                    log.push(c, &EventRecord::Transition {
                        at, target_id, attempt_id: Some(call_id), from: "dialing", to: "answered",
                        sip_code: Some(200), reason: None,
                    });
                }
            }
            let logged = append_event_pages!(tx, log, at);
            tx.commit().await?;
            Ok::<_, StoreError>((moved, logged))
        })?;
        self.logged(logged);
        self.observe("answer", started);
        Ok(moved)
    }

    /// Records finished attempts in one transaction, in a few statements per
    /// chunk. A completion whose target is no longer in the expected state
    /// (another node or a recovery got there first) only closes its call row.
    pub async fn record_completions(&self, batch: &[Completion], now: i64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // Serialized before the write lock is taken: only the choice of which
        // transitions to log waits for the transaction.
        let mut prepared: Vec<PreparedEvents> = batch.iter().map(prepare_events).collect();
        let logged = with_pool!(self, p => {
            // Every statement is built before the writer is taken; only the
            // events of a target that did not move (rare: another node or a
            // recovery got there first) are rebuilt inside.
            let mut statements = Vec::new();
            for chunk in batch.chunks(RECORD_ROWS_PER_STATEMENT) {
                let mut calls = sqlx::QueryBuilder::new("UPDATE calls SET status = v.column2, outcome = v.column3, \
                    sip_code = v.column4, q850_cause = v.column5, result = v.column6, \
                    sip_call_id = COALESCE(v.column7, calls.sip_call_id), invite_sent_at = v.column8, \
                    ringing_at = v.column9, answered_at = COALESCE(v.column10, calls.answered_at), ended_at = v.column11, \
                    duration_ms = v.column11 - COALESCE(v.column10, calls.answered_at), \
                    hangup_by = v.column12, reason = v.column13 FROM ");
                let f = |get: fn(&CallFinal) -> Option<&str>| Column::Text(chunk.iter().map(|c| get(&c.call)).collect());
                let t = |get: fn(&CallFinal) -> Option<i64>| Column::BigInt(chunk.iter().map(|c| get(&c.call)).collect());
                let i = |get: fn(&CallFinal) -> Option<i32>| Column::Int(chunk.iter().map(|c| get(&c.call)).collect());
                bulk::rows(&mut calls, vec![
                    Column::Text(chunk.iter().map(|c| Some(c.call_id.as_str())).collect()),
                    f(|f| Some(f.status.as_str())),
                    f(|f| Some(f.outcome.as_str())),
                    i(|f| f.sip_code),
                    i(|f| f.q850_cause),
                    f(|f| f.result.as_deref()),
                    f(|f| f.sip_call_id.as_deref()),
                    t(|f| f.invite_sent_at),
                    t(|f| f.ringing_at),
                    t(|f| f.answered_at),
                    t(|f| Some(f.ended_at)),
                    f(|f| f.hangup_by.as_deref()),
                    f(|f| f.reason.as_deref()),
                ]);
                calls.push(" WHERE calls.id = v.column1");
                let moving: Vec<&Completion> = chunk.iter().filter(|c| !c.transitions.is_empty()).collect();
                let mut targets = None;
                let mut events = Vec::new();
                if !moving.is_empty() {
                    let mut qb = sqlx::QueryBuilder::new("UPDATE targets SET state = v.column2, \
                        next_attempt_at = COALESCE(v.column3, targets.next_attempt_at), destination_index = v.column4, \
                        last_outcome = v.column5, reason = v.column6, lease_owner = NULL, lease_expires_at = NULL, updated_at = ");
                    qb.push_bind(now).push(" FROM ");
                    fn last(c: &Completion) -> &Transition {
                        c.transitions.last().expect("non-empty")
                    }
                    bulk::rows(&mut qb, vec![
                        Column::Text(moving.iter().map(|c| Some(c.target_id.as_str())).collect()),
                        Column::Text(moving.iter().map(|c| Some(last(c).to.as_str())).collect()),
                        Column::BigInt(moving.iter().map(|c| c.next_attempt_at).collect()),
                        Column::Int(moving.iter().map(|c| Some(c.destination_index as i32)).collect()),
                        Column::Text(moving.iter().map(|c| Some(c.call.outcome.as_str())).collect()),
                        Column::Text(moving.iter().map(|c| last(c).reason.as_deref()).collect()),
                        Column::Text(moving.iter().map(|c| Some(c.expect.as_str())).collect()),
                    ]);
                    qb.push(" WHERE targets.id = v.column1 AND targets.state = v.column7 RETURNING targets.id");
                    targets = Some(qb);
                    events = transition_inserts!(moving.iter().copied());
                }
                statements.push((calls, moving, targets, events));
            }
            let _write = self.write_guard().await;
            let mut tx = p.begin_write().await?;
            let mut log = EventLog::default();
            for ((chunk, prepared), (mut calls, moving, targets, events)) in batch.chunks(RECORD_ROWS_PER_STATEMENT)
                .zip(prepared.chunks_mut(RECORD_ROWS_PER_STATEMENT)).zip(statements) {
                let keep = bulk::keep_prepared(&calls);
                calls.build().persistent(keep).execute(&mut *tx).await?;
                let Some(mut targets) = targets else {
                    log_completions(&mut log, chunk, prepared, &Default::default());
                    continue;
                };
                let moved: std::collections::HashSet<String> =
                    targets.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                log_completions(&mut log, chunk, prepared, &moved);
                if moved.len() == moving.len() {
                    for mut qb in events {
                        qb.build().persistent(keep).execute(&mut *tx).await?;
                    }
                } else {
                    drop(events);
                    let moved_only = moving.iter().copied().filter(|c| moved.contains(&c.target_id));
                    for mut qb in transition_inserts!(moved_only) {
                        qb.build().persistent(keep).execute(&mut *tx).await?;
                    }
                }
                for c in moving.iter().filter(|c| moved.contains(&c.target_id)) {
                    if let Some(n) = &c.dnc_add {
                        sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, 'opted_out', $2) ON CONFLICT DO NOTHING")
                            .bind(n).bind(now).execute(&mut *tx).await?;
                    }
                }
            }
            let logged = append_event_pages!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(logged)
        })?;
        self.logged(logged);
        for c in batch {
            self.metrics.attempts_ended.add(&c.call.outcome, 1);
            if let Some(code) = c.call.sip_code {
                self.metrics.sip_final.add(&code.to_string(), 1);
            }
        }
        self.observe("record", started);
        Ok(())
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
        self.set_campaign_status_because(id, from, to, reason, None, now)
            .await
    }

    /// As [`Store::set_campaign_status`], with the status's typed cause.
    pub async fn set_campaign_status_because(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
        cause: Option<crate::domain::StatusCause>,
        now: i64,
    ) -> Result<bool> {
        let cause = cause.map(crate::domain::StatusCause::as_str);
        let lock = if self.backend() == super::Backend::Postgres {
            " FOR NO KEY UPDATE"
        } else {
            ""
        };
        let select = format!("SELECT status FROM campaigns WHERE id = $1{lock}");
        let started = std::time::Instant::now();
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let Some(current) = sqlx::query_scalar::<_, String>(&select).bind(id).fetch_optional(&mut *tx).await? else {
                return Ok(false);
            };
            if !from.contains(&current.as_str()) {
                return Ok(false);
            }
            sqlx::query("UPDATE campaigns SET status = $2, status_reason = $3, updated_at = $4, status_cause = $5, \
                started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN $4 ELSE started_at END, \
                finished_at = CASE WHEN $2 IN ('stopped', 'finished') THEN $4 ELSE NULL END WHERE id = $1")
                .bind(id).bind(to).bind(reason).bind(now).bind(cause).execute(&mut *tx).await?;
            let mut log = EventLog::default();
            log.push(id, &EventRecord::CampaignStatus { at: now, from: &current, to, reason });
            let logged = append_event_pages!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(logged)
        })?;
        self.logged(logged);
        self.observe("campaign_status", started);
        Ok(true)
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

    /// Whether any target of the outdial is not finished or failed yet (an
    /// index probe per state, however long the list).
    pub async fn outdial_has_open_targets(&self, outdial_id: &str) -> Result<bool> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM targets WHERE outdial_id = $1 \
             AND state IN ('idle', 'dialing', 'answered', 'busy', 'no_answer') LIMIT 1")
            .bind(outdial_id).fetch_optional(p).await?.is_some()))
    }

    /// Whether any idle target of the outdial is due at `now` (an index probe).
    pub async fn outdial_has_due_targets(&self, outdial_id: &str, now: i64) -> Result<bool> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM targets WHERE outdial_id = $1 AND state = 'idle' AND next_attempt_at <= $2 LIMIT 1")
            .bind(outdial_id).bind(now).fetch_optional(p).await?.is_some()))
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
        self.wrote();
        Ok(())
    }

    pub async fn get_dnc(&self, number: &str) -> Result<Option<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>("SELECT reason, created_at FROM dnc WHERE number = $1")
            .bind(number).fetch_optional(p).await?))
    }

    pub async fn delete_dnc(&self, number: &str) -> Result<bool> {
        let r = with_pool!(self, p => Ok(sqlx::query("DELETE FROM dnc WHERE number = $1").bind(number).execute(p).await?.rows_affected() == 1));
        self.wrote();
        r
    }

    /// A page of calls, filtered.
    pub async fn list_calls(
        &self,
        f: &CallFilter<'_>,
        page: &super::PageRequest,
    ) -> Result<super::Page<Value>> {
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

/// A claim decided: the targets to dial (with their `attempt.started` and
/// `idle → dialing` events, serialized), to fail and to defer. Failed and
/// deferred targets carry the `updated_at` they were read with.
struct ClaimPlan {
    claimed: Vec<Claimed>,
    started_events: Vec<[String; 2]>,
    fails: Vec<(String, String, i64)>,
    defers: Vec<(String, i64, i64)>,
}

impl ClaimPlan {
    fn new(
        now: i64,
        candidates: Vec<TargetRow>,
        blocked: &std::collections::HashSet<String>,
        decide: &impl Fn(&TargetRow, bool) -> ClaimAction,
        metrics: &crate::metrics::Metrics,
    ) -> Result<ClaimPlan> {
        let mut plan = ClaimPlan {
            claimed: Vec::with_capacity(candidates.len()),
            started_events: Vec::with_capacity(candidates.len()),
            fails: Vec::new(),
            defers: Vec::new(),
        };
        for mut t in candidates {
            let next = t
                .destinations
                .get(t.destination_index as usize)
                .map(|d| d.target.as_str());
            let on_dnc = next.is_some_and(|n| blocked.contains(n));
            match decide(&t, on_dnc) {
                ClaimAction::Defer { until } => plan.defers.push((t.id, until, t.updated_at)),
                ClaimAction::Fail { reason } => plan.fails.push((t.id, reason, t.updated_at)),
                ClaimAction::Dial { destination_index } => {
                    let Some(dest) = t.destinations.get_mut(destination_index) else {
                        return Err(StoreError::Corrupt(format!(
                            "target {} has no destination {destination_index}",
                            t.id
                        )));
                    };
                    dest.try_count += 1;
                    let destination = dest.clone();
                    t.try_count_current += 1;
                    t.destination_index = destination_index as i32;
                    t.state = TargetState::Dialing;
                    let attempt = t.try_count_current as u32;
                    let due = t.next_attempt_at.max(t.not_before.unwrap_or(0));
                    metrics
                        .scheduler_lag
                        .observe((now - due).max(0) as f64 / 1000.0);
                    let call_id = super::new_id();
                    plan.started_events.push([
                        EventLog::serialize(&EventRecord::AttemptStarted {
                            at: now,
                            attempt_id: &call_id,
                            target_id: &t.id,
                            destination_index,
                            destination: &destination.target,
                            attempt,
                        }),
                        EventLog::serialize(&EventRecord::Transition {
                            at: now,
                            target_id: &t.id,
                            attempt_id: Some(call_id.as_str()),
                            from: "idle",
                            to: "dialing",
                            sip_code: None,
                            reason: None,
                        }),
                    ]);
                    plan.claimed.push(Claimed {
                        call_id,
                        target: t,
                        destination_index,
                        destination,
                        attempt,
                    });
                }
            }
        }
        Ok(plan)
    }
}

/// One completion's events, serialized: the attempt's (its answer when it
/// was not recorded live, its end, the agent's result) and the target's
/// transitions (logged only if the target moved).
struct PreparedEvents {
    attempt: Vec<String>,
    transitions: Vec<String>,
}

fn prepare_events(c: &Completion) -> PreparedEvents {
    let mut p = PreparedEvents {
        attempt: Vec::new(),
        transitions: Vec::new(),
    };
    if c.campaign_id.is_none() {
        return p;
    }
    let f = &c.call;
    let (attempt_id, target_id) = (c.call_id.as_str(), c.target_id.as_str());
    if c.expect == TargetState::Dialing {
        if let Some(at) = f.answered_at {
            p.attempt
                .push(EventLog::serialize(&EventRecord::AttemptAnswered {
                    at,
                    attempt_id,
                    target_id,
                }));
        }
    }
    p.attempt
        .push(EventLog::serialize(&EventRecord::AttemptEnded {
            at: f.ended_at,
            attempt_id,
            target_id,
            outcome: &f.outcome,
            sip_code: f.sip_code,
            q850_cause: f.q850_cause,
            hangup_by: f.hangup_by.as_deref(),
            reason: f.reason.as_deref(),
            invite_sent_at: f.invite_sent_at,
            ringing_at: f.ringing_at,
            answered_at: f.answered_at,
            ended_at: f.ended_at,
        }));
    if let Some(result) = f.result.as_deref() {
        p.attempt
            .push(EventLog::serialize(&EventRecord::AgentResult {
                at: f.ended_at,
                attempt_id,
                target_id,
                result,
            }));
    }
    for t in &c.transitions {
        let sip_code = if t.from == TargetState::Dialing {
            f.sip_code
        } else {
            None
        };
        p.transitions
            .push(EventLog::serialize(&EventRecord::Transition {
                at: f.ended_at,
                target_id,
                attempt_id: Some(attempt_id),
                from: t.from.as_str(),
                to: t.to.as_str(),
                sip_code,
                reason: t.reason.as_deref(),
            }));
    }
    p
}

/// Logs a recorded chunk's events: every attempt's, then the transitions of
/// the targets that moved.
fn log_completions(
    log: &mut EventLog,
    chunk: &[Completion],
    prepared: &mut [PreparedEvents],
    moved: &std::collections::HashSet<String>,
) {
    for (c, p) in chunk.iter().zip(prepared) {
        let Some(campaign) = c.campaign_id.as_deref() else {
            continue;
        };
        for e in p.attempt.drain(..) {
            log.push_json(campaign, e);
        }
        if moved.contains(&c.target_id) {
            for e in p.transitions.drain(..) {
                log.push_json(campaign, e);
            }
        }
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
        "scheduled_at": ts("scheduled_at")?,
        "request": serde_json::from_str::<Value>(&row.try_get::<String, _>("spec")?).unwrap_or(Value::Null),
        "attempts": serde_json::from_str::<Value>(&row.try_get::<String, _>("attempts")?).unwrap_or(Value::Null),
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
