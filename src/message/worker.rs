//! The message sender: one claim → gate → send → record path per channel.
//!
//! A [`ChannelWorker`] claims due messages of its channel under a lease,
//! checks each recipient against the suppression list (and, for SMS, the
//! DNC list) right before sending, paces sends with its rate limit (SMS
//! counts segments), hands each to the channel's [`Transport`] with at most
//! `in_flight` outstanding, and records what each send came to in batches
//! ([`Store::record_sends`]). Delivery reports from the transport are
//! applied (or kept until their message can take them) in batches too
//! ([`Store::apply_reports`]), and only then acknowledged to the peer.
//! Messages left `sending` by a node that stopped are recovered when their
//! lease runs out; on a transport whose reports settle doubt, one whose
//! acknowledgement was lost waits for its report first
//! ([`Store::recover_messages`]).
//!
//! Must not: decide outcomes (`outcome::decide`) or statuses (the store moves
//! a message only from the status it expects); log message bodies.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::outcome::{self, Backoff, Decision};
use super::status::MessageChannel;
use super::stored::{email_from, sms_from, text, whatsapp_from};
use super::transport::{
    DeliveryReport, Mailbox, Outbound, ReportKey, ReportStatus, Reported, SlackMessage, Transport,
};
use crate::campaign::rules::window::Window;
use crate::clock::Clock;
use crate::domain::window::CallingWindow;
use crate::store::messages::{MessageRow, ReportRecord, SendRecord};
use crate::store::Store;

/// How a channel's sender runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long a claimed message is this node's before another may recover it.
    pub lease_ms: i64,
    /// How often to look for due messages when nothing wakes the worker.
    pub poll: Duration,
    /// Messages claimed at once at most.
    pub batch: usize,
    /// Sends outstanding at once at most.
    pub in_flight: usize,
    pub backoff: Backoff,
    /// Sends per second (SMS: segments per second); 0 = unlimited.
    pub max_per_second: u32,
    /// How long a send left in doubt by a crash waits for a delivery report
    /// before it is sent again, on a transport whose reports settle doubt.
    pub in_doubt_wait_ms: i64,
    /// Frequency caps on the channel's marketing messages, per recipient.
    pub caps: Vec<crate::compliance::Cap>,
}

/// One channel's sender.
pub struct ChannelWorker {
    pub channel: MessageChannel,
    pub transport: Arc<dyn Transport>,
    pub store: Store,
    pub clock: Clock,
    pub node_id: String,
    pub settings: WorkerSettings,
    /// Notified when a message is accepted (so it goes out without waiting
    /// for the poll).
    pub wake: Arc<Notify>,
    /// Where each send's outcome counts toward the channel's health.
    pub health: super::health::HealthBoard,
    /// Ranks held back while a bulk is being accepted on this node.
    pub holds: super::holds::ClaimHolds,
}

/// Records and reports written per transaction at most.
const RECORD_BATCH: usize = 500;

/// Claimed messages that may wait on a rate limit of `per_second` at once:
/// a tenth of a second's worth, at least one.
fn paced_ahead(per_second: u32) -> usize {
    (per_second as usize / 10).max(1)
}

impl ChannelWorker {
    /// Runs until `shutdown`; then stops claiming, lets outstanding sends
    /// finish (they are recorded), and returns.
    pub async fn run(self, reports: mpsc::Receiver<Reported>, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let (record_tx, record_rx) = mpsc::channel::<SendRecord>(4 * RECORD_BATCH);
        let tasks = TaskTracker::new();
        let recorder = tasks.spawn(record_loop(worker.clone(), record_rx));
        let reporter = tasks.spawn(report_loop(worker.clone(), reports, shutdown.clone()));
        worker.claim_loop(record_tx, &shutdown).await;
        // The claim loop returned after its sends finished and its sender
        // was dropped: the recorder drains and ends.
        let _ = recorder.await;
        let _ = reporter.await;
        tasks.close();
        tasks.wait().await;
        worker.transport.close().await;
    }

