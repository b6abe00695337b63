//! Provider failover: one channel over several providers in order (two SMPP
//! binds at different carriers, SMPP then SIP MESSAGE, two SMTP relays).
//!
//! Each send goes to the first provider that is ready (an SMPP session
//! bound) and not marked down. A provider is marked down when it fails
//! `max_failures` times within `window_ms` (a refused connection, a
//! temporary or permanent refusal that is not the recipient's bounce), and
//! at once when it answers [`SendResult::Unavailable`] (nothing was sent: not
//! bound, connection refused); a send it could not take goes straight on to
//! the next provider. Down providers are probed in the background every
//! `probe_ms` ([`Transport::probe`]) and come back when the probe passes;
//! the first provider in order that is up is used again.
//!
//! At most once across providers: only a send that certainly reached no
//! peer ([`SendResult::Unavailable`]) goes on to the next provider in the
//! same send. Any other failure goes back to the caller, which retries
//! later (through whichever provider is up then), as with one provider.
//!
//! Provider ids are prefixed with the provider's name (`carrier-a:1234`),
//! in send results and in delivery reports alike, so two SMSCs numbering
//! their messages the same way never match each other's receipts.
//!
//! Must not: log a message body or a credential.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::HealthBoard;
use super::transport::{
    Outbound, ProviderStatus, ReportKey, ReportSink, Reported, SendResult, Transport,
};
use crate::clock::Clock;

/// When a provider is marked down and how often a down one is probed.
#[derive(Debug, Clone, Copy)]
pub struct FailoverSettings {
    pub max_failures: usize,
    pub window_ms: i64,
    pub probe: Duration,
}

/// One provider of a channel: its configured name and its transport.
pub struct Provider {
    pub name: String,
    pub transport: Arc<dyn Transport>,
}

#[derive(Debug, Default)]
struct State {
    /// Failures within the window, oldest first.
    failures: VecDeque<i64>,
    down: bool,
    /// When it was last marked down.
    down_at: i64,
    /// Ready once: losing readiness after that marks it down (a provider
    /// still binding at start is not down).
    was_ready: bool,
}

struct Shared {
    channel: &'static str,
    providers: Vec<Provider>,
    states: Vec<Mutex<State>>,
    settings: FailoverSettings,
    health: HealthBoard,
    clock: Clock,
}

