//! The notification follower: reads the global event log from its stored
//! cursor, moves each delivery as its message moves, polls the calls of
//! voice deliveries, starts the next channel of a fallback chain (on
//! failure, or when its deadline passes undelivered), and restarts
//! deliveries left `starting` by a crash. The store writes each move only
//! from the status it was read in, so every node may run a follower.
//!
//! Starting a delivery inserts the row it kept (a message under an
//! idempotency key of its own, or a call under its fixed id): starting it
//! twice inserts it once.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::status::{call_delivery_status, fallback_steps, moves, Stage, Step};
use crate::clock::Clock;
use crate::domain::specs::CallRequest;
use crate::message::service::Messaging;
use crate::message::status::MessageChannel;
use crate::store::messages::NewMessage;
use crate::store::notifications::{DeliveryChange, DeliveryRow};
use crate::store::oneoff::NewOneOff;
use crate::store::{Store, StoreError};

/// Events read at once.
const READ_EVENTS: usize = 2_000;
/// A delivery still `starting` this long after it started is started again
/// (its starter stopped).
const RESTART_AFTER_MS: i64 = 5_000;
/// How often the follower looks when nothing wakes it, and does its
/// periodic checks at most.
const POLL: Duration = Duration::from_millis(500);
/// The least time between two reads of the log when commits wake it.
const READ_EVERY: Duration = Duration::from_millis(20);

/// What a delivery inserts when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// A message (e-mail, SMS), rendered when the notification was accepted.
    Message { row: Box<NewMessage> },
    /// A one-off call: its `/v1/calls` request.
    Call { request: Value },
}

/// Starts one delivery: inserts its message or call (once, however often
/// it is started) and wakes the channel. Returns the status it is in now.
pub async fn start(
    store: &Store,
    messaging: &Messaging,
    d: &DeliveryRow,
    now: i64,
) -> Result<&'static str, StoreError> {
    let Some(pending) = d.pending.as_deref() else {
        return Ok("queued");
    };
    let pending: Pending = serde_json::from_str(pending)
        .map_err(|e| StoreError::Corrupt(format!("delivery {}: {e}", d.message_id)))?;
    match pending {
        Pending::Message { mut row } => {
            row.due_at = row.due_at.max(now);
            store.accept_message(&row, now).await?;
            if let Some(c) = MessageChannel::parse(&row.channel) {
                messaging.wake(c);
            }
        }
        Pending::Call { request } => {
            let spec = CallRequest::parse(&request)
                .map_err(|e| StoreError::Corrupt(format!("delivery {}: {e}", d.message_id)))?;
            store
                .insert_one_off_as(
                    &d.message_id,
                    &NewOneOff {
                        to: &spec.to,
                        from: spec.from.as_deref(),
                        agent_id: spec.agent_id.as_deref(),
                        trunk: &spec.trunk,
                        status: "pending",
                        scheduled_at: now,
                        spec: &spec,
                    },
                    now,
                )
                .await?;
        }
    }
    Ok("queued")
}

/// Starts deliveries that are `starting` and records them `queued`.
pub async fn start_all(
    store: &Store,
    messaging: &Messaging,
    ds: &[DeliveryRow],
    now: i64,
) -> Result<(), StoreError> {
    let mut changes = Vec::with_capacity(ds.len());
    for d in ds {
        let to = start(store, messaging, d, now).await?;
        changes.push(change(d, to, None));
    }
    store.apply_delivery_changes(&changes, now).await?;
    Ok(())
}

pub struct Follower {
    pub store: Store,
    pub messaging: Messaging,
    pub clock: Clock,
    /// Open conversations with no message for this long close themselves.
    pub idle_close_ms: i64,
    /// Finished messages' bodies are purged this long after they ended (0: kept).
    pub retention_ms: i64,
    /// When bodies were last purged (the purge runs once a minute).
    pub last_purge: std::sync::atomic::AtomicI64,
}

/// How often finished messages' bodies are looked for.
const PURGE_EVERY_MS: i64 = 60_000;

