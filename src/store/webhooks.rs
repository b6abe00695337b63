//! Webhooks and their delivery state. The outbox is the event log itself
//! plus one cursor per (webhook, campaign): the last event number delivered
//! or skipped by the webhook's type filter. Creating a webhook starts its
//! cursors at each existing campaign's current number (it receives what
//! happens from then on); a campaign created later starts at 0.
//!
//! The secret is stored to sign deliveries; it is a [`Secret`] in memory and
//! never leaves through the API.

use sqlx::Row;

use super::{dialect, new_id, BeginWrite, Page, PageRequest, Result, Store, StoreError};
use crate::config::Secret;
use crate::store::with_pool;

/// A stored webhook.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    /// Event types delivered; `*` for all.
    pub event_types: Vec<String>,
    pub secret: Secret,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub failing_since: Option<i64>,
    pub failures: i32,
    pub next_attempt_at: i64,
    pub delivered_count: i64,
    pub created_at: i64,
}

impl WebhookRow {
    /// Whether events of type `kind` are delivered to this webhook.
    pub fn wants(&self, kind: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == kind)
    }
}

/// Where a webhook's delivery stands for one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub campaign_id: String,
    /// Delivered (or skipped) up to here.
    pub cursor: i64,
    /// The campaign's last committed event.
    pub last_seq: i64,
}

/// A failed delivery, as the dispatcher decided to record it.
#[derive(Debug, Clone)]
pub struct DeliveryFailure<'a> {
    pub error: &'a str,
    pub at: i64,
    pub failures: i32,
    pub failing_since: i64,
    pub next_attempt_at: i64,
    /// Set when the webhook is disabled by this failure.
    pub disable_reason: Option<&'a str>,
}

const COLUMNS: &str = "id, url, event_types, secret, enabled, disabled_reason, disabled_at, last_error, \
    last_error_at, last_success_at, failing_since, failures, next_attempt_at, delivered_count, created_at";

macro_rules! decode_webhook {
    ($row:expr) => {{
        let row = $row;
        let types: String = row.try_get("event_types")?;
        WebhookRow {
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            event_types: serde_json::from_str(&types)
                .map_err(|e| StoreError::Corrupt(format!("webhook event_types: {e}")))?,
            secret: Secret(row.try_get("secret")?),
            enabled: row.try_get("enabled")?,
            disabled_reason: row.try_get("disabled_reason")?,
            disabled_at: row.try_get("disabled_at")?,
            last_error: row.try_get("last_error")?,
            last_error_at: row.try_get("last_error_at")?,
            last_success_at: row.try_get("last_success_at")?,
            failing_since: row.try_get("failing_since")?,
            failures: row.try_get("failures")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            delivered_count: row.try_get("delivered_count")?,
            created_at: row.try_get("created_at")?,
        }
    }};
}