    async fn claim_loop(
        self: &Arc<Self>,
        record_tx: mpsc::Sender<SendRecord>,
        shutdown: &CancellationToken,
    ) {
        let limiter = NonZeroU32::new(self.settings.max_per_second)
            .map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n))));
        let slots = Arc::new(Semaphore::new(self.settings.in_flight.max(1)));
        // Under a rate limit, claimed messages waiting for their turn are
        // bounded to about a tenth of a second's worth, so a message of a
        // higher priority accepted now waits behind that much, not behind
        // every slot.
        let pacing = limiter
            .as_ref()
            .map(|_| Arc::new(Semaphore::new(paced_ahead(self.settings.max_per_second))));
        let sends = TaskTracker::new();
        let channel = self.channel.as_str();
        let mut next_recovery = 0i64;
        while !shutdown.is_cancelled() {
            let now = self.clock.now_ms();
            self.write_turns(now).await;
            if now >= next_recovery {
                let in_doubt_ms = if self.transport.reports_settle_doubt() {
                    self.settings.in_doubt_wait_ms
                } else {
                    0
                };
                if let Err(e) = self.store.recover_messages(channel, now, in_doubt_ms).await {
                    tracing::warn!(channel, error = %e, "recovering interrupted messages failed");
                }
                next_recovery = now + self.settings.lease_ms.max(1_000) / 2;
            }
            let free = slots.available_permits().min(self.settings.batch).min(
                pacing
                    .as_ref()
                    .map_or(usize::MAX, |p| p.available_permits()),
            );
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self
                    .store
                    .claim_messages(
                        channel,
                        &self.node_id,
                        now,
                        self.settings.lease_ms,
                        free as i64,
                        self.holds.ceiling(),
                    )
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "claiming messages failed");
                        Vec::new()
                    }
                }
            };
            let full = claimed.len() == free && free > 0;
            for row in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let turn = match &pacing {
                    Some(p) => match p.clone().acquire_owned().await {
                        Ok(t) => Some(t),
                        Err(_) => break,
                    },
                    None => None,
                };
                let worker = self.clone();
                let tx = record_tx.clone();
                let limiter = limiter.clone();
                sends.spawn(async move {
                    let record = worker.send_one(row, limiter.as_deref(), turn).await;
                    let _ = tx.send(record).await;
                    drop(permit);
                });
            }
            if full {
                continue;
            }
            if free == 0 {
                // Every slot (or every paced turn) is taken: wait for one to
                // come back.
                let paced_full = pacing.as_ref().is_some_and(|p| p.available_permits() == 0);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned(), if !paced_full => drop(p),
                    p = async { pacing.as_ref().expect("paced").clone().acquire_owned().await }, if paced_full => drop(p),
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        sends.close();
        sends.wait().await;
    }

    /// Gate, pace, send one claimed message; what it came to.
    async fn send_one(
        &self,
        row: MessageRow,
        limiter: Option<&DefaultDirectRateLimiter>,
        turn: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> SendRecord {
        let rendered: Value = serde_json::from_str(&row.rendered).unwrap_or(Value::Null);
        let mut carried_by = None;
        let decision = match self.gate(&row, &rendered).await {
            Err(mut decision) => {
                if decision.status == "queued" && decision.due_at.is_none() {
                    decision.due_at =
                        Some(self.clock.now_ms() + self.settings.backoff.delay_ms(row.tries));
                }
                decision
            }
            Ok(message) => {
                let units = rendered
                    .get("segments")
                    .and_then(Value::as_u64)
                    .and_then(|n| NonZeroU32::new(n.min(u32::MAX as u64) as u32))
                    .unwrap_or(NonZeroU32::MIN);
                if let Some(l) = limiter {
                    // A burst larger than the quota still goes, one unit at a time.
                    if l.until_n_ready(units).await.is_err() {
                        for _ in 0..units.get() {
                            l.until_ready().await;
                        }
                    }
                }
                // Through the rate limit: the next claim may take its place.
                drop(turn);
                let started = std::time::Instant::now();
                let (result, via) = self.transport.send_via(&message).await;
                carried_by = via;
                self.note_health(&result).await;
                self.store
                    .metrics()
                    .message_send_latency
                    .observe(self.channel.as_str(), started.elapsed().as_secs_f64());
                let window = send_window(&row);
                outcome::decide(
                    &result,
                    row.tries,
                    row.max_retries,
                    self.clock.now(),
                    self.settings.backoff,
                    window.as_ref(),
                )
            }
        };
        let mut record = to_record(&row, decision);
        record.provider = carried_by;
        record
    }

    /// The message as the transport takes it, or the refusal when a
    /// recipient may not be sent to.
    async fn gate(&self, row: &MessageRow, rendered: &Value) -> Result<Outbound, Decision> {
        let malformed = |why: &str| Decision {
            status: "failed",
            result: "failed",
            reason: Some("malformed".into()),
            reply: super::transport::PeerReply {
                code: None,
                text: Some(format!("stored message is malformed: {why}")),
            },
            provider_id: None,
            due_at: None,
            suppress: false,
        };
        let id = uuid::Uuid::parse_str(&row.id).map_err(|_| malformed("id"))?;
        let held = super::caps::held(&self.store, &self.clock, &self.settings.caps, row);
        if let Some(d) = held.await.map_err(unchecked)? {
            return Err(d);
        }
        match self.channel {
            MessageChannel::Email => {
                let mut email =
                    email_from(id, rendered).ok_or_else(|| malformed("e-mail fields"))?;
                let all: Vec<String> = email
                    .to
                    .iter()
                    .chain(&email.cc)
                    .chain(&email.bcc)
                    .map(|m| m.email.to_ascii_lowercase())
                    .collect();
                let blocked = self
                    .store
                    .suppressed("email", &all)
                    .await
                    .map_err(unchecked)?;
                if !blocked.is_empty() {
                    let keep = |m: &Mailbox| !blocked.contains(&m.email.to_ascii_lowercase());
                    email.to.retain(keep);
                    email.cc.retain(keep);
                    email.bcc.retain(keep);
                    if email.to.is_empty() {
                        return Err(outcome::suppressed("e-mail suppression"));
                    }
                }
                Ok(Outbound::Email(email))
            }
            MessageChannel::Sms => {
                let sms = sms_from(id, rendered).ok_or_else(|| malformed("SMS fields"))?;
                // The one reply to a STOP goes to the number it just suppressed.
                if rendered.get("keyword_reply") == Some(&Value::Bool(true)) {
                    return Ok(Outbound::Sms(sms));
                }
                match self
                    .store
                    .sms_blocked_by(&sms.to)
                    .await
                    .map_err(unchecked)?
                    .as_deref()
                {
                    Some("dnc") => Err(outcome::suppressed("do-not-call")),
                    Some(_) => Err(outcome::suppressed("SMS suppression")),
                    None => Ok(Outbound::Sms(sms)),
                }
            }
            MessageChannel::Whatsapp => {
                let wa = whatsapp_from(id, rendered).ok_or_else(|| malformed("WhatsApp fields"))?;
                let blocked = self
                    .store
                    .suppressed("whatsapp", std::slice::from_ref(&wa.to))
                    .await
                    .map_err(unchecked)?;
                if blocked.is_empty() {
                    Ok(Outbound::Whatsapp(wa))
                } else {
                    Err(outcome::suppressed("WhatsApp suppression"))
                }
            }
            MessageChannel::Slack => {
                let m = SlackMessage {
                    id,
                    to: text(rendered, "to").ok_or_else(|| malformed("Slack fields"))?,
                    text: text(rendered, "text").ok_or_else(|| malformed("Slack fields"))?,
                };
                let blocked = self
                    .store
                    .suppressed("slack", std::slice::from_ref(&m.to))
                    .await
                    .map_err(unchecked)?;
                if blocked.is_empty() {
                    Ok(Outbound::Slack(m))
                } else {
                    Err(outcome::suppressed("Slack suppression"))
                }
            }
        }
    }
}

