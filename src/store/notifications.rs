//! Notifications and their deliveries (one per channel): accepted with
//! their idempotency key and their first `notification.status` event in one
//! transaction; deliveries moved as their messages and calls move, each
//! change only from the status it was read in (so two nodes following the
//! same log write each change once), and the notification's overall status
//! with its event when it changes.

use serde_json::{json, Value};
use sqlx::{FromRow, QueryBuilder};

use super::bulk::{self, Bulk, Column};
use super::global_events::{append_global_page, GlobalLog};
use super::{BeginWrite, Page, PageRequest, Result, Store, StoreError};
use crate::notify::status::{overall, Stage};
use crate::store::with_pool;

#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub status: String,
    pub strategy: String,
    pub fallback_after_ms: Option<i64>,
    pub recipient: String,
    pub request: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub bulk_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub final_at: Option<i64>,
}

pub(super) const COLUMNS: &str =
    "id, status, strategy, fallback_after_ms, recipient, request, idempotency_key, \
    request_hash, bulk_id, created_at, updated_at, final_at";

#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub notification_id: String,
    pub position: i64,
    pub channel: String,
    pub status: String,
    pub reason: Option<String>,
    pub message_id: String,
    pub pending: Option<String>,
    pub started_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub updated_at: i64,
}

const DELIVERY_COLUMNS: &str = "notification_id, position, channel, status, reason, message_id, \
    pending, started_at, deadline_at, updated_at";

/// A delivery of a fallback chain, with the chain's setting.
#[derive(Debug, Clone, FromRow)]
pub struct ChainRow {
    #[sqlx(flatten)]
    pub delivery: DeliveryRow,
    pub fallback_after_ms: Option<i64>,
}

/// A delivery to store with its notification.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub channel: String,
    /// `starting` (started with the notification) or `waiting`.
    pub status: &'static str,
    pub message_id: String,
    /// JSON: what to insert when it starts.
    pub pending: String,
    pub deadline_at: Option<i64>,
}

/// A notification to accept.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub strategy: String,
    pub fallback_after_ms: Option<i64>,
    pub recipient: String,
    pub request: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub bulk_id: Option<String>,
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery's move, from the status it was read in.
#[derive(Debug, Clone)]
pub struct DeliveryChange {
    pub notification_id: String,
    pub position: i64,
    pub channel: String,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    /// Set when the delivery starts: its start and fallback deadline.
    pub started: Option<(i64, Option<i64>)>,
}

/// Filters of a notification list.
#[derive(Debug, Default, Clone)]
pub struct NotificationFilter<'a> {
    pub status: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub recipient: Option<&'a str>,
    pub bulk_id: Option<&'a str>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

/// What accepting a notification came to.
#[derive(Debug)]
pub enum NotificationAccepted {
    New,
    /// The idempotency key was seen with the same request: the first one's id.
    Existing(String),
}

pub(super) fn status_event(
    log: &mut GlobalLog,
    now: i64,
    n: &str,
    from: &str,
    to: &str,
    ds: &[DeliveryRow],
) {
    let deliveries: Vec<Value> = ds
        .iter()
        .map(|d| json!({"channel": d.channel, "status": d.status, "message_id": d.message_id}))
        .collect();
    log.push(
        "notification.status",
        now,
        json!({"notification_id": n, "from": from, "status": to, "deliveries": deliveries}),
    );
}

/// A delivery's move (its message or call moved). `starting` is shown as
/// `queued`, as the API shows it; the move into it from `queued` is not an event.
fn delivery_event(log: &mut GlobalLog, now: i64, c: &DeliveryChange) {
    let shown = |s: &str| if s == "starting" { "queued" } else { s }.to_string();
    let (from, to) = (shown(&c.from), shown(&c.to));
    if from == to {
        return;
    }
    log.push(
        "notification.delivery",
        now,
        json!({"notification_id": c.notification_id, "position": c.position, "channel": c.channel,
               "message_id": c.message_id, "from": from, "status": to, "reason": c.reason}),
    );
}

