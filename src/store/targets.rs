//! Targets and their transition events.
//!
//! Bulk insert is the hot path of an import: rows go in multi-row
//! `INSERT … ON CONFLICT DO NOTHING` statements inside one transaction per
//! batch. Ids are ours, so a statement that stored every row needs no answer
//! back (no `RETURNING`: on SQLite each returned row costs a thread hand-off);
//! only when some rows conflicted are the stored ids looked up, and the rest
//! classified as an idempotent `client_token` hit or a duplicate destination.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;

use super::{BeginWrite, Page, PageRequest, Result, Store, StoreError};
pub use crate::domain::target::NewTarget;
use crate::domain::{Destination, TargetState};
use crate::store::with_pool;

impl NewTarget {
    fn dest_key(&self) -> &str {
        &self.destinations[0].target
    }
}

/// What became of one row of a bulk insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Created(String),
    /// The `client_token` was seen before: this is that target.
    Existing(String),
    /// Another target of the outdial already has this first destination.
    Duplicate {
        existing_id: String,
    },
}

/// A stored target.
#[derive(Debug, Clone)]
pub struct TargetRow {
    pub id: String,
    pub outdial_id: String,
    pub name: String,
    pub destinations: Vec<Destination>,
    pub destination_index: i32,
    pub try_count_max: Option<i32>,
    pub try_count_current: i32,
    pub state: TargetState,
    pub next_attempt_at: i64,
    pub not_before: Option<i64>,
    pub expires_at: Option<i64>,
    pub timezone: Option<String>,
    pub variables: Value,
    pub client_token: Option<String>,
    pub last_outcome: Option<String>,
    pub reason: Option<String>,
    /// A campaign fallback's message (`""`: none could be made).
    pub fallback_message_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// `none`, `express` or `express_written` (absent: none on record).
    pub consent: Option<String>,
    pub consent_at: Option<i64>,
    /// The compliance gate's last refusal: its reason, when, and (when it
    /// was only "not now") the first moment every rule allows the call.
    pub refusal: Option<String>,
    pub refusal_at: Option<i64>,
    pub refusal_until: Option<i64>,
}

/// One state transition of a target.
#[derive(Debug, Clone)]
pub struct TargetEvent {
    pub id: i64,
    pub target_id: String,
    pub campaign_id: Option<String>,
    pub from_state: String,
    pub to_state: String,
    pub at: i64,
    pub attempt_id: Option<String>,
    pub sip_code: Option<i32>,
    pub reason: Option<String>,
}

pub(super) const TARGET_COLUMNS: &str =
    "id, outdial_id, name, destinations, destination_index, try_count_max, \
    try_count_current, state, next_attempt_at, not_before, expires_at, timezone, variables, \
    client_token, last_outcome, reason, fallback_message_id, created_at, updated_at, \
    consent, consent_at, refusal, refusal_at, refusal_until";

/// Rows per INSERT statement: 16 parameters each, under SQLite's and PostgreSQL's limits.
const ROWS_PER_STATEMENT: usize = 1000;

macro_rules! decode_target {
    ($row:expr) => {{
        let row = $row;
        let destinations: String = row.try_get("destinations")?;
        let variables: String = row.try_get("variables")?;
        let state: String = row.try_get("state")?;
        TargetRow {
            id: row.try_get("id")?,
            outdial_id: row.try_get("outdial_id")?,
            name: row.try_get("name")?,
            destinations: serde_json::from_str(&destinations)
                .map_err(|e| StoreError::Corrupt(format!("target destinations: {e}")))?,
            destination_index: row.try_get("destination_index")?,
            try_count_max: row.try_get("try_count_max")?,
            try_count_current: row.try_get("try_count_current")?,
            state: TargetState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("target state {state:?}")))?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            not_before: row.try_get("not_before")?,
            expires_at: row.try_get("expires_at")?,
            timezone: row.try_get("timezone")?,
            variables: serde_json::from_str(&variables)
                .map_err(|e| StoreError::Corrupt(format!("target variables: {e}")))?,
            client_token: row.try_get("client_token")?,
            last_outcome: row.try_get("last_outcome")?,
            reason: row.try_get("reason")?,
            fallback_message_id: row.try_get("fallback_message_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            consent: row.try_get("consent")?,
            consent_at: row.try_get("consent_at")?,
            refusal: row.try_get("refusal")?,
            refusal_at: row.try_get("refusal_at")?,
            refusal_until: row.try_get("refusal_until")?,
        }
    }};
}

