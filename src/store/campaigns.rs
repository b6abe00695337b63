//! Campaign rows: a status (changed with its event, see
//! [`Store::change_campaign_status`], kept in the status log), the three documents a campaign ties
//! together, and its parsed settings (`spec`, stored as its JSON document).

use sqlx::Row;

use super::events::{EventLog, EventRecord};
use super::{
    conflict_on_unique, dialect, new_id, BeginWrite, Page, PageRequest, Result, Store, StoreError,
};
use crate::append_event_pages;
use crate::domain::specs::{to_document, CampaignSpec};
use crate::domain::StatusChange;
use crate::store::with_pool;

#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub status: String,
    /// Why the status is what it is (a trunk error that paused it, a forced stop).
    pub status_reason: Option<String>,
    /// Why, when code branches on it (a forced stop, a wait for the daily start).
    pub status_cause: Option<crate::domain::StatusCause>,
    pub outdial_id: String,
    pub outplan_id: String,
    pub agent_id: Option<String>,
    pub spec: CampaignSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a campaign is made of; stored on create and on every update.
#[derive(Debug, Clone)]
pub struct CampaignFields<'a> {
    pub name: &'a str,
    pub outdial_id: &'a str,
    pub outplan_id: &'a str,
    pub agent_id: Option<&'a str>,
    pub spec: &'a CampaignSpec,
}

/// Statuses in which a campaign may be deleted.
pub const DELETABLE_STATUSES: [&str; 3] = ["draft", "stopped", "finished"];

const COLUMNS: &str =
    "id, name, status, status_reason, status_cause, outdial_id, outplan_id, agent_id, spec, created_at, updated_at";

