//! The narrow handles the scheduler's tasks share (campaign tasks, one-off
//! calls, attempts, recovery), and the tick they look at the store on.

use std::sync::Arc;
use std::time::Duration;

use super::trunks::{AgentSessions, TrunkGates};
use crate::agent::AgentRuntime;
use crate::clock::Clock;
use crate::events::EventBus;
use crate::sip::Telephony;
use crate::store::Store;

/// How often campaigns and due one-off calls are looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// What the scheduler needs.
#[derive(Clone)]
pub struct SchedulerDeps {
    pub store: Store,
    pub events: EventBus,
    pub telephony: Arc<dyn Telephony>,
    pub node_id: String,
    pub trunks: TrunkGates,
    pub agents: AgentSessions,
    /// Builds agents and holds the live calls' controls.
    pub runtime: AgentRuntime,
    /// "Now" for every decision and stored instant.
    pub clock: Clock,
    /// This node's share of the cluster-wide limits.
    pub share: NodeShare,
}

/// This node's share of every limit that holds across the nodes on one
/// PostgreSQL database (a trunk's and a campaign's rate and concurrent
/// calls, an agent's sessions): one part in the number of live nodes (by
/// their heartbeats), rounded up. A node that dies stops counting once it is
/// declared dead, and the others take its share. One node (and SQLite):
/// the whole limit.
#[derive(Clone, Debug)]
pub struct NodeShare(Arc<std::sync::atomic::AtomicU32>);

impl Default for NodeShare {
    fn default() -> Self {
        NodeShare(Arc::new(std::sync::atomic::AtomicU32::new(1)))
    }
}

impl NodeShare {
    /// The live nodes counted last.
    pub fn nodes(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed).max(1)
    }

    pub fn set_nodes(&self, n: u32) {
        self.0.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's part of a whole-number limit (0 stays 0).
    pub fn of(&self, limit: u32) -> u32 {
        match limit {
            0 => 0,
            l => l.div_ceil(self.nodes()),
        }
    }

    /// This node's part of a rate.
    pub fn of_rate(&self, rate: f64) -> f64 {
        rate / f64::from(self.nodes())
    }
}
