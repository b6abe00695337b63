//! Recording: an attempt's answer and its end (the call row's final fields,
//! the target's transitions, an opt-out's DNC row), and the attempts left
//! open. Every state change is written with its `target_events` row in the
//! same transaction, and guarded on the state it expects, so a change is
//! never applied twice or over another node's.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Row};

use super::bulk::{self, Bulk, Column};
use super::events::{EventLog, EventRecord};
use super::{BeginWrite, Result, Store, StoreError};
use crate::append_event_pages;
use crate::domain::TargetState;
use crate::store::with_pool;

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
    /// The answering-machine detector's verdict: who answered, when (ms
    /// after the answer), why.
    pub amd: Option<(String, i64, String)>,
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

/// A call answered at `at` (ms), to record with [`Store::record_answers`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub call_id: String,
    pub target_id: String,
    pub campaign_id: Option<String>,
    pub at: i64,
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
    /// The try number (one-off calls reuse their row for each try).
    pub attempt: i32,
}

/// Rows per multi-row statement: on SQLite each row's cells are parameters,
/// and a statement takes at most 32,766 (a record's `calls` update takes 13
/// per row), so that a record batch is a few statements: each statement is a
/// round trip to the connection's thread.
const RECORD_ROWS_PER_STATEMENT: usize = 2_048;

impl Store {
    /// Records answered calls in one transaction: each call row's
    /// `answered_at`, and dialing → answered with its event for each target
    /// still dialing. Says, in order, which targets moved.
    pub async fn record_answers(&self, answers: &[Answer]) -> Result<Vec<bool>> {
        if answers.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let (moved, logged) = with_pool!(self, p => {
            let statements: Vec<_> = answers.chunks(RECORD_ROWS_PER_STATEMENT).map(answer_updates).collect();
            let _write = self.write_guard().await;
            let mut tx = p.begin_write().await?;
            let mut moved = Vec::with_capacity(answers.len());
            let mut log = EventLog::default();
            for (chunk, (mut calls, mut targets)) in answers.chunks(RECORD_ROWS_PER_STATEMENT).zip(statements) {
                let keep = bulk::keep_prepared(&calls);
                calls.build().persistent(keep).execute(&mut *tx).await?;
                let ids: HashSet<String> =
                    targets.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                let rows: Vec<&Answer> = chunk.iter().filter(|a| ids.contains(&a.target_id)).collect();
                moved.extend(chunk.iter().map(|a| ids.contains(&a.target_id)));
                if !rows.is_empty() {
                    answer_events(&rows).build().persistent(keep).execute(&mut *tx).await?;
                    log_answers(&mut log, &rows);
                }
            }
            let now = answers.iter().map(|a| a.at).max().unwrap_or_default();
            let logged = append_event_pages!(tx, log, now);
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
            let statements: Vec<_> = batch.chunks(RECORD_ROWS_PER_STATEMENT)
                .map(|chunk| completion_statements(chunk, now)).collect();
            let _write = self.write_guard().await;
            let mut tx = p.begin_write().await?;
            let mut log = EventLog::default();
            for ((chunk, prepared), mut s) in batch.chunks(RECORD_ROWS_PER_STATEMENT)
                .zip(prepared.chunks_mut(RECORD_ROWS_PER_STATEMENT)).zip(statements) {
                let keep = bulk::keep_prepared(&s.calls);
                // Only the completion that closes its call row goes on: a
                // second one (two nodes recovering the same dead node's
                // attempt) must not move a target that is on a new attempt.
                let closed: HashSet<String> =
                    s.calls.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                if closed.len() != chunk.len() {
                    s.moving.retain(|c| closed.contains(&c.call_id));
                    s.targets = target_updates(&s.moving, now);
                    s.events = transition_inserts(s.moving.iter().copied());
                }
                let Some(mut targets) = s.targets else {
                    log_completions(&mut log, chunk, prepared, &closed, &HashSet::new());
                    continue;
                };
                let moved: HashSet<String> =
                    targets.build_query_scalar::<String>().persistent(keep).fetch_all(&mut *tx).await?.into_iter().collect();
                log_completions(&mut log, chunk, prepared, &closed, &moved);
                if moved.len() != s.moving.len() {
                    s.events = transition_inserts(s.moving.iter().copied().filter(|c| moved.contains(&c.target_id)));
                }
                for mut qb in s.events {
                    qb.build().persistent(keep).execute(&mut *tx).await?;
                }
                for n in s.moving.iter().filter(|c| moved.contains(&c.target_id)).filter_map(|c| c.dnc_add.as_deref()) {
                    sqlx::query("INSERT INTO dnc (number, reason, created_at) VALUES ($1, 'opted_out', $2) ON CONFLICT DO NOTHING")
                        .bind(n).bind(now).execute(&mut *tx).await?;
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
        let base = "SELECT id, target_id, campaign_id, destination_index, answered_at, created_at, attempt FROM calls \
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
                    attempt: row.try_get("attempt")?,
                });
            }
            Ok(out)
        })
    }
}

