//! Pacing decisions: how many calls a campaign may start now (its own
//! concurrency), and how many a trunk lets it start (the trunk's free
//! channels, emergency campaigns first). The rate buckets themselves
//! (governor) and the agents' session counts are applied by the scheduler
//! and `campaign::trunks` after these caps.
//!
//! Must not hold rate-limiter state or read the clock: the caller passes the
//! calls in flight, the live calls it counted and `now`.

pub use crate::domain::specs::Priority;

/// How many more calls a campaign may start: its `max_concurrent_calls`
/// less the calls it has in flight (never negative, e.g. after the limit was
/// lowered while running). Its rate bucket then grants at most this many.
pub fn campaign_room(max_concurrent: u32, in_flight: u32) -> u32 {
    max_concurrent.saturating_sub(in_flight)
}

/// How many of `wanted` calls a campaign of `priority` may start on a trunk
/// before the trunk's rate bucket is asked: none for a normal campaign while
/// an emergency one holds the trunk (`now_ms < emergency_until`), else up to
/// the trunk's free channels when its live calls are known.
pub fn trunk_room(
    wanted: u32,
    live: Option<u32>,
    max_concurrent: u32,
    priority: Priority,
    now_ms: i64,
    emergency_until: i64,
) -> u32 {
    if priority == Priority::Normal && now_ms < emergency_until {
        return 0;
    }
    let free = live.map_or(wanted, |l| max_concurrent.saturating_sub(l));
    wanted.min(free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::{Emergency as E, Normal as N};

    #[test]
    fn a_campaign_has_room_up_to_its_concurrency() {
        for (max, in_flight, want) in [
            (50, 0, 50),
            (50, 48, 2),
            (50, 50, 0),
            (50, 60, 0),
            (0, 0, 0),
        ] {
            assert_eq!(campaign_room(max, in_flight), want, "{max} {in_flight}");
        }
    }

    #[test]
    fn the_trunk_gives_its_free_channels_and_emergencies_go_first() {
        // wanted, live, max concurrent, priority, now, emergency until → room
        let table = [
            (10, None, 5, N, 1_000, 0, 10),
            (10, Some(0), 5, N, 1_000, 0, 5),
            (10, Some(3), 5, N, 1_000, 0, 2),
            (10, Some(9), 5, N, 1_000, 0, 0),
            (10, Some(0), 50, N, 1_000, 1_300, 0),
            (10, Some(0), 50, N, 1_300, 1_300, 10),
            (10, Some(0), 50, E, 1_000, 1_300, 10),
            (10, Some(48), 50, E, 1_000, 1_300, 2),
            (0, Some(0), 50, E, 1_000, 0, 0),
        ];
        for (wanted, live, max, p, now, until, want) in table {
            assert_eq!(
                trunk_room(wanted, live, max, p, now, until),
                want,
                "{wanted} {live:?} {max} {p:?} {now} {until}"
            );
        }
    }

    #[test]
    fn priority_is_read_from_the_campaign() {
        for p in [N, E] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }
}