macro_rules! decode_campaign {
    ($row:expr) => {{
        let row = $row;
        let spec: String = row.try_get("spec")?;
        CampaignRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: row.try_get("status")?,
            status_reason: row.try_get("status_reason")?,
            status_cause: row
                .try_get::<Option<String>, _>("status_cause")?
                .as_deref()
                .and_then(crate::domain::StatusCause::parse),
            outdial_id: row.try_get("outdial_id")?,
            outplan_id: row.try_get("outplan_id")?,
            agent_id: row.try_get("agent_id")?,
            spec: serde_json::from_str(&spec)
                .map_err(|e| StoreError::Corrupt(format!("campaign spec: {e}")))?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

impl Store {
    pub async fn insert_campaign(&self, f: &CampaignFields<'_>, now: i64) -> Result<CampaignRow> {
        let id = new_id();
        let spec = to_document(f.spec).to_string();
        with_pool!(self, p => sqlx::query(
            "INSERT INTO campaigns (id, name, status, outdial_id, outplan_id, agent_id, spec, created_at, updated_at) \
             VALUES ($1, $2, 'draft', $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id).bind(f.name).bind(f.outdial_id).bind(f.outplan_id).bind(f.agent_id).bind(&spec).bind(now)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| conflict_on_unique(e, "campaign"))?;
        self.get_campaign(&id).await
    }

    pub async fn get_campaign(&self, id: &str) -> Result<CampaignRow> {
        let sql = format!("SELECT {COLUMNS} FROM campaigns WHERE id = $1");
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            Ok(decode_campaign!(&row))
        })
    }

    pub async fn list_campaigns(
        &self,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<CampaignRow>> {
        let filter = if status.is_some() {
            "AND status = $3"
        } else {
            ""
        };
        let sql =
            format!("SELECT {COLUMNS} FROM campaigns WHERE id > $1 {filter} ORDER BY id LIMIT $2");
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query(&sql).bind(page.after_or_start()).bind(page.fetch_limit());
            if let Some(s) = status {
                q = q.bind(s);
            }
            let mut out = Vec::new();
            for row in &q.fetch_all(p).await? {
                out.push(decode_campaign!(row));
            }
            Ok::<_, StoreError>(out)
        })?;
        Ok(page.finish(rows, |c| c.id.clone()))
    }

    pub async fn update_campaign(
        &self,
        id: &str,
        f: &CampaignFields<'_>,
        now: i64,
    ) -> Result<CampaignRow> {
        let spec = to_document(f.spec).to_string();
        let done = with_pool!(self, p => sqlx::query(
            "UPDATE campaigns SET name = $2, outdial_id = $3, outplan_id = $4, agent_id = $5, spec = $6, \
             updated_at = $7 WHERE id = $1",
        )
        .bind(id).bind(f.name).bind(f.outdial_id).bind(f.outplan_id).bind(f.agent_id).bind(&spec).bind(now)
        .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| conflict_on_unique(e, "campaign"))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_campaign(id).await
    }

    /// Deletes a campaign that is not running (draft, stopped or finished).
    pub async fn delete_campaign(&self, id: &str) -> Result<()> {
        let done = with_pool!(self, p => sqlx::query(
            "DELETE FROM campaigns WHERE id = $1 AND status IN ('draft', 'stopped', 'finished')",
        ).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            let c = self.get_campaign(id).await?;
            return Err(StoreError::Conflict(format!(
                "campaign {id} is {}; stop it before deleting it",
                c.status
            )));
        }
        Ok(())
    }
}

/// One change of a campaign's status, as the status log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLogEntry {
    pub at: i64,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    /// `scheduler`, `api:<key name>`, `console:<key name>`, or `unknown`
    /// for changes made before who was kept.
    pub by: String,
}

/// Campaign status changes, each with its event.
impl Store {
    /// Makes a status change if the campaign's status allows its move;
    /// returns whether it changed. The change goes into the status log and
    /// the event log in the same transaction.
    pub async fn change_campaign_status(
        &self,
        id: &str,
        change: &StatusChange<'_>,
        now: i64,
    ) -> Result<bool> {
        let from = change.m.from_strs();
        let to = change.m.to().as_str();
        let (reason, by) = (change.reason, change.by);
        let cause = change.cause.map(crate::domain::StatusCause::as_str);
        let started = std::time::Instant::now();
        let _write = self.write_guard().await;
        let logged = with_pool!(self, p => {
            let select = format!("SELECT status FROM campaigns WHERE id = $1{}", dialect::lock_row(p));
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
            sqlx::query("INSERT INTO campaign_status_log (campaign_id, at, from_status, to_status, reason, changed_by) \
                VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(id).bind(now).bind(&current).bind(to).bind(reason).bind(by).execute(&mut *tx).await?;
            let mut log = EventLog::default();
            log.push(id, &EventRecord::CampaignStatus { at: now, from: &current, to, reason, by });
            let logged = append_event_pages!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>(logged)
        })?;
        self.logged(logged);
        self.observe("campaign_status", started);
        Ok(true)
    }

    /// Logs a move of a campaign's pacing under its abandonment ceiling
    /// (`campaign.abandonment`).
    pub async fn log_abandonment(&self, id: &str, e: &EventRecord<'_>) -> Result<()> {
        let _write = self.write_guard().await;
        let at = match e {
            EventRecord::CampaignAbandonment { at, .. } => *at,
            _ => return Err(StoreError::Corrupt("not an abandonment event".into())),
        };
        let logged = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut log = EventLog::default();
            log.push(id, e);
            let logged = append_event_pages!(tx, log, at);
            tx.commit().await?;
            Ok::<_, StoreError>(logged)
        })?;
        self.logged(logged);
        Ok(())
    }

    /// A campaign's status changes, newest first, at most `limit`.
    /// A campaign's calls since `since` (ms): how many were answered live
    /// (not by a machine or a fax, by the detector's verdict), how many of
    /// those were abandoned (nobody taken to the person), and how many were
    /// answered by a machine.
    pub async fn abandonment_counts(&self, id: &str, since: i64) -> Result<(i64, i64, i64)> {
        with_pool!(self, p => {
            let row: (i64, i64, i64) = sqlx::query_as(
                "SELECT \
                 COALESCE(SUM(CASE WHEN answered_at IS NOT NULL AND (answered_by IS NULL OR answered_by IN ('human', 'unknown')) THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN answered_by LIKE 'machine%' THEN 1 ELSE 0 END), 0) \
                 FROM calls WHERE campaign_id = $1 AND created_at >= $2")
                .bind(id).bind(since).fetch_one(p).await?;
            Ok(row)
        })
    }

    pub async fn campaign_status_log(&self, id: &str, limit: i64) -> Result<Vec<StatusLogEntry>> {
        with_pool!(self, p => {
            let rows = sqlx::query("SELECT at, from_status, to_status, reason, changed_by FROM campaign_status_log \
                WHERE campaign_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(id).bind(limit).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(StatusLogEntry {
                    at: r.try_get("at")?,
                    from: r.try_get("from_status")?,
                    to: r.try_get("to_status")?,
                    reason: r.try_get("reason")?,
                    by: r.try_get("changed_by")?,
                });
            }
            Ok(out)
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
}