/// A channel's providers behind one [`Transport`].
pub struct FailoverTransport {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl FailoverTransport {
    /// Starts the background probe of down providers. `health` gets each
    /// provider's sends under `channel/name`, and its turns.
    pub fn start(
        channel: &'static str,
        providers: Vec<Provider>,
        settings: FailoverSettings,
        health: HealthBoard,
        clock: Clock,
    ) -> FailoverTransport {
        let states = providers.iter().map(|_| Mutex::default()).collect();
        let shared = Arc::new(Shared {
            channel,
            providers,
            states,
            settings,
            health,
            clock,
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(probe_loop(shared.clone(), cancel.clone()));
        FailoverTransport {
            shared,
            cancel,
            tasks,
        }
    }

    /// A report sink for provider `name` that prefixes its provider ids and
    /// hands the reports on to `into` (the channel's sink), still waiting
    /// until each is kept; the forwarding ends when the provider's
    /// transport drops its sink.
    pub fn prefixed_sink(name: &str, into: ReportSink) -> ReportSink {
        let (tx, mut rx) = ReportSink::channel(1024);
        let prefix = format!("{name}:");
        tokio::spawn(async move {
            // Each report is handed on by a task of its own, so receipts are
            // kept together in batches as they are with one provider (the
            // SMPP session bounds how many wait at once).
            while let Some(r) = rx.recv().await {
                let r: Reported = r;
                let mut report = r.report.clone();
                if let ReportKey::Provider(id) = &report.key {
                    report.key = ReportKey::Provider(format!("{prefix}{id}"));
                }
                let into = into.clone();
                tokio::spawn(async move {
                    if into.report(report).await {
                        r.kept();
                    }
                });
            }
        });
        tx
    }
}

impl Shared {
    fn key(&self, i: usize) -> String {
        format!("{}/{}", self.channel, self.providers[i].name)
    }

    fn is_down(&self, i: usize) -> bool {
        self.states[i].lock().map(|s| s.down).unwrap_or(false)
    }

    /// The providers to try, in order: those ready and up first; the others
    /// after them (a send then waits for a bind, or fails and is retried).
    fn order(&self) -> Vec<usize> {
        let (mut up, mut rest): (Vec<usize>, Vec<usize>) = (0..self.providers.len())
            .partition(|&i| self.providers[i].transport.ready() && !self.is_down(i));
        up.append(&mut rest);
        up
    }

    /// Counts a send's result, of a send started at `started`; marks the
    /// provider down, or up again when a send started while it was down
    /// went through (one started before says nothing of now).
    fn note(&self, i: usize, result: &SendResult, started: i64) {
        let now = self.clock.now_ms();
        let ok = match result {
            SendResult::Accepted { .. } => true,
            SendResult::Bounced { .. } => return,
            _ => false,
        };
        self.health.record(&self.key(i), ok, now);
        let turn = {
            let Ok(mut s) = self.states[i].lock() else {
                return;
            };
            if ok {
                s.failures.clear();
                if s.down && started >= s.down_at {
                    s.down = false;
                    true
                } else {
                    false
                }
            } else {
                s.failures.push_back(now);
                while s
                    .failures
                    .front()
                    .is_some_and(|t| *t <= now - self.settings.window_ms)
                {
                    s.failures.pop_front();
                }
                let down = matches!(result, SendResult::Unavailable { .. })
                    || s.failures.len() >= self.settings.max_failures.max(1);
                let turned = down && !s.down;
                if turned {
                    s.down = true;
                    s.down_at = now;
                }
                turned
            }
        };
        if turn {
            self.turned(i, !ok, reason(result));
        }
    }

    fn turned(&self, i: usize, down: bool, why: Option<String>) {
        let name = &self.providers[i].name;
        let channel = self.channel;
        if down {
            tracing::warn!(channel, provider = %name, reason = ?why, "provider marked down: messages go to the next provider");
        } else {
            tracing::info!(channel, provider = %name, "provider is back up");
        }
        self.health.provider_turned(
            channel,
            name,
            self.providers[i].transport.name(),
            !down,
            why,
            self.clock.now_ms(),
        );
    }

    fn mark_up(&self, i: usize) {
        let was_down = self.states[i]
            .lock()
            .map(|mut s| {
                s.failures.clear();
                std::mem::take(&mut s.down)
            })
            .unwrap_or(false);
        if was_down {
            self.turned(i, false, None);
        }
    }
}

fn reason(r: &SendResult) -> Option<String> {
    match r {
        SendResult::Accepted { .. } => None,
        SendResult::Retry { reply, .. }
        | SendResult::Unavailable { reply, .. }
        | SendResult::Bounced { reply }
        | SendResult::Failed { reply } => reply.text.clone().or(reply.code.clone()),
    }
}

/// Every `probe`: marks down a provider that was ready and is no longer
/// (an SMPP session lost, a bind refused), and probes down providers; a
/// passing probe brings one back.
async fn probe_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(shared.settings.probe) => {}
        }
        for i in 0..shared.providers.len() {
            if shared.is_down(i) {
                if shared.providers[i].transport.probe().await {
                    shared.mark_up(i);
                }
                continue;
            }
            let ready = shared.providers[i].transport.ready();
            let lost = shared.states[i]
                .lock()
                .map(|mut s| {
                    let lost = s.was_ready && !ready;
                    s.was_ready |= ready;
                    if lost {
                        s.down = true;
                        s.down_at = shared.clock.now_ms();
                        s.was_ready = false;
                    }
                    lost
                })
                .unwrap_or(false);
            if lost {
                shared.turned(i, true, Some("not connected".into()));
            }
        }
    }
}

