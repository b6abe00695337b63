//! The callee simulator: a SIP UAS on loopback that answers herald's calls
//! the way a population of people would (`herald sim`, the `[simulator]`
//! section of `herald serve`, `herald demo`, tests and benchmarks).
//!
//! Owns: the simulator's own answering SIP stack (`crate::sip::answer`),
//! numbering calls in arrival order, drawing each call's plan from the
//! population with the seed, and one task per call. Must not: share a SIP
//! stack with herald's dialer, or touch the database.
//!
//! Also [`InstantTelephony`]: no SIP at all, an outcome per number at once,
//! below the `crate::sip::Telephony` interface (scheduler tests and benchmarks).

mod instant;
pub mod population;
mod uas;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::sip::answer::{AnswerMedia, Answerer, AnswererConfig};
pub use instant::InstantTelephony;
pub use population::{CallPlan, Population, PopulationError};
pub use uas::SimCounts;

/// How long a stopping simulator waits for its calls' BYEs to go out.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// UDP address of its SIP socket (port 0 picks one).
    pub listen: SocketAddr,
    pub population: Population,
    /// Calls are planned from the seed and their arrival order.
    pub seed: u64,
    /// RTP ports of answered calls, `[min, max)`.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
}

impl SimulatorConfig {
    /// From the `[simulator]` config section: the population file (or the
    /// embedded default) is read here; errors name the key.
    pub fn from_section(s: &crate::config::SimulatorSection) -> anyhow::Result<SimulatorConfig> {
        let listen = s
            .listen
            .parse()
            .map_err(|_| anyhow::anyhow!("simulator.listen {:?} is not an ip:port", s.listen))?;
        let population = if s.population.is_empty() {
            Population::default_population()
        } else {
            Population::load(std::path::Path::new(&s.population))
                .map_err(|e| anyhow::anyhow!("simulator.population: {e}"))?
        };
        Ok(SimulatorConfig {
            listen,
            population,
            seed: s.seed,
            rtp_port_min: s.rtp_port_min,
            rtp_port_max: s.rtp_port_max,
        })
    }
}

/// A running simulator. Stop it with [`Simulator::shutdown`].
pub struct Simulator {
    addr: SocketAddr,
    answerer: Answerer,
    counters: Arc<uas::Counters>,
    /// Stops taking calls and hangs up live ones.
    cancel: CancellationToken,
    /// Stops the SIP stack, once the calls are over.
    stack_stop: CancellationToken,
    tasks: TaskTracker,
    population: String,
}

impl Simulator {
    /// Binds its SIP socket and starts answering.
    pub async fn start(cfg: SimulatorConfig) -> anyhow::Result<Simulator> {
        let cancel = CancellationToken::new();
        let stack_stop = CancellationToken::new();
        let (answerer, mut incoming) = Answerer::start(
            &AnswererConfig {
                listen: cfg.listen,
                user_agent: "herald-sim/0.1".into(),
                rtp_port_min: cfg.rtp_port_min,
                rtp_port_max: cfg.rtp_port_max,
            },
            stack_stop.clone(),
        )
        .await?;
        let counters = Arc::new(uas::Counters::default());
        let tasks = TaskTracker::new();
        let population = Arc::new(cfg.population);
        let name = population.name.clone();
        let media = if population.media {
            AnswerMedia::Rtp
        } else {
            AnswerMedia::Sink
        };
        let audio = population.audio.ulaw();
        let seed = cfg.seed;
        {
            let (counters, tasks2, stop) = (counters.clone(), tasks.clone(), cancel.clone());
            tasks.spawn(async move {
                let mut index: u64 = 0;
                loop {
                    let call = tokio::select! {
                        _ = stop.cancelled() => break,
                        c = incoming.next() => match c {
                            Some(c) => c,
                            None => break,
                        },
                    };
                    let plan = population.plan(seed, index);
                    index += 1;
                    counters
                        .calls
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let span = tracing::debug_span!("sim_call", call_id = %call.call_id(), plan = plan.kind());
                    let (counters, stop, audio) = (counters.clone(), stop.clone(), audio.clone());
                    tasks2.spawn(
                        async move {
                            let kit = uas::CallKit {
                                media,
                                audio,
                                counters: &counters,
                                stop: &stop,
                            };
                            uas::run(call, plan, kit).await;
                        }
                        .instrument(span),
                    );
                }
            });
        }
        let addr = answerer.local_addr();
        tracing::info!(%addr, population = %name, seed, "callee simulator listening");
        Ok(Simulator {
            addr,
            answerer,
            counters,
            cancel,
            stack_stop,
            tasks,
            population: name,
        })
    }

    /// The simulator's SIP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The population's name.
    pub fn population(&self) -> &str {
        &self.population
    }

    /// What it has done so far.
    pub fn counts(&self) -> SimCounts {
        self.counters.snapshot()
    }

    /// SIP dialogs still tracked (0 once every call has ended).
    pub fn dialogs(&self) -> usize {
        self.answerer.dialogs()
    }

    /// Hangs up live calls, stops the stack and waits for every task
    /// (within a grace period); returns the counts with every call that
    /// ended counted.
    pub async fn shutdown(self) -> SimCounts {
        self.cancel.cancel();
        self.tasks.close();
        tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait())
            .await
            .ok();
        self.stack_stop.cancel();
        tokio::time::timeout(SHUTDOWN_GRACE, self.answerer.stopped())
            .await
            .ok();
        self.counters.snapshot()
    }
}
