//! Builds the parts, owns every task, shuts down on signal.
//!
//! [`App::start`] opens the store (migrating it), binds the API listener and
//! returns a handle that owns the server task; [`App::shutdown`] stops it and
//! waits. `herald serve` runs one until Ctrl-C or SIGTERM; tests run one on
//! port 0 against a fresh database. With `[simulator] enabled`, the callee
//! simulator starts first and trunks whose proxy is "simulator" dial it; it
//! stops last.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{AgentDeps, AgentRuntime};
use crate::api::metrics::MetricsSources;
use crate::api::{self, ApiDeps};
use crate::campaign::scheduler::{Scheduler, SchedulerDeps};
use crate::campaign::trunks::AgentSessions;
use crate::clock::Clock;
use crate::config::{Config, SIMULATOR_PROXY};
use crate::events::EventBus;
use crate::media::prompts::Prompts;
use crate::sim::{Simulator, SimulatorConfig};
use crate::sip::{CallControl, Telephony};
use crate::store::apikeys::hash_key;
use crate::store::Store;
use crate::webhooks::{Dispatcher, Settings as WebhookSettings};

/// Environment variable whose value is accepted as an admin API key.
pub const BOOTSTRAP_KEY_VAR: &str = "HERALD_BOOTSTRAP_API_KEY";

pub struct App {
    pub addr: SocketAddr,
    pub store: Store,
    pub events: EventBus,
    /// herald's SIP address (where callees send requests).
    pub sip_addr: Option<SocketAddr>,
    /// The embedded callee simulator's SIP address, when it runs.
    pub simulator_addr: Option<SocketAddr>,
    /// Where e-mail delivery reports are received (`bounce_listen`).
    pub bounce_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    scheduler: Option<Scheduler>,
    webhooks: Option<Dispatcher>,
    call_control: Option<CallControl>,
    simulator: Option<Simulator>,
}

/// What places herald's calls.
pub enum TelephonyChoice {
    /// SIP and RTP as configured (the default).
    Sip,
    /// Something else below the call-control interface (benchmarks, tests).
    Custom(Arc<dyn Telephony>),
}

impl App {
    /// Starts herald with `config`; `bootstrap_key` is HERALD_BOOTSTRAP_API_KEY's value, if any.
    pub async fn start(config: &Config, bootstrap_key: Option<String>) -> anyhow::Result<App> {
        Self::start_with(config, bootstrap_key, TelephonyChoice::Sip).await
    }

    /// As [`App::start`], choosing what places the calls.
    pub async fn start_with(
        config: &Config,
        bootstrap_key: Option<String>,
        telephony: TelephonyChoice,
    ) -> anyhow::Result<App> {
        Self::start_with_clock(config, bootstrap_key, telephony, Clock::system()).await
    }

