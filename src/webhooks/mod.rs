//! Webhook delivery from the durable outbox (the event log plus a cursor per
//! webhook and campaign, see `store::webhooks`).
//!
//! A supervisor keeps one task per enabled webhook. Each task walks the
//! campaigns' events past its cursors in order and POSTs the ones its type
//! filter wants, one at a time, signed (`sign.rs`). Cursors move after a 2xx
//! and are written every few hundred milliseconds and before any wait, so a
//! crash re-sends at most the events since the last write: delivery is at
//! least once, and receivers deduplicate by `Herald-Webhook-Id`. A failure
//! (non-2xx, timeout, connection error) stops the walk; the same event is
//! retried after an exponential backoff (`backoff`), and a webhook that has
//! not succeeded for `disable_after` is disabled. All of this state is in
//! the database, so it survives restarts. On PostgreSQL a lease keeps one
//! node delivering each webhook.
//!
//! Must not: hold the secret anywhere it could be printed (it is a
//! [`crate::config::Secret`]), or log the URL's credentials.

pub mod sign;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::WebhooksConfig;
use crate::store::events::LoggedEvent;
use crate::store::webhooks::{DeliveryFailure, WebhookRow};
use crate::store::{Store, StoreError};

/// How long a node holds a webhook's lease (PostgreSQL) before another may take it.
const LEASE_MS: i64 = 15_000;
/// Cursor writes happen at most this often while delivering.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Events read from the log at once.
const READ_EVENTS: usize = 500;

/// Delivery settings (from `[webhooks]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub disable_after: Duration,
    pub timeout: Duration,
    pub poll: Duration,
}

impl From<&WebhooksConfig> for Settings {
    fn from(c: &WebhooksConfig) -> Self {
        Settings {
            backoff_base: Duration::from_millis(c.backoff_base_ms),
            backoff_cap: Duration::from_millis(c.backoff_cap_ms),
            disable_after: Duration::from_secs(c.disable_after_s),
            timeout: Duration::from_millis(c.timeout_ms),
            poll: Duration::from_millis(c.poll_interval_ms),
        }
    }
}

/// The wait before retrying after the `failures`-th consecutive failure
/// (1-based): base, 2×base, 4×base, … capped. Pure.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exp).min(cap)
}