/// For a chunk of answers: each call row's `answered_at`, and each target
/// still dialing moved to answered (`RETURNING` the ids that moved).
fn answer_updates<DB: Bulk>(chunk: &[Answer]) -> (QueryBuilder<'_, DB>, QueryBuilder<'_, DB>) {
    let mut calls = QueryBuilder::new("UPDATE calls SET answered_at = v.column2 FROM ");
    bulk::rows(
        &mut calls,
        vec![
            Column::Text(chunk.iter().map(|a| Some(a.call_id.as_str())).collect()),
            Column::BigInt(chunk.iter().map(|a| Some(a.at)).collect()),
        ],
    );
    calls.push(" WHERE calls.id = v.column1 AND calls.ended_at IS NULL");
    let mut targets =
        QueryBuilder::new("UPDATE targets SET state = 'answered', updated_at = v.column2 FROM ");
    bulk::rows(
        &mut targets,
        vec![
            Column::Text(chunk.iter().map(|a| Some(a.target_id.as_str())).collect()),
            Column::BigInt(chunk.iter().map(|a| Some(a.at)).collect()),
        ],
    );
    targets
        .push(" WHERE targets.id = v.column1 AND targets.state = 'dialing' RETURNING targets.id");
    (calls, targets)
}

/// The `dialing → answered` rows of the targets that moved.
fn answer_events<'a, DB: Bulk>(rows: &[&'a Answer]) -> QueryBuilder<'a, DB> {
    let mut events = QueryBuilder::new(
        "INSERT INTO target_events (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code) \
         SELECT column1, column2, 'dialing', 'answered', column3, column4, 200 FROM ",
    );
    bulk::rows(
        &mut events,
        vec![
            Column::Text(rows.iter().map(|a| Some(a.target_id.as_str())).collect()),
            Column::Text(rows.iter().map(|a| a.campaign_id.as_deref()).collect()),
            Column::BigInt(rows.iter().map(|a| Some(a.at)).collect()),
            Column::Text(rows.iter().map(|a| Some(a.call_id.as_str())).collect()),
        ],
    );
    events
}

/// Logs the answers of the targets that moved.
fn log_answers(log: &mut EventLog, rows: &[&Answer]) {
    for a in rows {
        if let Some(c) = &a.campaign_id {
            let (at, attempt_id, target_id) = (a.at, a.call_id.as_str(), a.target_id.as_str());
            log.push(
                c,
                &EventRecord::AttemptAnswered {
                    at,
                    attempt_id,
                    target_id,
                },
            );
            log.push(
                c,
                &EventRecord::Transition {
                    at,
                    target_id,
                    attempt_id: Some(attempt_id),
                    from: "dialing",
                    to: "answered",
                    sip_code: Some(200),
                    reason: None,
                },
            );
        }
    }
}

/// A chunk of completions' statements: the call rows' final fields; for
/// the targets that move, their update (`RETURNING` the ids that moved) and
/// their transitions' rows.
struct CompletionStatements<'a, DB: sqlx::Database> {
    calls: QueryBuilder<'a, DB>,
    moving: Vec<&'a Completion>,
    targets: Option<QueryBuilder<'a, DB>>,
    events: Vec<QueryBuilder<'a, DB>>,
}

fn completion_statements<DB: Bulk>(chunk: &[Completion], now: i64) -> CompletionStatements<'_, DB> {
    let mut calls = QueryBuilder::new(
        "UPDATE calls SET status = v.column2, outcome = v.column3, \
         sip_code = v.column4, q850_cause = v.column5, result = v.column6, \
         sip_call_id = COALESCE(v.column7, calls.sip_call_id), invite_sent_at = v.column8, \
         ringing_at = v.column9, answered_at = COALESCE(v.column10, calls.answered_at), ended_at = v.column11, \
         duration_ms = v.column11 - COALESCE(v.column10, calls.answered_at), \
         hangup_by = v.column12, reason = v.column13 FROM ",
    );
    let f = |get: fn(&CallFinal) -> Option<&str>| {
        Column::Text(chunk.iter().map(|c| get(&c.call)).collect())
    };
    let t = |get: fn(&CallFinal) -> Option<i64>| {
        Column::BigInt(chunk.iter().map(|c| get(&c.call)).collect())
    };
    let i = |get: fn(&CallFinal) -> Option<i32>| {
        Column::Int(chunk.iter().map(|c| get(&c.call)).collect())
    };
    bulk::rows(
        &mut calls,
        vec![
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
        ],
    );
    calls.push(" WHERE calls.id = v.column1 AND calls.ended_at IS NULL RETURNING calls.id");
    let moving: Vec<&Completion> = chunk.iter().filter(|c| !c.transitions.is_empty()).collect();
    let targets = target_updates(&moving, now);
    let events = transition_inserts(moving.iter().copied());
    CompletionStatements {
        calls,
        moving,
        targets,
        events,
    }
}