    /// As [`App::start_with`], with the scheduler reading `clock` (tests move
    /// a manual one across window openings and daily starts).
    pub async fn start_with_clock(
        config: &Config,
        bootstrap_key: Option<String>,
        telephony: TelephonyChoice,
        clock: Clock,
    ) -> anyhow::Result<App> {
        let prompts = Prompts::configured(&config.agents.prompt_dir).with_context(|| {
            format!("opening agents.prompt_dir ({:?})", config.agents.prompt_dir)
        })?;
        let store = Store::open(&config.database.url, config.database.max_connections)
            .await
            .with_context(|| {
                format!(
                    "opening the database ({})",
                    redact_url(&config.database.url)
                )
            })?;
        let listener = TcpListener::bind(&config.api.listen)
            .await
            .with_context(|| format!("binding the API listener on {}", config.api.listen))?;
        let addr = listener.local_addr()?;
        let events = EventBus::default();
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut simulator = None;
        let mut trunks = config.trunks.clone();
        if config.simulator.enabled && matches!(telephony, TelephonyChoice::Sip) {
            let sim = Simulator::start(SimulatorConfig::from_section(&config.simulator)?)
                .await
                .context("starting the callee simulator")?;
            // Trunks that say "simulator" dial its actual (port 0) address.
            for t in trunks.values_mut() {
                if t.proxy == SIMULATOR_PROXY {
                    t.proxy = format!("sip:{}", sim.addr());
                }
            }
            simulator = Some(sim);
        }
        let simulator_addr = simulator.as_ref().map(Simulator::addr);
        let (telephony, call_control): (Arc<dyn Telephony>, Option<CallControl>) = match telephony {
            TelephonyChoice::Sip => {
                let cc = CallControl::start_with_metrics(
                    &config.sip,
                    &config.media,
                    &trunks,
                    cancel.child_token(),
                    store.metrics().clone(),
                )
                .await
                .context("starting SIP call control")?;
                (Arc::new(cc.clone()), Some(cc))
            }
            TelephonyChoice::Custom(t) => (t, None),
        };
        let sip_addr = call_control.as_ref().map(|cc| cc.local_addr());
        let runtime = AgentRuntime::new(
            AgentDeps {
                telephony: telephony.clone(),
                prompts,
            },
            config.agents.account_sid.clone(),
            std::time::Duration::from_millis(config.agents.prepare_timeout_ms),
        );
        let node_id = format!("node-{}", uuid::Uuid::new_v4().simple());
        let population = if config.simulator.population.is_empty() {
            crate::sim::population::Population::default_population()
        } else {
            crate::sim::population::Population::load(std::path::Path::new(
                &config.simulator.population,
            ))?
        };
        let channels = crate::message::channels::build(
            config,
            &store,
            &clock,
            &node_id,
            &population.sms,
            config.simulator.seed,
            call_control.as_ref(),
        )
        .await
        .context("starting the message channels")?;
        for (worker, reports) in channels.workers {
            tasks.spawn(worker.run(reports, cancel.child_token()));
        }
        let bounce_addr = channels.bounce.as_ref().and_then(|b| b.local_addr().ok());
        if let Some(b) = channels.bounce {
            tracing::info!(addr = ?bounce_addr, "receiving e-mail delivery reports");
            tasks.spawn(b.run(cancel.child_token()));
        }
        tasks.spawn(
            crate::notify::follower::Follower {
                store: store.clone(),
                messaging: channels.messaging.clone(),
                clock: clock.clone(),
                idle_close_ms: config.conversations.idle_close_s as i64 * 1000,
                retention_ms: config.retention.message_body_days as i64 * 86_400_000,
                last_purge: std::sync::atomic::AtomicI64::new(0),
            }
            .run(cancel.child_token()),
        );
        let inbox = crate::notify::inbox::Inbox {
            store: store.clone(),
            messaging: channels.messaging.clone(),
            settings: config.conversations.clone(),
        };
        if let Some(rx) = channels.inbound_sms {
            tasks.spawn(crate::notify::inbox::receive_sms(
                inbox.clone(),
                rx,
                cancel.child_token(),
            ));
        }
        if let Some(rx) = call_control.as_ref().and_then(|cc| cc.receive_messages()) {
            tasks.spawn(crate::notify::inbox::receive_sip(
                inbox.clone(),
                rx,
                cancel.child_token(),
            ));
        }
        let agents = AgentSessions::default();
        let live = telephony.clone();
        let on_trunk = telephony.clone();
        let registering = telephony.clone();
        let webhook_changes = Arc::new(tokio::sync::Notify::new());
        let deps = ApiDeps {
            store: store.clone(),
            events: events.clone(),
            trunks: Arc::new(config.trunks.keys().cloned().collect()),
            json_body_limit: config.api.body_limit_bytes,
            csv_body_limit: config.api.csv_body_limit_bytes,
            bootstrap_key_hash: bootstrap_key
                .filter(|k| !k.is_empty())
                .map(|k| Arc::from(hash_key(&k))),
            runtime: runtime.clone(),
            shutdown: cancel.child_token(),
            sse_keep_alive: std::time::Duration::from_millis(config.events.keep_alive_ms),
            webhook_changes: webhook_changes.clone(),
            metrics: MetricsSources {
                live_calls: Arc::new(move || live.live_calls()),
                trunk_live: Arc::new(move |t| on_trunk.trunk_live_calls(t)),
                trunk_limits: Arc::new(
                    config
                        .trunks
                        .iter()
                        .map(|(n, t)| (n.clone(), (t.max_concurrent_calls, t.max_calls_per_second)))
                        .collect(),
                ),
                trunk_registration: Arc::new(move |t| registering.trunk_registration(t)),
                trunk_view: Arc::new(
                    config
                        .trunks
                        .iter()
                        .map(|(n, t)| (n.clone(), crate::api::trunks::TrunkView::of(t)))
                        .collect(),
                ),
                agents: agents.clone(),
                transports: Arc::new(channels.transports),
                health: channels.messaging.health.clone(),
            },
            metrics_require_api_key: config.metrics.require_api_key,
            messaging: channels.messaging,
            whatsapp_webhook: channels.whatsapp_webhook,
            inbox,
        };
        let scheduler = Scheduler::start(SchedulerDeps {
            store: store.clone(),
            events: events.clone(),
            telephony,
            node_id: node_id.clone(),
            trunks: crate::campaign::trunks::TrunkGates::new(&config.trunks),
            agents,
            runtime,
            clock,
            share: Default::default(),
        })
        .await
        .context("starting the scheduler")?;
        let webhooks = Dispatcher::start(
            store.clone(),
            WebhookSettings::from(&config.webhooks),
            node_id,
            webhook_changes,
        )
        .context("starting webhook delivery")?;
        let router = api::router(deps);
        tasks.spawn(crate::server::serve(
            listener,
            router,
            crate::server::Limits::from(&config.api),
            cancel.clone(),
        ));
        tasks.close();
        tracing::info!(%addr, sip = ?sip_addr, simulator = ?simulator_addr, backend = ?store.backend(), "herald is listening");
        Ok(App {
            addr,
            store,
            events,
            sip_addr,
            simulator_addr,
            bounce_addr,
            simulator,
            cancel,
            tasks,
            scheduler: Some(scheduler),
            webhooks: Some(webhooks),
            call_control,
        })
    }

    /// Stops every task and waits for them, then closes the store.
    /// Stops dialing, hangs up live calls (recorded as interrupted), stops
    /// the API, waits for every task, then closes the store.
    pub async fn shutdown(mut self) {
        // The scheduler first, while call control still runs, so that its
        // hang-ups are sent and every attempt is recorded.
        if let Some(s) = self.scheduler.take() {
            s.shutdown().await;
        }
        if let Some(w) = self.webhooks.take() {
            w.shutdown().await;
        }
        self.cancel.cancel();
        if let Some(cc) = self.call_control.take() {
            cc.stopped().await;
        }
        // The simulator last: herald's hang-ups above still reach it.
        if let Some(sim) = self.simulator.take() {
            sim.shutdown().await;
        }
        self.tasks.wait().await;
        self.store.close().await;
    }

    /// The embedded callee simulator, when it runs.
    pub fn simulator(&self) -> Option<&Simulator> {
        self.simulator.as_ref()
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` resolves, then shuts down.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        stop.await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called (not when first polled), so a signal right after the call is caught.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://data/herald.db"),
            "sqlite://data/herald.db"
        );
    }
}