impl ChannelWorker {
    /// Writes the failover providers' turns (down, up again) as
    /// `channel.health` events.
    async fn write_turns(&self, now: i64) {
        for turn in self.health.drain_turns() {
            if let Err(e) = self
                .store
                .log_global_event("channel.health", turn, now)
                .await
            {
                tracing::warn!(error = %e, "writing a channel.health event failed");
            }
        }
    }

    /// Counts a send toward the channel's health, and writes a
    /// `channel.health` event when the channel turns (un)healthy. A bounce
    /// is the recipient's, not the channel's.
    async fn note_health(&self, result: &super::transport::SendResult) {
        use super::transport::SendResult as R;
        let ok = match result {
            R::Accepted { .. } => true,
            R::Retry { .. } | R::Failed { .. } | R::Unavailable { .. } => false,
            R::Bounced { .. } => return,
        };
        let now = self.clock.now_ms();
        let channel = self.channel.as_str();
        self.write_turns(now).await;
        if let Some(healthy) = self.health.record(channel, ok, now) {
            let mut data = self.health.snapshot(channel, now);
            data["channel"] = serde_json::json!(channel);
            data["transport"] = serde_json::json!(self.transport.name());
            data["healthy"] = serde_json::json!(healthy);
            if healthy {
                tracing::info!(channel, "the channel is healthy again");
            } else {
                tracing::warn!(
                    channel,
                    "the channel is unhealthy: at least half of its recent sends failed"
                );
            }
            if let Err(e) = self
                .store
                .log_global_event("channel.health", data, now)
                .await
            {
                tracing::warn!(error = %e, "writing a channel.health event failed");
            }
        }
    }
}

