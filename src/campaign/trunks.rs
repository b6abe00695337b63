//! Capacity shared by every campaign of this node: each trunk's own
//! calls-per-second bucket and concurrent-call limit, and its priority rule —
//! while an emergency campaign wants more of a trunk than it gets, normal
//! campaigns on that trunk start no calls — and each agent's concurrent
//! sessions (`max_concurrent_sessions`), counted across the campaigns using it.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::rules::pacing::{trunk_room, Priority};
use crate::config::TrunkConfig;

/// How long an emergency campaign's claim on a trunk holds normal ones back.
const EMERGENCY_HOLD_MS: i64 = 300;

pub struct TrunkGate {
    /// The bucket for this node's share of the rate: (nodes, bucket).
    limiter: std::sync::Mutex<(u32, DefaultDirectRateLimiter)>,
    max_calls_per_second: u32,
    max_concurrent: u32,
    /// Normal campaigns yield until this instant (epoch ms).
    emergency_until: AtomicI64,
}

impl TrunkGate {
    fn new(max_calls_per_second: u32, max_concurrent: u32) -> TrunkGate {
        TrunkGate {
            limiter: std::sync::Mutex::new((1, bucket(max_calls_per_second))),
            max_calls_per_second,
            max_concurrent,
            emergency_until: AtomicI64::new(0),
        }
    }

    /// How many of `wanted` calls a campaign may start now on this trunk,
    /// taking that many of the trunk's tokens. `live` is the trunk's live
    /// calls on this node when telephony knows them; `share` is this node's
    /// part of the trunk's limits.
    pub fn take(
        &self,
        wanted: u32,
        live: Option<u32>,
        priority: Priority,
        now_ms: i64,
        share: &super::deps::NodeShare,
    ) -> u32 {
        if wanted == 0 {
            return 0;
        }
        let room = trunk_room(
            wanted,
            live,
            share.of(self.max_concurrent),
            priority,
            now_ms,
            self.emergency_until.load(Ordering::Relaxed),
        );
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if limiter.0 != share.nodes() {
            *limiter = (share.nodes(), bucket(share.of(self.max_calls_per_second)));
        }
        let mut got = 0;
        while got < room && limiter.1.check().is_ok() {
            got += 1;
        }
        if priority == Priority::Emergency {
            self.emergency_until
                .store(now_ms + EMERGENCY_HOLD_MS, Ordering::Relaxed);
        }
        got
    }
}

/// A rate bucket of `per_second` with a tenth of a second's worth at once,
/// so the bucket is not the tick's bottleneck.
fn bucket(per_second: u32) -> DefaultDirectRateLimiter {
    let cps = NonZeroU32::new(per_second.max(1)).expect("positive");
    let burst = NonZeroU32::new((per_second / 10).max(1)).expect("positive");
    RateLimiter::direct(Quota::per_second(cps).allow_burst(burst))
}

/// The gates of the configured trunks.
#[derive(Clone, Default)]
pub struct TrunkGates {
    gates: Arc<HashMap<String, Arc<TrunkGate>>>,
}

impl TrunkGates {
    pub fn new(trunks: &BTreeMap<String, TrunkConfig>) -> TrunkGates {
        let gates = trunks
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    Arc::new(TrunkGate::new(
                        t.max_calls_per_second,
                        t.max_concurrent_calls,
                    )),
                )
            })
            .collect();
        TrunkGates {
            gates: Arc::new(gates),
        }
    }

    pub fn get(&self, trunk: &str) -> Option<Arc<TrunkGate>> {
        self.gates.get(trunk).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::deps::NodeShare;
    use super::*;

    #[test]
    fn two_live_nodes_each_take_half_of_a_trunk_rounded_up() {
        let two = NodeShare::default();
        two.set_nodes(2);
        let g = TrunkGate::new(20, 30);
        assert_eq!(
            g.take(50, Some(14), Priority::Normal, 0, &two),
            1,
            "15 of 30 here"
        );
        assert_eq!(g.take(50, Some(15), Priority::Normal, 0, &two), 0);
        assert_eq!(two.of(30), 15);
        assert_eq!(two.of(25), 13);
        assert_eq!(two.of(0), 0);
        assert_eq!(two.of_rate(20.0), 10.0);
        two.set_nodes(0);
        assert_eq!(two.nodes(), 1, "never fewer than this node");
    }

    #[test]
    fn concurrency_caps_what_a_campaign_may_start() {
        let one = NodeShare::default();
        let g = TrunkGate::new(1000, 10);
        assert_eq!(g.take(50, Some(7), Priority::Normal, 0, &one), 3);
        assert_eq!(g.take(50, Some(10), Priority::Normal, 0, &one), 0);
    }

    #[test]
    fn the_rate_bucket_is_shared() {
        let one = NodeShare::default();
        let g = TrunkGate::new(20, 1000);
        let a = g.take(100, None, Priority::Normal, 0, &one);
        let b = g.take(100, None, Priority::Normal, 0, &one);
        assert_eq!(a, 2, "a tenth of a second's worth at once");
        assert_eq!(b, 0);
    }

    #[test]
    fn normal_campaigns_yield_while_an_emergency_one_dials() {
        let one = NodeShare::default();
        let g = TrunkGate::new(1000, 1000);
        assert!(g.take(5, None, Priority::Emergency, 1_000, &one) > 0);
        assert_eq!(g.take(5, None, Priority::Normal, 1_100, &one), 0);
        assert!(g.take(5, None, Priority::Normal, 2_000, &one) > 0);
    }
}

/// Live agent sessions per agent on this node, shared by every campaign that
/// uses the agent, so its `max_concurrent_sessions` holds across them.
#[derive(Clone, Default)]
pub struct AgentSessions {
    live: Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

/// One session held for a call; released when dropped.
pub struct SessionSlot {
    sessions: AgentSessions,
    agent: String,
}

impl AgentSessions {
    /// Sessions in use by `agent` right now.
    pub fn live(&self, agent: &str) -> u32 {
        self.live
            .lock()
            .expect("agent sessions")
            .get(agent)
            .copied()
            .unwrap_or(0)
    }

    /// Sessions in use per agent (agents with none are left out).
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let live = self.live.lock().expect("agent sessions");
        let mut v: Vec<_> = live
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (a.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Takes a slot for `agent` if fewer than `max` are in use.
    pub fn try_take(&self, agent: &str, max: u32) -> Option<SessionSlot> {
        let mut live = self.live.lock().expect("agent sessions");
        let n = live.entry(agent.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            sessions: self.clone(),
            agent: agent.to_string(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut live = self.sessions.live.lock().expect("agent sessions");
        if let Some(n) = live.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    #[test]
    fn an_agents_sessions_are_counted_across_campaigns() {
        let s = AgentSessions::default();
        let a = s.try_take("bot", 2).unwrap();
        let _b = s.clone().try_take("bot", 2).unwrap();
        assert!(
            s.try_take("bot", 2).is_none(),
            "the third session is refused"
        );
        assert_eq!(s.live("other"), 0);
        drop(a);
        assert_eq!(s.live("bot"), 1);
        assert!(s.try_take("bot", 2).is_some());
    }
}