#[async_trait::async_trait]
impl Transport for FailoverTransport {
    fn name(&self) -> &'static str {
        "failover"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        self.send_via(message).await.0
    }

    async fn send_via(&self, message: &Outbound) -> (SendResult, Option<String>) {
        let order = self.shared.order();
        let mut last = None;
        for (n, &i) in order.iter().enumerate() {
            let p = &self.shared.providers[i];
            let started = self.shared.clock.now_ms();
            let mut result = p.transport.send(message).await;
            self.shared.note(i, &result, started);
            if let SendResult::Accepted { provider_id, .. } = &mut result {
                if let Some(id) = provider_id.as_mut() {
                    *id = format!("{}:{id}", p.name);
                }
            }
            let unavailable = matches!(result, SendResult::Unavailable { .. });
            last = Some((result, Some(p.name.clone())));
            if !unavailable || n + 1 == order.len() {
                break;
            }
        }
        last.unwrap_or_else(|| {
            (
                SendResult::Unavailable {
                    reply: super::transport::PeerReply {
                        code: None,
                        text: Some("no provider is configured".into()),
                    },
                    after: None,
                },
                None,
            )
        })
    }

    fn ready(&self) -> bool {
        self.shared.providers.iter().any(|p| p.transport.ready())
    }

    async fn probe(&self) -> bool {
        self.ready()
    }

    fn reports_settle_doubt(&self) -> bool {
        self.shared
            .providers
            .iter()
            .all(|p| p.transport.reports_settle_doubt())
    }

    fn providers(&self) -> Vec<ProviderStatus> {
        (0..self.shared.providers.len())
            .map(|i| {
                let p = &self.shared.providers[i];
                ProviderStatus {
                    name: p.name.clone(),
                    transport: p.transport.name(),
                    ready: p.transport.ready(),
                    up: !self.shared.is_down(i),
                }
            })
            .collect()
    }

    async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        for p in &self.shared.providers {
            p.transport.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::transport::{PeerReply, Sms};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A provider whose answer the test sets.
    struct Fake {
        ready: AtomicBool,
        answer: Mutex<SendResult>,
        sends: AtomicUsize,
    }

    impl Fake {
        fn new(answer: SendResult) -> Arc<Fake> {
            Arc::new(Fake {
                ready: AtomicBool::new(true),
                answer: Mutex::new(answer),
                sends: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl Transport for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn send(&self, _: &Outbound) -> SendResult {
            self.sends.fetch_add(1, Ordering::SeqCst);
            self.answer.lock().unwrap().clone()
        }
        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
    }

    fn ok(id: &str) -> SendResult {
        SendResult::Accepted {
            provider_id: Some(id.into()),
            reply: PeerReply::default(),
        }
    }

    fn retry() -> SendResult {
        SendResult::Retry {
            reply: PeerReply::default(),
            after: None,
        }
    }

    fn sms() -> Outbound {
        Outbound::Sms(Sms {
            id: uuid::Uuid::nil(),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            body: "hi".into(),
        })
    }

    fn failover(a: &Arc<Fake>, b: &Arc<Fake>, health: &HealthBoard) -> FailoverTransport {
        let providers = vec![
            Provider {
                name: "a".into(),
                transport: a.clone(),
            },
            Provider {
                name: "b".into(),
                transport: b.clone(),
            },
        ];
        let settings = FailoverSettings {
            max_failures: 3,
            window_ms: 60_000,
            probe: Duration::from_secs(3600),
        };
        FailoverTransport::start("sms", providers, settings, health.clone(), Clock::system())
    }

    #[tokio::test]
    async fn sends_go_to_the_first_provider_up_and_ids_name_it() {
        let (a, b) = (Fake::new(ok("7")), Fake::new(ok("7")));
        let health = HealthBoard::default();
        let f = failover(&a, &b, &health);
        let (r, via) = f.send_via(&sms()).await;
        assert_eq!(via.as_deref(), Some("a"));
        assert!(matches!(r, SendResult::Accepted { provider_id: Some(ref id), .. } if id == "a:7"));
        // Not bound: skipped without a send.
        a.ready.store(false, Ordering::SeqCst);
        let (r, via) = f.send_via(&sms()).await;
        assert_eq!(via.as_deref(), Some("b"));
        assert!(matches!(r, SendResult::Accepted { provider_id: Some(ref id), .. } if id == "b:7"));
        assert_eq!(a.sends.load(Ordering::SeqCst), 1);
        // Bound again: the first provider is used again.
        a.ready.store(true, Ordering::SeqCst);
        assert_eq!(f.send_via(&sms()).await.1.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn failures_over_the_threshold_mark_a_provider_down_and_a_probe_brings_it_back() {
        let (a, b) = (Fake::new(retry()), Fake::new(ok("1")));
        let health = HealthBoard::default();
        let f = failover(&a, &b, &health);
        for _ in 0..3 {
            // A temporary failure is the caller's to retry: never sent twice here.
            let (r, via) = f.send_via(&sms()).await;
            assert!(matches!(r, SendResult::Retry { .. }));
            assert_eq!(via.as_deref(), Some("a"));
        }
        assert!(!f.providers()[0].up, "three failures mark it down");
        assert_eq!(health.drain_turns().len(), 1, "one turn reported");
        assert_eq!(f.send_via(&sms()).await.1.as_deref(), Some("b"));
        assert_eq!(b.sends.load(Ordering::SeqCst), 1);
        *a.answer.lock().unwrap() = ok("2");
        f.shared.mark_up(0);
        assert!(f.providers()[0].up);
        assert_eq!(health.drain_turns()[0]["healthy"], true);
        assert_eq!(f.send_via(&sms()).await.1.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_send_nobody_took_goes_on_to_the_next_provider_at_once() {
        let gone = SendResult::Unavailable {
            reply: PeerReply {
                code: Some("network".into()),
                text: Some("connection refused".into()),
            },
            after: None,
        };
        let (a, b) = (Fake::new(gone.clone()), Fake::new(ok("9")));
        let health = HealthBoard::default();
        let f = failover(&a, &b, &health);
        let (r, via) = f.send_via(&sms()).await;
        assert_eq!(via.as_deref(), Some("b"));
        assert!(matches!(r, SendResult::Accepted { .. }));
        assert!(!f.providers()[0].up, "marked down at once");
        // Both unavailable: the last answer goes back to be retried.
        *b.answer.lock().unwrap() = gone;
        let (r, _) = f.send_via(&sms()).await;
        assert!(matches!(r, SendResult::Unavailable { .. }));
    }
}