impl Follower {
    pub async fn run(self, cancel: CancellationToken) {
        let mut log = self.store.log_watch();
        // The log wakes the follower on every commit that logged events,
        // campaigns' included: it reads at most every READ_EVERY, and does
        // the rest (stalled starts, voice calls, deadlines, idle
        // conversations, fallbacks, retention) at most every POLL.
        let mut last_checks = tokio::time::Instant::now() - POLL;
        loop {
            log.borrow_and_update();
            let checks = last_checks.elapsed() >= POLL;
            if checks {
                last_checks = tokio::time::Instant::now();
            }
            let more = match self.round(checks).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "following notifications failed; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = log.changed() => tokio::time::sleep(READ_EVERY).await,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass (with the periodic checks when `checks`); true when the log
    /// has more to read now.
    async fn round(&self, checks: bool) -> Result<bool, StoreError> {
        let more = self.follow_log().await?;
        if !checks {
            return Ok(more);
        }
        self.check().await?;
        let now = self.clock.now_ms();
        self.store
            .close_conversations(None, Some(now - self.idle_close_ms), "idle", now)
            .await?;
        super::campaign_fallback::run_pass(&self.store, &self.messaging, now).await?;
        self.purge(now).await?;
        Ok(more)
    }

    /// Applies the deliveries' message status changes read from the log.
    async fn follow_log(&self) -> Result<bool, StoreError> {
        let cursor = self.store.notification_cursor().await?;
        let events = self.store.global_events_after(cursor, READ_EVENTS).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(false);
        };
        // The furthest status each message reached in this read.
        let mut latest: HashMap<String, (String, Option<String>)> = HashMap::new();
        for e in &events {
            if e.kind != "message.status" {
                continue;
            }
            let (Some(id), Some(status)) = (
                e.data.get("message_id").and_then(Value::as_str),
                e.data.get("status").and_then(Value::as_str),
            ) else {
                continue;
            };
            let reason = e
                .data
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            match latest.get_mut(id) {
                Some(cur) if !moves(&cur.0, status) => {}
                Some(cur) => *cur = (status.to_string(), reason),
                None => {
                    latest.insert(id.to_string(), (status.to_string(), reason));
                }
            }
        }
        let ids: Vec<&str> = latest.keys().map(String::as_str).collect();
        let ds = self.store.deliveries_by_message(&ids).await?;
        let mut changes = Vec::new();
        for d in &ds {
            if let Some((to, reason)) = latest.get(&d.message_id) {
                if moves(&d.status, to) && d.status != "waiting" {
                    changes.push(change(d, to, reason.clone()));
                }
            }
        }
        let now = self.clock.now_ms();
        self.store.apply_delivery_changes(&changes, now).await?;
        let touched: Vec<&str> = changes.iter().map(|c| c.notification_id.as_str()).collect();
        self.advance_chains(&touched).await?;
        self.store.set_notification_cursor(last).await?;
        Ok(events.len() >= READ_EVENTS)
    }

    /// Restarts stalled starts, follows voice calls, and advances chains
    /// whose deadline passed.
    async fn check(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let ds = self
            .store
            .deliveries_to_check(now - RESTART_AFTER_MS, now)
            .await?;
        if ds.is_empty() {
            return Ok(());
        }
        let stalled: Vec<DeliveryRow> = ds
            .iter()
            .filter(|d| {
                d.status == "starting" && d.started_at.is_some_and(|t| t < now - RESTART_AFTER_MS)
            })
            .cloned()
            .collect();
        start_all(&self.store, &self.messaging, &stalled, now).await?;
        let calls: Vec<&str> = ds
            .iter()
            .filter(|d| d.channel == "voice" && d.status != "starting")
            .map(|d| d.message_id.as_str())
            .collect();
        let statuses = self.store.call_statuses(&calls).await?;
        let by_id: HashMap<&str, (&str, Option<&String>)> = statuses
            .iter()
            .map(|(id, st, why)| (id.as_str(), (call_delivery_status(st), why.as_ref())))
            .collect();
        let mut changes = Vec::new();
        for d in ds.iter().filter(|d| d.channel == "voice") {
            if let Some((to, why)) = by_id.get(d.message_id.as_str()) {
                if moves(&d.status, to) {
                    changes.push(change(d, to, why.cloned()));
                }
            }
        }
        self.store.apply_delivery_changes(&changes, now).await?;
        let mut touched: Vec<&str> = ds.iter().map(|d| d.notification_id.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        self.advance_chains(&touched).await
    }

    /// The next steps of the fallback chains among these notifications.
    async fn advance_chains(&self, ids: &[&str]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ds = self.store.fallback_deliveries(ids).await?;
        let now = self.clock.now_ms();
        let mut skips = Vec::new();
        let mut starts: Vec<(DeliveryRow, Option<i64>)> = Vec::new();
        for chain in ds.chunk_by(|a, b| a.delivery.notification_id == b.delivery.notification_id) {
            let after = chain[0].fallback_after_ms;
            let chain: Vec<&DeliveryRow> = chain.iter().map(|c| &c.delivery).collect();
            let stages: Vec<(Stage, Option<i64>)> = chain
                .iter()
                .map(|d| (Stage::of(&d.status), d.deadline_at))
                .collect();
            for step in fallback_steps(&stages, now) {
                match step {
                    Step::Skip(i) => skips.push(change(
                        chain[i],
                        "skipped",
                        Some("delivered_by_an_earlier_channel".into()),
                    )),
                    Step::Start(i) => {
                        let deadline = after.filter(|_| i + 1 < chain.len()).map(|ms| now + ms);
                        starts.push((chain[i].clone(), deadline));
                    }
                }
            }
        }
        self.store.apply_delivery_changes(&skips, now).await?;
        for (d, deadline) in starts {
            let mut c = change(&d, "starting", None);
            c.started = Some((now, deadline));
            // Another node may have started it: only the one that moved it starts it.
            if self.store.apply_delivery_changes(&[c], now).await? == 1 {
                let mut d = d;
                d.status = "starting".into();
                start_all(&self.store, &self.messaging, &[d], now).await?;
            }
        }
        Ok(())
    }
}

impl Follower {
    /// Purges the bodies of messages finished longer ago than the retention.
    async fn purge(&self, now: i64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.retention_ms <= 0 || now - self.last_purge.load(Ordering::Relaxed) < PURGE_EVERY_MS
        {
            return Ok(());
        }
        while self
            .store
            .purge_message_bodies(now - self.retention_ms, 500, now)
            .await?
            == 500
        {}
        self.last_purge.store(now, Ordering::Relaxed);
        Ok(())
    }
}

fn change(d: &DeliveryRow, to: &str, reason: Option<String>) -> DeliveryChange {
    DeliveryChange {
        notification_id: d.notification_id.clone(),
        position: d.position,
        channel: d.channel.clone(),
        message_id: d.message_id.clone(),
        from: d.status.clone(),
        to: to.to_string(),
        reason,
        started: None,
    }
}