/// The gate could not read its lists: nothing is sent (fail closed); the
/// message is tried again after the backoff, like a temporary failure.
fn unchecked(e: crate::store::StoreError) -> Decision {
    tracing::warn!(error = %e, "checking the suppression and DNC lists failed; the message waits");
    Decision {
        status: "queued",
        result: "retry",
        reason: None,
        reply: super::transport::PeerReply {
            code: None,
            text: Some("the suppression list could not be checked".into()),
        },
        provider_id: None,
        due_at: None,
        suppress: false,
    }
}

/// The address a bounce names (an SMTP transport puts the refused
/// recipient first in its reply text: `<address>: 550 …`), else the
/// message's first recipient.
fn bounced_address(row: &MessageRow, text: Option<&str>) -> String {
    text.and_then(|t| t.split_once(": "))
        .map(|(a, _)| a.trim().trim_matches(['<', '>']).to_ascii_lowercase())
        .filter(|a| a.contains('@') && !a.contains(' '))
        .unwrap_or_else(|| row.recipient.clone())
}

fn to_record(row: &MessageRow, d: Decision) -> SendRecord {
    let suppress = if d.suppress {
        vec![(
            row.channel.clone(),
            bounced_address(row, d.reply.text.as_deref()),
        )]
    } else {
        Vec::new()
    };
    SendRecord {
        id: row.id.clone(),
        attempt: row.tries,
        status: d.status,
        result: d.result,
        reason: d.reason,
        code: d.reply.code,
        text: d.reply.text,
        provider_id: d.provider_id,
        provider: None,
        due_at: d.due_at,
        suppress,
    }
}

/// The message's send window, from its stored request.
fn send_window(row: &MessageRow) -> Option<(Window, Tz)> {
    let request: Value = serde_json::from_str(&row.request).ok()?;
    let w: CallingWindow = serde_json::from_value(request.get("send_window")?.clone()).ok()?;
    Window::from_spec(&w).ok()
}

async fn record_loop(worker: Arc<ChannelWorker>, mut rx: mpsc::Receiver<SendRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // A failed write is retried: what was sent must be recorded.
        let mut wait = Duration::from_millis(50);
        while let Err(e) = worker
            .store
            .record_sends(&batch, worker.clock.now_ms())
            .await
        {
            tracing::warn!(channel = worker.channel.as_str(), error = %e, "recording sends failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

/// Applies delivery reports in batches; each report's sender is told once
/// it is applied or kept (a failed write is retried, never dropped: the
/// transport's peer is answered only after).
async fn report_loop(
    worker: Arc<ChannelWorker>,
    mut rx: mpsc::Receiver<Reported>,
    shutdown: CancellationToken,
) {
    let channel = worker.channel.as_str();
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut batch, RECORD_BATCH) => n,
            _ = shutdown.cancelled() => return,
        };
        if got == 0 {
            // Every transport handle is gone.
            return;
        }
        let records: Vec<ReportRecord> = batch
            .iter()
            .map(|r| report_record(channel, r.report.clone()))
            .collect();
        let mut wait = Duration::from_millis(50);
        while let Err(e) = worker
            .store
            .apply_reports(&records, worker.clock.now_ms())
            .await
        {
            tracing::warn!(channel, error = %e, "applying delivery reports failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        for r in batch.drain(..) {
            r.kept();
        }
    }
}

fn report_record(channel: &str, r: DeliveryReport) -> ReportRecord {
    let (message_id, provider_id) = match r.key {
        ReportKey::Message(id) => (Some(id.to_string()), None),
        ReportKey::Provider(p) => (None, Some(p)),
    };
    ReportRecord {
        channel: channel.to_string(),
        message_id,
        provider_id,
        status: match r.status {
            ReportStatus::Delivered => "delivered",
            ReportStatus::Failed => "failed",
            ReportStatus::Bounced => "bounced",
        },
        code: r.reply.code,
        text: r.reply.text,
        suppress: r.status == ReportStatus::Bounced,
        address: r.address,
    }
}
