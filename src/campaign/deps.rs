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
}
