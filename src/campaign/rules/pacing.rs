//! Pacing decisions: how many dials a campaign launches now, and how a
//! trunk's free capacity is shared between campaigns running at once
//! (emergency campaigns first, the rest shared fairly).
//!
//! Must not hold rate-limiter state or read the clock: the caller passes the
//! tokens its governor bucket grants, the calls in flight and the free
//! capacities it counted.

use serde_json::Value;

/// A campaign's `priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Normal,
    /// Ignores calling windows and takes trunk capacity ahead of `Normal`.
    Emergency,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "normal" => Some(Priority::Normal),
            "emergency" => Some(Priority::Emergency),
            _ => None,
        }
    }

    /// The `priority` of a stored campaign document; `Normal` when absent.
    pub fn from_spec(campaign: &Value) -> Priority {
        campaign
            .get("priority")
            .and_then(Value::as_str)
            .and_then(Priority::parse)
            .unwrap_or(Priority::Normal)
    }
}

/// The caps on a campaign's concurrent calls besides its own rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingLimits {
    /// The campaign's `max_concurrent_calls`.
    pub max_concurrent: u32,
    /// Calls the trunk can still take (its share for this campaign).
    pub trunk_free: u32,
    /// Sessions the agent can still take (`max_concurrent_sessions` − live).
    pub agent_free: u32,
}

/// How many dials to launch now: `min(max_concurrent − in_flight,
/// trunk_free, agent_free, tokens)`, never negative.
pub fn launch_count(in_flight: u32, limits: &PacingLimits, tokens: u32) -> u32 {
    limits
        .max_concurrent
        .saturating_sub(in_flight)
        .min(limits.trunk_free)
        .min(limits.agent_free)
        .min(tokens)
}

/// Splits `free` trunk channels among campaigns asking for `demands`
/// (`(priority, calls wanted)`, one per campaign). Emergency campaigns are
/// served first, sharing fairly among themselves; what is left is shared
/// fairly among normal ones. Fair = max-min: nobody gets more than it asked
/// for, what one does not need goes to the others, and an indivisible
/// remainder goes to the earlier campaigns in `demands`. The answer has one
/// entry per demand, in order, and never sums past `free`.
pub fn share_trunk(free: u32, demands: &[(Priority, u32)]) -> Vec<u32> {
    let mut shares = vec![0; demands.len()];
    let mut left = free;
    for tier in [Priority::Emergency, Priority::Normal] {
        let members: Vec<usize> = (0..demands.len())
            .filter(|&i| demands[i].0 == tier)
            .collect();
        let wants: Vec<u32> = members.iter().map(|&i| demands[i].1).collect();
        let (given, used) = fill_fairly(left, &wants);
        for (k, &i) in members.iter().enumerate() {
            shares[i] = given[k];
        }
        left -= used;
    }
    shares
}

/// Max-min fair split of `free` among `wants`; returns the shares and their sum.
fn fill_fairly(free: u32, wants: &[u32]) -> (Vec<u32>, u32) {
    let mut given = vec![0u32; wants.len()];
    let mut left = free;
    loop {
        let hungry: Vec<usize> = (0..wants.len()).filter(|&i| given[i] < wants[i]).collect();
        if hungry.is_empty() || left == 0 {
            break;
        }
        let each = left / hungry.len() as u32;
        if each == 0 {
            for &i in hungry.iter().take(left as usize) {
                given[i] += 1;
            }
            left = 0;
            break;
        }
        for &i in &hungry {
            let g = each.min(wants[i] - given[i]);
            given[i] += g;
            left -= g;
        }
    }
    (given, free - left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use Priority::{Emergency as E, Normal as N};

    fn limits(max_concurrent: u32, trunk_free: u32, agent_free: u32) -> PacingLimits {
        PacingLimits {
            max_concurrent,
            trunk_free,
            agent_free,
        }
    }

    #[test]
    fn launch_count_is_the_tightest_limit() {
        assert_eq!(launch_count(0, &limits(50, 100, 100), 5), 5, "rate");
        assert_eq!(launch_count(48, &limits(50, 100, 100), 5), 2, "concurrency");
        assert_eq!(launch_count(0, &limits(50, 3, 100), 5), 3, "trunk");
        assert_eq!(launch_count(0, &limits(50, 100, 1), 5), 1, "agent");
    }

    #[test]
    fn launch_count_is_never_negative() {
        assert_eq!(
            launch_count(60, &limits(50, 100, 100), 5),
            0,
            "lowered while running"
        );
        assert_eq!(launch_count(0, &limits(50, 0, 100), 5), 0);
        assert_eq!(launch_count(0, &limits(50, 100, 100), 0), 0);
    }

    #[test]
    fn priority_is_read_from_the_campaign() {
        assert_eq!(Priority::from_spec(&json!({"priority": "emergency"})), E);
        assert_eq!(Priority::from_spec(&json!({"priority": "normal"})), N);
        assert_eq!(Priority::from_spec(&json!({})), N);
        for p in [N, E] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn emergency_campaigns_are_served_before_normal_ones() {
        assert_eq!(share_trunk(10, &[(N, 10), (E, 8), (N, 10)]), vec![1, 8, 1]);
        assert_eq!(share_trunk(5, &[(N, 10), (E, 8)]), vec![0, 5]);
    }

    #[test]
    fn normal_campaigns_split_fairly_and_unused_share_goes_to_others() {
        assert_eq!(
            share_trunk(30, &[(N, 10), (N, 10), (N, 10)]),
            vec![10, 10, 10]
        );
        assert_eq!(
            share_trunk(30, &[(N, 2), (N, 100), (N, 100)]),
            vec![2, 14, 14]
        );
        assert_eq!(
            share_trunk(10, &[(N, 100), (N, 100), (N, 100)]),
            vec![4, 3, 3]
        );
    }

    #[test]
    fn emergency_campaigns_split_fairly_among_themselves() {
        assert_eq!(share_trunk(9, &[(E, 100), (N, 5), (E, 1)]), vec![8, 0, 1]);
        assert_eq!(share_trunk(7, &[(E, 100), (E, 100)]), vec![4, 3]);
    }

    #[test]
    fn trunk_shares_never_exceed_free_or_demand() {
        let cases: &[(u32, &[(Priority, u32)])] = &[
            (0, &[(N, 5), (E, 5)]),
            (100, &[(N, 5), (E, 5)]),
            (17, &[(N, 3), (E, 9), (N, 40), (E, 0), (N, 1)]),
            (u32::MAX, &[(N, u32::MAX), (E, u32::MAX)]),
        ];
        for &(free, demands) in cases {
            let shares = share_trunk(free, demands);
            assert_eq!(shares.len(), demands.len());
            let total: u64 = shares.iter().map(|&s| u64::from(s)).sum();
            assert!(total <= u64::from(free), "{free} {demands:?} → {shares:?}");
            let wanted: u64 = demands.iter().map(|&(_, d)| u64::from(d)).sum();
            assert_eq!(total, wanted.min(u64::from(free)), "capacity left unused");
            for (s, (_, d)) in shares.iter().zip(demands) {
                assert!(s <= d);
            }
        }
        assert!(share_trunk(5, &[]).is_empty());
    }
}
