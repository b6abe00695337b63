//! Claims: picking due idle targets of an outdial, deciding each (dial,
//! fail, defer) and opening the attempt (`calls`) rows of the dialed ones,
//! with their `idle → dialing` events, in one transaction. Every write is
//! guarded on the row being as read, so a target is never claimed twice or
//! over another node's claim.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::bulk::{self, Bulk, Column};
use super::dialect;
use super::events::{EventLog, EventRecord};
pub use super::history::PastCall;
use super::history::{past_call, past_calls_query};
use super::targets::{TargetRow, TARGET_COLUMNS};
use super::{BeginWrite, Result, Store, StoreError};
use crate::append_event_pages;
use crate::domain::{Destination, TargetState};
use crate::store::with_pool;

/// What to do with one due target, decided by the caller's rules.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Dial destination `destination_index` now.
    Dial { destination_index: usize },
    /// Never dial it again (`expired`, `dnc`, …).
    Fail { reason: String },
    /// Not now (outside its calling window, or refused by the compliance
    /// gate for now: `refusal` names why): look again at `until`.
    Defer {
        until: i64,
        refusal: Option<&'static str>,
    },
}

/// What a claim knows of a candidate besides its row.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Its next destination is on the DNC list.
    pub on_dnc: bool,
    /// The calls to its next destination since the scope's `history_since`,
    /// across every campaign and one-off call (empty when not asked for).
    pub history: &'a [PastCall],
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
    /// Read each candidate's calls since this instant (ms) for `decide`
    /// (None: the campaign has no rule that reads them).
    pub history_since: Option<i64>,
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

/// Rows per multi-row statement: on SQLite each row's cells are parameters,
/// and a statement takes at most 32,766 (a claim's statements take up to 5
/// per row), so that a claim is a few statements, not a few per 500 rows:
/// each statement is a round trip to the connection's thread.
const CLAIM_ROWS_PER_STATEMENT: usize = 3_000;
/// Numbers per DNC lookup (one parameter each on SQLite).
const DNC_NUMBERS_PER_STATEMENT: usize = 10_000;

/// The calls since `$since` to the candidates' next destinations, by number.
macro_rules! history_of {
    ($candidates:expr, $since:expr, $exec:expr) => {{
        let mut by_number: HashMap<String, Vec<PastCall>> = HashMap::new();
        if let Some(since) = $since {
            let numbers: Vec<&str> = next_numbers($candidates);
            for chunk in numbers.chunks(DNC_NUMBERS_PER_STATEMENT) {
                let mut qb = past_calls_query(since);
                bulk::is_in(&mut qb, "to_uri", chunk.to_vec());
                for row in qb.build().fetch_all($exec).await? {
                    let (number, call) = past_call(&row)?;
                    by_number.entry(number).or_default().push(call);
                }
            }
        }
        by_number
    }};
}

/// Each candidate's next destination.
fn next_numbers(candidates: &[TargetRow]) -> Vec<&str> {
    candidates
        .iter()
        .filter_map(|t| {
            t.destinations
                .get(t.destination_index as usize)
                .map(|d| d.target.as_str())
        })
        .collect()
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
        let mut blocked = HashSet::new();
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
    /// sees each candidate with its [`Facts`] (its next destination on the
    /// DNC list; that number's calls, when the scope asks) and says what to
    /// do; dialed ones come back with their attempt rows opened.
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
        decide: impl Fn(&TargetRow, &Facts<'_>) -> ClaimAction,
    ) -> Result<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let (claimed, logged) = with_pool!(self, p => {
            let select = format!(
                "SELECT {TARGET_COLUMNS} FROM targets WHERE outdial_id = $1 AND state = 'idle' \
                 AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{}",
                dialect::skip_locked(p),
            );
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
                    let history = history_of!(&candidates, scope.history_since, $exec);
                    ClaimPlan::new(now, candidates, &blocked, &history, &decide, &self.metrics)?
                }};
            }
            if dialect::decide_before_write(p) {
                plan = Some(read_and_decide!(p));
            }
            let _write = self.write_guard().await;
            let mut tx = p.begin_write().await?;
            // A campaign paused or stopped since its task read its settings
            // claims nothing: the status is checked in the claim's transaction.
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM campaigns WHERE id = $1")
                .bind(scope.campaign_id).fetch_optional(&mut *tx).await?;
            if matches!(status.as_deref(), Some("paused" | "stopping" | "stopped" | "finished")) {
                return Ok(Vec::new());
            }
            let plan = match plan {
                Some(plan) => plan,
                None => read_and_decide!(&mut *tx),
            };
            let ClaimPlan { mut claimed, started_events, fails, defers } = plan;
            let mut log = EventLog::default();
            // Deferred and failed ones in a statement or two per chunk.
            for chunk in defers.chunks(CLAIM_ROWS_PER_STATEMENT) {
                let mut qb = defer_updates(chunk, now);
                let keep = bulk::keep_prepared(&qb);
                qb.build().persistent(keep).execute(&mut *tx).await?;
            }
            for chunk in fails.chunks(CLAIM_ROWS_PER_STATEMENT) {
                let mut qb = fail_updates(chunk, now);
                let keep = bulk::keep_prepared(&qb);
                let moved: HashSet<String> =
                    qb.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                let rows: Vec<&Fail> = chunk.iter().filter(|f| moved.contains(&f.id)).collect();
                if !rows.is_empty() {
                    failed_events(scope, now, &rows).build().persistent(keep).execute(&mut *tx).await?;
                    log_fails(&mut log, scope.campaign_id, now, &rows);
                }
            }
            // The dialed ones in three statements per chunk, not three per row.
            let dests: Vec<String> = claimed.iter()
                .map(|c| serde_json::to_string(&c.target.destinations).expect("destinations serialize"))
                .collect();
            let mut dialed = HashSet::new();
            for (chunk, dests) in claimed.chunks(CLAIM_ROWS_PER_STATEMENT).zip(dests.chunks(CLAIM_ROWS_PER_STATEMENT)) {
                let mut update = dial_update(scope, now, chunk, dests);
                let keep = bulk::keep_prepared(&update);
                let moved: HashSet<String> =
                    update.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                let rows: Vec<&Claimed> = chunk.iter().filter(|c| moved.contains(&c.target.id)).collect();
                if rows.is_empty() {
                    continue;
                }
                dialing_events(scope, now, &rows).build().persistent(keep).execute(&mut *tx).await?;
                call_rows(scope, now, &rows).build().persistent(keep).execute(&mut *tx).await?;
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
}