/// The running dispatcher; owns its tasks.
pub struct Dispatcher {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// Starts delivering. `changed` is notified when webhooks are created or deleted.
    pub fn start(
        store: Store,
        settings: Settings,
        node_id: String,
        changed: Arc<Notify>,
    ) -> anyhow::Result<Dispatcher> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ctx = Ctx {
            store,
            http,
            settings,
            node_id,
        };
        tasks.spawn(supervise(ctx, changed, cancel.clone(), tasks.clone()));
        Ok(Dispatcher { cancel, tasks })
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[derive(Clone)]
struct Ctx {
    store: Store,
    http: reqwest::Client,
    settings: Settings,
    node_id: String,
}

/// Keeps one task per enabled webhook.
async fn supervise(ctx: Ctx, changed: Arc<Notify>, cancel: CancellationToken, tasks: TaskTracker) {
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    loop {
        match ctx.store.enabled_webhook_ids().await {
            Ok(ids) => {
                running.retain(|id, token| {
                    let keep = !token.is_cancelled() && ids.contains(id);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for id in ids {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let token = cancel.child_token();
                    running.insert(id.clone(), token.clone());
                    let span = tracing::info_span!("webhook", webhook = %id);
                    tasks.spawn(run_webhook(ctx.clone(), id, token).instrument(span));
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing webhooks failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(ctx.settings.poll) => {}
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// How a delivery round ended.
enum Round {
    /// Nothing left to deliver.
    Idle,
    /// A delivery failed (recorded, with its retry time).
    Failed,
    /// Stopped by cancellation.
    Cancelled,
}

async fn run_webhook(ctx: Ctx, id: String, cancel: CancellationToken) {
    let mut log = ctx.store.log_watch();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let w = match ctx.store.get_webhook(&id).await {
            Ok(w) if w.enabled => w,
            Ok(_) | Err(StoreError::NotFound) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading the webhook failed");
                if wait(&cancel, ctx.settings.poll).await {
                    return;
                }
                continue;
            }
        };
        let now = now_ms();
        if w.next_attempt_at > now {
            if wait(
                &cancel,
                Duration::from_millis((w.next_attempt_at - now) as u64),
            )
            .await
            {
                return;
            }
            continue;
        }
        match ctx
            .store
            .lease_webhook(&id, &ctx.node_id, now, LEASE_MS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                if wait(&cancel, ctx.settings.poll).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "leasing the webhook failed");
                if wait(&cancel, ctx.settings.poll).await {
                    return;
                }
                continue;
            }
        }
        // Mark what has been seen before looking, so a commit after the look wakes us.
        log.borrow_and_update();
        match deliver_pending(&ctx, &w, &cancel).await {
            Ok(Round::Idle) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = log.changed() => if r.is_err() && wait(&cancel, ctx.settings.poll).await { return },
                    _ = tokio::time::sleep(ctx.settings.poll) => {}
                }
            }
            Ok(Round::Failed) => {}
            Ok(Round::Cancelled) => return,
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery round failed");
                if wait(&cancel, ctx.settings.poll).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps for `d`; true if cancelled meanwhile.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Cursor moves and successes not yet written.
struct Progress {
    cursors: Vec<(String, i64)>,
    delivered: u64,
    delivered_in_round: u64,
    flushed_at: Instant,
}

impl Progress {
    fn advance(&mut self, campaign: &str, seq: i64) {
        match self.cursors.iter_mut().find(|(c, _)| c == campaign) {
            Some((_, s)) => *s = seq,
            None => self.cursors.push((campaign.to_string(), seq)),
        }
    }

    async fn flush(&mut self, store: &Store, webhook: &str) -> Result<(), StoreError> {
        store
            .webhook_progress(webhook, &self.cursors, self.delivered, now_ms())
            .await?;
        self.cursors.clear();
        self.delivered = 0;
        self.flushed_at = Instant::now();
        Ok(())
    }
}

/// Delivers everything pending, in order per campaign, until done or a failure.
async fn deliver_pending(
    ctx: &Ctx,
    w: &WebhookRow,
    cancel: &CancellationToken,
) -> Result<Round, StoreError> {
    let pending = ctx.store.webhook_pending(&w.id).await?;
    if pending.is_empty() {
        return Ok(Round::Idle);
    }
    let mut progress = Progress {
        cursors: Vec::new(),
        delivered: 0,
        delivered_in_round: 0,
        flushed_at: Instant::now(),
    };
    for p in pending {
        let mut cursor = p.cursor;
        while cursor < p.last_seq {
            let events = if p.campaign_id.is_empty() {
                ctx.store
                    .global_events_after(cursor, READ_EVENTS)
                    .await?
                    .into_iter()
                    .map(|e| e.into_logged())
                    .collect()
            } else {
                ctx.store
                    .events_after(&p.campaign_id, cursor, READ_EVENTS)
                    .await?
            };
            if events.is_empty() {
                break;
            }
            for e in events {
                if cancel.is_cancelled() {
                    progress.flush(&ctx.store, &w.id).await?;
                    return Ok(Round::Cancelled);
                }
                if w.wants(&e.kind) {
                    let sent = tokio::select! {
                        r = post(ctx, w, &e) => r,
                        _ = cancel.cancelled() => {
                            progress.flush(&ctx.store, &w.id).await?;
                            return Ok(Round::Cancelled);
                        }
                    };
                    if let Err(error) = sent {
                        ctx.store.metrics().webhook_deliveries.add("failed", 1);
                        progress.flush(&ctx.store, &w.id).await?;
                        record_failure(ctx, w, &error, progress.delivered_in_round > 0).await?;
                        return Ok(Round::Failed);
                    }
                    ctx.store.metrics().webhook_deliveries.add("delivered", 1);
                    progress.delivered += 1;
                    progress.delivered_in_round += 1;
                }
                cursor = e.seq;
                progress.advance(&p.campaign_id, e.seq);
                if progress.flushed_at.elapsed() >= FLUSH_EVERY {
                    progress.flush(&ctx.store, &w.id).await?;
                }
            }
        }
    }
    progress.flush(&ctx.store, &w.id).await?;
    // More may have been committed meanwhile: the caller looks again.
    Ok(Round::Idle)
}

/// POSTs one event; `Err` says why it did not get a 2xx.
async fn post(ctx: &Ctx, w: &WebhookRow, e: &LoggedEvent) -> Result<(), String> {
    let body = serde_json::to_vec(&e.to_json()).expect("events serialize");
    let ts = Utc::now().timestamp();
    let sig = sign::signature(w.secret.expose().as_bytes(), ts, &body);
    let r = ctx
        .http
        .post(&w.url)
        .header("content-type", "application/json")
        .header("herald-webhook-id", e.id())
        .header("herald-webhook-timestamp", ts.to_string())
        .header("herald-signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|err| err.without_url().to_string())?;
    let status = r.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

async fn record_failure(
    ctx: &Ctx,
    w: &WebhookRow,
    error: &str,
    succeeded_this_round: bool,
) -> Result<(), StoreError> {
    let now = now_ms();
    let (failures, since) = if succeeded_this_round {
        (1, now)
    } else {
        (w.failures + 1, w.failing_since.unwrap_or(now))
    };
    let wait = backoff(
        ctx.settings.backoff_base,
        ctx.settings.backoff_cap,
        failures.max(1) as u32,
    );
    let failing_for = Duration::from_millis((now - since).max(0) as u64);
    let disable = (failing_for >= ctx.settings.disable_after).then(|| {
        format!(
            "deliveries failed for {}s without a success (limit webhooks.disable_after_s = {}); last error: {error}",
            failing_for.as_secs(),
            ctx.settings.disable_after.as_secs()
        )
    });
    tracing::warn!(
        error,
        failures,
        retry_in_ms = wait.as_millis() as u64,
        disabled = disable.is_some(),
        "webhook delivery failed"
    );
    if disable.is_some() {
        ctx.store.metrics().webhooks_disabled.add(1);
    }
    ctx.store
        .webhook_failed(
            &w.id,
            &DeliveryFailure {
                error,
                at: now,
                failures,
                failing_since: since,
                next_attempt_at: now + wait.as_millis() as i64,
                disable_reason: disable.as_deref(),
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (b, c) = (Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff(b, c, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, c, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, c, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, c, 5), c);
        assert_eq!(backoff(b, c, 500), c);
        assert_eq!(backoff(b, c, 0), b);
    }
}