/// The targets' moves of some completions (`RETURNING` the ids that moved:
/// those still in the state their completion expects), if any.
fn target_updates<'a, DB: Bulk>(
    moving: &[&'a Completion],
    now: i64,
) -> Option<QueryBuilder<'a, DB>> {
    if moving.is_empty() {
        return None;
    }
    fn last(c: &Completion) -> &Transition {
        c.transitions.last().expect("non-empty")
    }
    let mut targets = QueryBuilder::new(
        "UPDATE targets SET state = v.column2, \
         next_attempt_at = COALESCE(v.column3, targets.next_attempt_at), destination_index = v.column4, \
         last_outcome = v.column5, reason = v.column6, lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
    );
    DB::bind_int8(&mut targets, now);
    targets.push(" FROM ");
    bulk::rows(
        &mut targets,
        vec![
            Column::Text(moving.iter().map(|c| Some(c.target_id.as_str())).collect()),
            Column::Text(moving.iter().map(|c| Some(last(c).to.as_str())).collect()),
            Column::BigInt(moving.iter().map(|c| c.next_attempt_at).collect()),
            Column::Int(
                moving
                    .iter()
                    .map(|c| Some(c.destination_index as i32))
                    .collect(),
            ),
            Column::Text(
                moving
                    .iter()
                    .map(|c| Some(c.call.outcome.as_str()))
                    .collect(),
            ),
            Column::Text(moving.iter().map(|c| last(c).reason.as_deref()).collect()),
            Column::Text(moving.iter().map(|c| Some(c.expect.as_str())).collect()),
        ],
    );
    targets
        .push(" WHERE targets.id = v.column1 AND targets.state = v.column7 RETURNING targets.id");
    Some(targets)
}

/// The `target_events` inserts for the transitions of some completions, a
/// multi-row statement per [`RECORD_ROWS_PER_STATEMENT`] events.
fn transition_inserts<'a, DB: Bulk>(
    completions: impl Iterator<Item = &'a Completion>,
) -> Vec<QueryBuilder<'a, DB>> {
    let rows: Vec<(&Completion, &Transition)> = completions
        .flat_map(|c| c.transitions.iter().map(move |t| (c, t)))
        .collect();
    let mut statements = Vec::new();
    for chunk in rows.chunks(RECORD_ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO target_events \
             (target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason) \
             SELECT column1, column2, column3, column4, column5, column6, column7, column8 FROM ",
        );
        bulk::rows(
            &mut qb,
            vec![
                Column::Text(
                    chunk
                        .iter()
                        .map(|(c, _)| Some(c.target_id.as_str()))
                        .collect(),
                ),
                Column::Text(
                    chunk
                        .iter()
                        .map(|(c, _)| c.campaign_id.as_deref())
                        .collect(),
                ),
                Column::Text(chunk.iter().map(|(_, t)| Some(t.from.as_str())).collect()),
                Column::Text(chunk.iter().map(|(_, t)| Some(t.to.as_str())).collect()),
                Column::BigInt(chunk.iter().map(|(c, _)| Some(c.call.ended_at)).collect()),
                Column::Text(
                    chunk
                        .iter()
                        .map(|(c, _)| Some(c.call_id.as_str()))
                        .collect(),
                ),
                Column::Int(
                    chunk
                        .iter()
                        .map(|(c, t)| {
                            if t.from == TargetState::Dialing {
                                c.call.sip_code
                            } else {
                                None
                            }
                        })
                        .collect(),
                ),
                Column::Text(chunk.iter().map(|(_, t)| t.reason.as_deref()).collect()),
            ],
        );
        statements.push(qb);
    }
    statements
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
    if let (Some((answered_by, amd_ms, cause)), Some(answered_at)) = (&c.amd, f.answered_at) {
        p.attempt
            .push(EventLog::serialize(&EventRecord::AttemptAmd {
                at: answered_at + amd_ms,
                attempt_id,
                target_id,
                answered_by,
                amd_ms: *amd_ms,
                cause,
            }));
    }
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
    closed: &HashSet<String>,
    moved: &HashSet<String>,
) {
    for (c, p) in chunk.iter().zip(prepared) {
        let Some(campaign) = c.campaign_id.as_deref() else {
            continue;
        };
        if !closed.contains(&c.call_id) {
            continue;
        }
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