/// Moves a chunk of dialed targets from idle to dialing, each guarded on
/// being as read (`RETURNING` the ids that moved). `dests` holds each one's
/// destinations, serialized, with the dialed one's try count raised.
fn dial_update<'a, DB: Bulk>(
    scope: &ClaimScope<'a>,
    now: i64,
    chunk: &'a [Claimed],
    dests: &'a [String],
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "UPDATE targets SET state = 'dialing', destinations = v.column2, \
         destination_index = v.column3, try_count_current = try_count_current + 1, lease_owner = ",
    );
    DB::bind_text(&mut qb, Some(scope.node_id));
    qb.push(", lease_expires_at = ");
    DB::bind_int8(&mut qb, now + scope.lease_ms);
    qb.push(", updated_at = ");
    DB::bind_int8(&mut qb, now);
    qb.push(" FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(chunk.iter().map(|c| Some(c.target.id.as_str())).collect()),
            Column::Text(dests.iter().map(|d| Some(d.as_str())).collect()),
            Column::Int(
                chunk
                    .iter()
                    .map(|c| Some(c.destination_index as i32))
                    .collect(),
            ),
            Column::BigInt(chunk.iter().map(|c| Some(c.target.updated_at)).collect()),
            Column::Int(
                chunk
                    .iter()
                    .map(|c| Some(c.target.try_count_current - 1))
                    .collect(),
            ),
        ],
    );
    qb.push(
        " WHERE targets.id = v.column1 AND targets.state = 'idle' \
         AND targets.updated_at = v.column4 AND targets.try_count_current = v.column5 RETURNING targets.id",
    );
    qb
}

/// The `idle → dialing` rows of the targets that moved.
fn dialing_events<'a, DB: Bulk>(
    scope: &ClaimScope<'a>,
    now: i64,
    rows: &[&'a Claimed],
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id) SELECT column1, ",
    );
    DB::bind_text(&mut qb, Some(scope.campaign_id));
    qb.push(", 'idle', 'dialing', ");
    DB::bind_int8(&mut qb, now);
    qb.push(", column2 FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(rows.iter().map(|c| Some(c.target.id.as_str())).collect()),
            Column::Text(rows.iter().map(|c| Some(c.call_id.as_str())).collect()),
        ],
    );
    qb
}

/// The attempt (`calls`) rows of the targets that moved, `in_progress`.
fn call_rows<'a, DB: Bulk>(
    scope: &ClaimScope<'a>,
    now: i64,
    rows: &[&'a Claimed],
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO calls (id, campaign_id, target_id, destination_index, \
         attempt, agent_id, trunk, status, to_uri, node_id, created_at) SELECT column1, ",
    );
    DB::bind_text(&mut qb, Some(scope.campaign_id));
    qb.push(", column2, column3, column4, ");
    DB::bind_text(&mut qb, scope.agent_id);
    qb.push(", ");
    DB::bind_text(&mut qb, Some(scope.trunk));
    qb.push(", 'in_progress', column5, ");
    DB::bind_text(&mut qb, Some(scope.node_id));
    qb.push(", ");
    DB::bind_int8(&mut qb, now);
    qb.push(" FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(rows.iter().map(|c| Some(c.call_id.as_str())).collect()),
            Column::Text(rows.iter().map(|c| Some(c.target.id.as_str())).collect()),
            Column::Int(
                rows.iter()
                    .map(|c| Some(c.destination_index as i32))
                    .collect(),
            ),
            Column::Int(rows.iter().map(|c| Some(c.attempt as i32)).collect()),
            Column::Text(
                rows.iter()
                    .map(|c| Some(c.destination.target.as_str()))
                    .collect(),
            ),
        ],
    );
    qb
}