impl Store {
    /// Accepts a notification (`queued`) with its deliveries. With an
    /// idempotency key already used: the first one's id when the request hash
    /// matches, else [`StoreError::Conflict`] `idempotency_key_reused`.
    pub async fn accept_notification(
        &self,
        n: &NewNotification,
        now: i64,
    ) -> Result<NotificationAccepted> {
        if let Some(key) = &n.idempotency_key {
            if let Some(found) = self.notification_by_key(key).await? {
                return same_request(found, &n.request_hash);
            }
        }
        let _write = self.write_guard().await;
        let written = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO notifications (id, status, strategy, fallback_after_ms, recipient, request, idempotency_key, \
                 request_hash, bulk_id, created_at, updated_at) VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                 ON CONFLICT DO NOTHING")
                .bind(&n.id).bind(&n.strategy).bind(n.fallback_after_ms).bind(&n.recipient).bind(&n.request)
                .bind(&n.idempotency_key).bind(&n.request_hash).bind(&n.bulk_id).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                None
            } else {
                delivery_inserts(&n.id, &n.deliveries, now).build().execute(&mut *tx).await?;
                let mut log = GlobalLog::default();
                let rows = new_delivery_rows(n, now);
                status_event(&mut log, now, &n.id, "", "queued", &rows);
                let logged = append_global_page!(tx, log, now);
                tx.commit().await?;
                Some(logged)
            }
        });
        drop(_write);
        match written {
            Some(logged) => {
                self.logged(logged);
                Ok(NotificationAccepted::New)
            }
            None => {
                let key = n.idempotency_key.as_deref().unwrap_or_default();
                match self.notification_by_key(key).await? {
                    Some(found) => same_request(found, &n.request_hash),
                    None => Err(StoreError::Conflict("idempotency_key".into())),
                }
            }
        }
    }

    async fn notification_by_key(&self, key: &str) -> Result<Option<NotificationRow>> {
        let sql = format!("SELECT {COLUMNS} FROM notifications WHERE idempotency_key = $1");
        with_pool!(self, p => Ok(sqlx::query_as::<_, NotificationRow>(&sql).bind(key).fetch_optional(p).await?))
    }

    pub async fn get_notification(&self, id: &str) -> Result<(NotificationRow, Vec<DeliveryRow>)> {
        let sql = format!("SELECT {COLUMNS} FROM notifications WHERE id = $1");
        let n = with_pool!(self, p => sqlx::query_as::<_, NotificationRow>(&sql).bind(id).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)?;
        let ds = self.deliveries_of(&[id]).await?;
        Ok((n, ds))
    }

    /// The deliveries of these notifications, by notification and position.
    pub async fn deliveries_of(&self, ids: &[&str]) -> Result<Vec<DeliveryRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, p => {
            let mut qb = QueryBuilder::new(format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE "));
            bulk::is_in(&mut qb, "notification_id", ids.to_vec());
            qb.push(" ORDER BY notification_id, position");
            Ok(qb.build_query_as::<DeliveryRow>().fetch_all(p).await?)
        })
    }

    pub async fn list_notifications(
        &self,
        f: &NotificationFilter<'_>,
        page: &PageRequest,
    ) -> Result<Page<NotificationRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications n WHERE id > $1 \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR recipient = $3) AND ($4 IS NULL OR bulk_id = $4) \
             AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6) \
             AND ($7 IS NULL OR EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.id AND d.channel = $7)) \
             ORDER BY id LIMIT $8"
        );
        let rows = with_pool!(self, p => sqlx::query_as::<_, NotificationRow>(&sql)
            .bind(page.after_or_start()).bind(f.status).bind(f.recipient).bind(f.bulk_id)
            .bind(f.created_after).bind(f.created_before).bind(f.channel).bind(page.fetch_limit())
            .fetch_all(p).await)?;
        Ok(page.finish(rows, |n| n.id.clone()))
    }

    /// The deliveries carried by these messages or calls.
    pub async fn deliveries_by_message(&self, message_ids: &[&str]) -> Result<Vec<DeliveryRow>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, p => {
            let mut qb = QueryBuilder::new(format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE "));
            bulk::is_in(&mut qb, "message_id", message_ids.to_vec());
            Ok(qb.build_query_as::<DeliveryRow>().fetch_all(p).await?)
        })
    }

    /// Deliveries the follower looks after besides the log: those still
    /// starting since before `started_before`, voice deliveries not ended,
    /// and fallback chains whose deadline passed (with the chain's next
    /// delivery still waiting).
    pub async fn deliveries_to_check(
        &self,
        started_before: i64,
        now: i64,
    ) -> Result<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries d WHERE status IN ('starting', 'queued', 'sending', 'sent') \
             AND ((status = 'starting' AND started_at < $1) OR channel = 'voice' \
                  OR (deadline_at <= $2 AND status <> 'delivered' AND EXISTS (SELECT 1 FROM notification_deliveries w \
                      WHERE w.notification_id = d.notification_id AND w.position = d.position + 1 AND w.status = 'waiting'))) \
             LIMIT 1000"
        );
        with_pool!(self, p => Ok(sqlx::query_as::<_, DeliveryRow>(&sql).bind(started_before).bind(now).fetch_all(p).await?))
    }

    /// The status of these calls (voice deliveries).
    pub async fn call_statuses(
        &self,
        ids: &[&str],
    ) -> Result<Vec<(String, String, Option<String>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT id, status, COALESCE(outcome, reason) FROM calls WHERE ");
            bulk::is_in(&mut qb, "id", ids.to_vec());
            Ok(qb.build_query_as::<(String, String, Option<String>)>().fetch_all(p).await?)
        })
    }

    /// Applies delivery moves (each only from the status it was read in),
    /// then sets each touched notification's overall status, with its
    /// `notification.status` event when it changed. Returns the moves made.
    pub async fn apply_delivery_changes(
        &self,
        changes: &[DeliveryChange],
        now: i64,
    ) -> Result<usize> {
        if changes.is_empty() {
            return Ok(0);
        }
        let mut touched: Vec<&str> = changes.iter().map(|c| c.notification_id.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        let _write = self.write_guard().await;
        let (moved, logged) = with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut moved = 0;
            let mut log = GlobalLog::default();
            for c in changes {
                let (started_at, deadline_at) = c.started.unwrap_or((0, None));
                let n = sqlx::query(
                    "UPDATE notification_deliveries SET status = $1, reason = COALESCE($2, reason), updated_at = $3, \
                     started_at = CASE WHEN $4 > 0 THEN $4 ELSE started_at END, \
                     deadline_at = CASE WHEN $4 > 0 THEN $5 ELSE deadline_at END, \
                     pending = CASE WHEN $1 IN ('starting', 'waiting') THEN pending ELSE NULL END \
                     WHERE notification_id = $6 AND position = $7 AND status = $8")
                    .bind(&c.to).bind(&c.reason).bind(now).bind(started_at).bind(deadline_at)
                    .bind(&c.notification_id).bind(c.position).bind(&c.from)
                    .execute(&mut *tx).await?.rows_affected();
                if n == 1 {
                    delivery_event(&mut log, now, c);
                }
                moved += n;
            }
            let sql = format!("SELECT {COLUMNS} FROM notifications WHERE ");
            let mut qb = QueryBuilder::new(sql);
            bulk::is_in(&mut qb, "id", touched.clone());
            let ns = qb.build_query_as::<NotificationRow>().fetch_all(&mut *tx).await?;
            let mut qb = QueryBuilder::new(format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE "));
            bulk::is_in(&mut qb, "notification_id", touched.clone());
            qb.push(" ORDER BY notification_id, position");
            let ds = qb.build_query_as::<DeliveryRow>().fetch_all(&mut *tx).await?;
            for n in &ns {
                let mine: Vec<DeliveryRow> = ds.iter().filter(|d| d.notification_id == n.id).cloned().collect();
                let stages: Vec<Stage> = mine.iter().map(|d| Stage::of(&d.status)).collect();
                let to = overall(&stages);
                // Overall, a notification only moves forward: a chain whose
                // SMS was sent and then failed stays `sent` while its e-mail goes.
                if progress(to) <= progress(&n.status) {
                    continue;
                }
                let final_at = matches!(to, "delivered" | "failed").then_some(now);
                let n_moved = sqlx::query("UPDATE notifications SET status = $1, updated_at = $2, final_at = COALESCE(final_at, $3) \
                     WHERE id = $4 AND status = $5")
                    .bind(to).bind(now).bind(final_at).bind(&n.id).bind(&n.status)
                    .execute(&mut *tx).await?.rows_affected();
                if n_moved == 1 {
                    let mut mine = mine;
                    if to == "delivered" {
                        // A chain's channels not started are not needed now.
                        for d in mine.iter_mut().filter(|d| d.status == "waiting") {
                            sqlx::query("UPDATE notification_deliveries SET status = 'skipped', \
                                 reason = 'delivered_by_an_earlier_channel', pending = NULL, updated_at = $1 \
                                 WHERE notification_id = $2 AND position = $3 AND status = 'waiting'")
                                .bind(now).bind(&d.notification_id).bind(d.position)
                                .execute(&mut *tx).await?;
                            let mut c = skip_change(d);
                            c.reason = Some("delivered_by_an_earlier_channel".into());
                            delivery_event(&mut log, now, &c);
                            d.status = "skipped".into();
                        }
                    }
                    status_event(&mut log, now, &n.id, &n.status, to, &mine);
                }
            }
            let logged = append_global_page!(tx, log, now);
            tx.commit().await?;
            Ok::<_, StoreError>((moved as usize, logged))
        })?;
        drop(_write);
        self.logged(logged);
        Ok(moved)
    }

    /// How far the notification follower has read the global log.
    pub async fn notification_cursor(&self) -> Result<i64> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>("SELECT seq FROM notification_cursor WHERE name = 'global'")
            .fetch_one(p).await?))
    }

    pub async fn set_notification_cursor(&self, seq: i64) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => sqlx::query("UPDATE notification_cursor SET seq = $1 WHERE name = 'global' AND seq < $1")
            .bind(seq).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The deliveries of those of these notifications that are fallback
    /// chains, in order, each with its chain's `fallback_after_ms`.
    pub async fn fallback_deliveries(&self, ids: &[&str]) -> Result<Vec<ChainRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cols: Vec<String> = DELIVERY_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect();
        with_pool!(self, p => {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {}, n.fallback_after_ms FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id \
                 WHERE n.strategy = 'fallback' AND ", cols.join(", ")));
            bulk::is_in(&mut qb, "d.notification_id", ids.to_vec());
            qb.push(" ORDER BY d.notification_id, d.position");
            Ok(qb.build_query_as::<ChainRow>().fetch_all(p).await?)
        })
    }

    /// Counts of a bulk's notifications by status.
    pub async fn bulk_counts(&self, bulk_id: &str) -> Result<Vec<(String, i64)>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM notifications WHERE bulk_id = $1 GROUP BY status ORDER BY status")
            .bind(bulk_id).fetch_all(p).await?))
    }
}