/// Decodes a row selected with the target columns.
pub(crate) fn decode_target_row<R: Row>(row: &R) -> Result<TargetRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(decode_target!(row))
}

impl Store {
    /// Stores a batch of validated targets in one transaction. The answer has
    /// one entry per input row, in order.
    pub async fn insert_targets(
        &self,
        outdial_id: &str,
        batch: &[NewTarget],
        now: i64,
    ) -> Result<Vec<Inserted>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<String> = batch
            .iter()
            .map(|t| serde_json::to_string(&t.destinations).expect("destinations serialize"))
            .collect();
        let mut inserted: HashSet<String> = HashSet::with_capacity(batch.len());
        let mut taken_by_token: HashMap<String, String> = HashMap::new();
        let mut taken_by_dest: HashMap<String, String> = HashMap::new();
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (chunk, enc) in batch.chunks(ROWS_PER_STATEMENT).zip(encoded.chunks(ROWS_PER_STATEMENT)) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO targets (id, outdial_id, name, destinations, dest_key, try_count_max, \
                     state, next_attempt_at, not_before, expires_at, timezone, variables, client_token, \
                     created_at, updated_at, consent, consent_at) ",
                );
                qb.push_values(chunk.iter().zip(enc), |mut b, (t, dests)| {
                    b.push_bind(&t.id)
                        .push_bind(outdial_id)
                        .push_bind(&t.name)
                        .push_bind(dests)
                        .push_bind(t.dest_key())
                        .push_bind(t.try_count_max.map(|n| n as i32))
                        .push("'idle'")
                        .push_bind(t.not_before.map_or(now, |nb| nb.max(now)))
                        .push_bind(t.not_before)
                        .push_bind(t.expires_at)
                        .push_bind(&t.timezone)
                        .push_bind(&t.variables_json)
                        .push_bind(&t.client_token)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(&t.consent)
                        .push_bind(t.consent_at);
                });
                qb.push(" ON CONFLICT DO NOTHING");
                let stored = qb.build().execute(&mut *tx).await?.rows_affected();
                if stored as usize == chunk.len() {
                    inserted.extend(chunk.iter().map(|t| t.id.clone()));
                } else {
                    // Some rows conflicted: ask which of this chunk's ids went in.
                    let mut qb = sqlx::QueryBuilder::new("SELECT id FROM targets WHERE id IN (");
                    let mut sep = qb.separated(", ");
                    for t in chunk {
                        sep.push_bind(&t.id);
                    }
                    qb.push(")");
                    let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                    inserted.extend(ids);
                }
            }
            // Classify the rows that did not go in, in one lookup per kind.
            let missing: Vec<&NewTarget> = batch.iter().filter(|t| !inserted.contains(&t.id)).collect();
            for chunk in missing.chunks(ROWS_PER_STATEMENT) {
                let tokens: Vec<&str> = chunk.iter().filter_map(|t| t.client_token.as_deref()).collect();
                if !tokens.is_empty() {
                    let mut qb = sqlx::QueryBuilder::new("SELECT id, client_token FROM targets WHERE outdial_id = ");
                    qb.push_bind(outdial_id).push(" AND client_token IN (");
                    let mut sep = qb.separated(", ");
                    for tok in &tokens {
                        sep.push_bind(*tok);
                    }
                    qb.push(")");
                    for row in qb.build().fetch_all(&mut *tx).await? {
                        taken_by_token.insert(row.try_get("client_token")?, row.try_get("id")?);
                    }
                }
                let mut qb = sqlx::QueryBuilder::new("SELECT id, dest_key FROM targets WHERE outdial_id = ");
                qb.push_bind(outdial_id).push(" AND dest_key IN (");
                let mut sep = qb.separated(", ");
                for t in chunk {
                    sep.push_bind(t.dest_key());
                }
                qb.push(")");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    taken_by_dest.insert(row.try_get("dest_key")?, row.try_get("id")?);
                }
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        batch
            .iter()
            .map(|t| {
                if inserted.contains(&t.id) {
                    return Ok(Inserted::Created(t.id.clone()));
                }
                if let Some(existing) = t.client_token.as_ref().and_then(|k| taken_by_token.get(k))
                {
                    return Ok(Inserted::Existing(existing.clone()));
                }
                match taken_by_dest.get(t.dest_key()) {
                    Some(existing) => Ok(Inserted::Duplicate {
                        existing_id: existing.clone(),
                    }),
                    None => Err(StoreError::Corrupt(format!(
                        "target {} was neither stored nor found as a duplicate",
                        t.dest_key()
                    ))),
                }
            })
            .collect()
    }

    pub async fn get_target(&self, id: &str) -> Result<TargetRow> {
        let sql = format!("SELECT {TARGET_COLUMNS} FROM targets WHERE id = $1");
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            decode_target_row(&row)
        })
    }

    /// A page of an outdial's targets, optionally only those in `state`.
    pub async fn list_targets(
        &self,
        outdial_id: &str,
        state: Option<TargetState>,
        page: &PageRequest,
    ) -> Result<Page<TargetRow>> {
        let filter = if state.is_some() {
            "AND state = $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE outdial_id = $1 AND id > $2 {filter} ORDER BY id LIMIT $3"
        );
        let state = state.map(|s| s.as_str());
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query(&sql).bind(outdial_id).bind(page.after_or_start()).bind(page.fetch_limit());
            if let Some(s) = state {
                q = q.bind(s);
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(decode_target_row(row)?);
            }
            Ok::<_, StoreError>(out)
        })?;
        Ok(page.finish(rows, |t| t.id.clone()))
    }

    /// Deletes a target that is not being dialed.
    pub async fn delete_target(&self, id: &str) -> Result<()> {
        let done = with_pool!(self, p => sqlx::query("DELETE FROM targets WHERE id = $1 AND state <> 'dialing'")
            .bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        if done == 0 {
            let t = self.get_target(id).await?;
            return Err(StoreError::Conflict(format!(
                "target {id} is {} right now; delete it once the call ends",
                t.state
            )));
        }
        Ok(())
    }

    /// Counts an outdial's targets by state (states with no targets are absent).
    pub async fn count_targets_by_state(
        &self,
        outdial_id: &str,
    ) -> Result<Vec<(TargetState, i64)>> {
        let rows: Vec<(String, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT state, COUNT(*) FROM targets WHERE outdial_id = $1 GROUP BY state",
        ).bind(outdial_id).fetch_all(p).await)?;
        rows.into_iter()
            .map(|(s, n)| {
                TargetState::parse(&s)
                    .map(|st| (st, n))
                    .ok_or_else(|| StoreError::Corrupt(format!("target state {s:?}")))
            })
            .collect()
    }

    /// A page of one target's transitions, oldest first.
    pub async fn list_target_events(
        &self,
        target_id: &str,
        page: &PageRequest,
    ) -> Result<Page<TargetEvent>> {
        let after: i64 = match page.after.as_deref() {
            None => 0,
            Some(s) => s.parse().map_err(|_| StoreError::NotFound)?,
        };
        let rows = with_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, target_id, campaign_id, from_state, to_state, at, attempt_id, sip_code, reason \
                 FROM target_events WHERE target_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(target_id).bind(after).bind(page.fetch_limit())
            .fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(TargetEvent {
                    id: row.try_get("id")?,
                    target_id: row.try_get("target_id")?,
                    campaign_id: row.try_get("campaign_id")?,
                    from_state: row.try_get("from_state")?,
                    to_state: row.try_get("to_state")?,
                    at: row.try_get("at")?,
                    attempt_id: row.try_get("attempt_id")?,
                    sip_code: row.try_get("sip_code")?,
                    reason: row.try_get("reason")?,
                });
            }
            Ok::<_, StoreError>(out)
        })?;
        Ok(page.finish(rows, |e| e.id.to_string()))
    }
}