impl Store {
    /// Stores a webhook; its cursors start at every campaign's current event.
    pub async fn insert_webhook(
        &self,
        url: &str,
        event_types: &[String],
        secret: &Secret,
        now: i64,
    ) -> Result<WebhookRow> {
        let id = new_id();
        let types = serde_json::to_string(event_types).expect("strings serialize");
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO webhooks (id, url, event_types, secret, enabled, created_at) \
                         VALUES ($1, $2, $3, $4, TRUE, $5)")
                .bind(&id).bind(url).bind(&types).bind(secret.expose()).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO webhook_cursors (webhook_id, campaign_id, seq) \
                         SELECT $1, id, event_seq FROM campaigns")
                .bind(&id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        drop(_write);
        self.get_webhook(&id).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<WebhookRow> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1");
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            Ok(decode_webhook!(&row))
        })
    }

    pub async fn list_webhooks(&self, page: &PageRequest) -> Result<Page<WebhookRow>> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id > $1 ORDER BY id LIMIT $2");
        let rows = with_pool!(self, p => {
            let mut out = Vec::new();
            for row in &sqlx::query(&sql).bind(page.after_or_start()).bind(page.fetch_limit()).fetch_all(p).await? {
                out.push(decode_webhook!(row));
            }
            Ok::<_, StoreError>(out)
        })?;
        Ok(page.finish(rows, |w| w.id.clone()))
    }

    /// Deletes a webhook and its cursors; false if there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let _write = self.write_guard().await;
        with_pool!(self, p => Ok(sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id)
            .execute(p).await?.rows_affected() == 1))
    }

    /// Ids of the webhooks still delivering.
    pub async fn enabled_webhook_ids(&self) -> Result<Vec<String>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, String>("SELECT id FROM webhooks WHERE enabled ORDER BY id")
            .fetch_all(p).await?))
    }

    /// Campaigns with events the webhook has not been through yet.
    pub async fn webhook_pending(&self, webhook_id: &str) -> Result<Vec<Pending>> {
        let started = std::time::Instant::now();
        let rows: Vec<(String, i64, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT c.id, COALESCE(k.seq, 0), c.event_seq FROM campaigns c \
             LEFT JOIN webhook_cursors k ON k.campaign_id = c.id AND k.webhook_id = $1 \
             WHERE c.event_seq > COALESCE(k.seq, 0) ORDER BY c.id")
            .bind(webhook_id).fetch_all(p).await)?;
        // The global log (message events) as a campaign without an id.
        let global: (i64, i64) = with_pool!(self, p => sqlx::query_as(
            "SELECT COALESCE((SELECT seq FROM webhook_global_cursors WHERE webhook_id = $1), 0),              (SELECT seq FROM event_streams WHERE name = 'global')")
            .bind(webhook_id).fetch_one(p).await)?;
        self.observe("webhook_pending", started);
        let mut out: Vec<Pending> = rows
            .into_iter()
            .map(|(campaign_id, cursor, last_seq)| Pending {
                campaign_id,
                cursor,
                last_seq,
            })
            .collect();
        if global.1 > global.0 {
            out.push(Pending {
                campaign_id: String::new(),
                cursor: global.0,
                last_seq: global.1,
            });
        }
        Ok(out)
    }

    /// Moves a webhook's cursors forward and, when `delivered` > 0, notes the
    /// success (clearing the run of failures).
    pub async fn webhook_progress(
        &self,
        webhook_id: &str,
        cursors: &[(String, i64)],
        delivered: u64,
        now: i64,
    ) -> Result<()> {
        if cursors.is_empty() && delivered == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for (campaign, seq) in cursors {
                if campaign.is_empty() {
                    sqlx::query("INSERT INTO webhook_global_cursors (webhook_id, seq) VALUES ($1, $2) \
                                 ON CONFLICT (webhook_id) DO UPDATE SET seq = excluded.seq \
                                 WHERE webhook_global_cursors.seq < excluded.seq")
                        .bind(webhook_id).bind(*seq).execute(&mut *tx).await?;
                    continue;
                }
                sqlx::query("INSERT INTO webhook_cursors (webhook_id, campaign_id, seq) VALUES ($1, $2, $3) \
                             ON CONFLICT (webhook_id, campaign_id) DO UPDATE SET seq = excluded.seq \
                             WHERE webhook_cursors.seq < excluded.seq")
                    .bind(webhook_id).bind(campaign).bind(*seq).execute(&mut *tx).await?;
            }
            if delivered > 0 {
                sqlx::query("UPDATE webhooks SET last_success_at = $2, failures = 0, failing_since = NULL, \
                             next_attempt_at = 0, delivered_count = delivered_count + $3 WHERE id = $1")
                    .bind(webhook_id).bind(now).bind(delivered as i64).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.observe("webhook_progress", started);
        Ok(())
    }

    /// Records a failed delivery (and disables the webhook when told to).
    pub async fn webhook_failed(&self, webhook_id: &str, f: &DeliveryFailure<'_>) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => sqlx::query(
            "UPDATE webhooks SET last_error = $2, last_error_at = $3, failures = $4, failing_since = $5, \
             next_attempt_at = $6, enabled = CASE WHEN $7 IS NULL THEN enabled ELSE FALSE END, \
             disabled_reason = COALESCE($7, disabled_reason), \
             disabled_at = CASE WHEN $7 IS NULL THEN disabled_at ELSE $3 END WHERE id = $1")
            .bind(webhook_id).bind(f.error).bind(f.at).bind(f.failures).bind(f.failing_since)
            .bind(f.next_attempt_at).bind(f.disable_reason)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes or renews the lease on delivering a webhook (PostgreSQL, where
    /// several nodes run dispatchers); always true on SQLite.
    pub async fn lease_webhook(
        &self,
        webhook_id: &str,
        node_id: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, p => Ok(dialect::single_node(p) || sqlx::query(
            "UPDATE webhooks SET lease_owner = $2, lease_expires_at = $3 WHERE id = $1 AND enabled \
             AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < $4)")
            .bind(webhook_id).bind(node_id).bind(now + ttl_ms).bind(now)
            .execute(p).await?.rows_affected() == 1))
    }

    /// Events not yet through, per enabled webhook (for /metrics).
    pub async fn webhook_outbox_depths(&self) -> Result<Vec<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT w.id, CAST(COALESCE(SUM(c.event_seq - COALESCE(k.seq, 0)), 0) AS BIGINT) FROM webhooks w \
             CROSS JOIN campaigns c LEFT JOIN webhook_cursors k ON k.webhook_id = w.id AND k.campaign_id = c.id \
             WHERE w.enabled GROUP BY w.id ORDER BY w.id")
            .fetch_all(p).await?))
    }

    /// Target counts by state for every campaign's list (for /metrics).
    pub async fn campaign_target_counts(&self) -> Result<Vec<(String, String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, String, i64)>(
            "SELECT c.id, t.state, COUNT(*) FROM campaigns c JOIN targets t ON t.outdial_id = c.outdial_id \
             GROUP BY c.id, t.state ORDER BY c.id, t.state")
            .fetch_all(p).await?))
    }
}