fn skip_change(d: &DeliveryRow) -> DeliveryChange {
    DeliveryChange {
        notification_id: d.notification_id.clone(),
        position: d.position,
        channel: d.channel.clone(),
        message_id: d.message_id.clone(),
        from: d.status.clone(),
        to: "skipped".into(),
        reason: None,
        started: None,
    }
}

/// How far an overall status has come.
fn progress(status: &str) -> u8 {
    match status {
        "queued" => 0,
        "sent" => 1,
        _ => 2,
    }
}

fn same_request(found: NotificationRow, hash: &str) -> Result<NotificationAccepted> {
    if found.request_hash == hash {
        Ok(NotificationAccepted::Existing(found.id))
    } else {
        Err(StoreError::Conflict("idempotency_key_reused".into()))
    }
}

pub(super) fn new_delivery_rows(n: &NewNotification, now: i64) -> Vec<DeliveryRow> {
    n.deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| DeliveryRow {
            notification_id: n.id.clone(),
            position: i as i64,
            channel: d.channel.clone(),
            status: d.status.to_string(),
            reason: None,
            message_id: d.message_id.clone(),
            pending: Some(d.pending.clone()),
            started_at: (d.status == "starting").then_some(now),
            deadline_at: d.deadline_at,
            updated_at: now,
        })
        .collect()
}

/// The deliveries of one notification, in one statement.
fn delivery_inserts<'a, DB: Bulk>(
    id: &'a str,
    ds: &'a [NewDelivery],
    now: i64,
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO notification_deliveries (notification_id, position, channel, status, message_id, pending, \
         started_at, deadline_at, updated_at) SELECT column1, column2, column3, column4, column5, column6, column7, \
         column8, column9 FROM ",
    );
    let text = |get: fn(&'a NewDelivery) -> &'a str| {
        Column::Text(ds.iter().map(|d| Some(get(d))).collect())
    };
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(ds.iter().map(|_| Some(id)).collect()),
            Column::BigInt((0..ds.len() as i64).map(Some).collect()),
            text(|d| d.channel.as_str()),
            text(|d| d.status),
            text(|d| d.message_id.as_str()),
            text(|d| d.pending.as_str()),
            Column::BigInt(
                ds.iter()
                    .map(|d| (d.status == "starting").then_some(now))
                    .collect(),
            ),
            Column::BigInt(ds.iter().map(|d| d.deadline_at).collect()),
            Column::BigInt(ds.iter().map(|_| Some(now)).collect()),
        ],
    );
    qb
}