/// Moves deferred targets' next look, each guarded on being as read.
fn defer_updates<DB: Bulk>(defers: &[Defer], now: i64) -> QueryBuilder<'_, DB> {
    // A compliance refusal is kept on the target (why, when, until when).
    let mut qb = QueryBuilder::new(
        "UPDATE targets SET next_attempt_at = v.column2, refusal = COALESCE(v.column4, targets.refusal), \
         refusal_at = COALESCE(v.column5, targets.refusal_at), \
         refusal_until = COALESCE(v.column6, targets.refusal_until) FROM ",
    );
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(defers.iter().map(|d| Some(d.id.as_str())).collect()),
            Column::BigInt(defers.iter().map(|d| Some(d.until)).collect()),
            Column::BigInt(defers.iter().map(|d| Some(d.updated_at)).collect()),
            Column::Text(defers.iter().map(|d| d.refusal).collect()),
            Column::BigInt(defers.iter().map(|d| d.refusal.map(|_| now)).collect()),
            Column::BigInt(defers.iter().map(|d| d.refusal.map(|_| d.until)).collect()),
        ],
    );
    qb.push(" WHERE targets.id = v.column1 AND targets.state = 'idle' AND targets.updated_at = v.column3");
    qb
}

/// Moves failed targets from idle to failed, each guarded on being as read
/// (`RETURNING` the ids that moved).
fn fail_updates<DB: Bulk>(fails: &[Fail], now: i64) -> QueryBuilder<'_, DB> {
    let mut qb =
        QueryBuilder::new("UPDATE targets SET state = 'failed', reason = v.column2, updated_at = ");
    DB::bind_int8(&mut qb, now);
    qb.push(" FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(fails.iter().map(|f| Some(f.id.as_str())).collect()),
            Column::Text(fails.iter().map(|f| Some(f.reason.as_str())).collect()),
            Column::BigInt(fails.iter().map(|f| Some(f.updated_at)).collect()),
        ],
    );
    qb.push(
        " WHERE targets.id = v.column1 AND targets.state = 'idle' \
         AND targets.updated_at = v.column3 RETURNING targets.id",
    );
    qb
}

/// The `idle → failed` rows of the targets that moved.
fn failed_events<'a, DB: Bulk>(
    scope: &ClaimScope<'a>,
    now: i64,
    rows: &[&'a Fail],
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, reason) SELECT column1, ",
    );
    DB::bind_text(&mut qb, Some(scope.campaign_id));
    qb.push(", 'idle', 'failed', ");
    DB::bind_int8(&mut qb, now);
    qb.push(", column2 FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(rows.iter().map(|f| Some(f.id.as_str())).collect()),
            Column::Text(rows.iter().map(|f| Some(f.reason.as_str())).collect()),
        ],
    );
    qb
}

/// Logs the `idle → failed` transitions of the targets that moved.
fn log_fails(log: &mut EventLog, campaign_id: &str, now: i64, rows: &[&Fail]) {
    for f in rows {
        log.push(
            campaign_id,
            &EventRecord::Transition {
                at: now,
                target_id: &f.id,
                attempt_id: None,
                from: "idle",
                to: "failed",
                sip_code: None,
                reason: Some(f.reason.as_str()),
            },
        );
    }
}

/// A claim decided: the targets to dial (with their `attempt.started` and
/// `idle → dialing` events, serialized), to fail and to defer. Failed and
/// deferred targets carry the `updated_at` they were read with.
struct ClaimPlan {
    claimed: Vec<Claimed>,
    started_events: Vec<[String; 2]>,
    fails: Vec<Fail>,
    defers: Vec<Defer>,
}

/// A target that is never dialed again, with the `updated_at` it was read with.
struct Fail {
    id: String,
    reason: String,
    updated_at: i64,
}

/// A target not dialed now, looked at again at `until`.
struct Defer {
    id: String,
    until: i64,
    updated_at: i64,
    refusal: Option<&'static str>,
}

impl ClaimPlan {
    fn new(
        now: i64,
        candidates: Vec<TargetRow>,
        blocked: &HashSet<String>,
        history: &HashMap<String, Vec<PastCall>>,
        decide: &impl Fn(&TargetRow, &Facts<'_>) -> ClaimAction,
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
            let facts = Facts {
                on_dnc: next.is_some_and(|n| blocked.contains(n)),
                history: next
                    .and_then(|n| history.get(n))
                    .map_or(&[][..], Vec::as_slice),
            };
            match decide(&t, &facts) {
                ClaimAction::Defer { until, refusal } => plan.defers.push(Defer {
                    id: t.id,
                    until,
                    updated_at: t.updated_at,
                    refusal,
                }),
                ClaimAction::Fail { reason } => plan.fails.push(Fail {
                    id: t.id,
                    reason,
                    updated_at: t.updated_at,
                }),
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
