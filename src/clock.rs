//! Wall time for the drivers that decide by the calendar (the scheduler:
//! calling windows, daily starts, retry instants). [`Clock::system`] reads
//! the system clock; [`Clock::manual`] is set and advanced by its
//! [`ManualClock`] handle, so tests move across a window opening, a daily
//! start or midnight in a recipient's zone without waiting for it.
//!
//! Owns the notion of "now" only: timers and ticks stay on tokio's clock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// A source of the current instant. Cheap to clone.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Default)]
struct Manual {
    now_ms: AtomicI64,
    reads: AtomicU64,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(m) => write!(f, "Clock::Manual({})", m.now_ms.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock standing at `start` until its handle moves it.
    pub fn manual(start: DateTime<Utc>) -> (Clock, ManualClock) {
        let m = Arc::new(Manual::default());
        m.now_ms.store(start.timestamp_millis(), Ordering::Relaxed);
        (
            Clock {
                manual: Some(m.clone()),
            },
            ManualClock(m),
        )
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(m) => {
                m.reads.fetch_add(1, Ordering::Relaxed);
                at(m.now_ms.load(Ordering::Relaxed))
            }
        }
    }

    /// [`Clock::now`] as epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Moves a manual clock.
#[derive(Clone)]
pub struct ManualClock(Arc<Manual>);

impl ManualClock {
    pub fn set(&self, at: DateTime<Utc>) {
        self.0
            .now_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    pub fn advance(&self, by: Duration) {
        self.0
            .now_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    pub fn now(&self) -> DateTime<Utc> {
        at(self.0.now_ms.load(Ordering::Relaxed))
    }

    /// How many times the clock was read: a test waits for this to grow to
    /// know the drivers have looked at the time since it moved it.
    pub fn reads(&self) -> u64 {
        self.0.reads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let start = at(1_700_000_000_000);
        let (clock, hand) = Clock::manual(start);
        assert_eq!(clock.now(), start);
        assert_eq!(clock.now(), start);
        assert_eq!(hand.reads(), 2);
        hand.advance(Duration::minutes(90));
        assert_eq!(clock.now_ms(), start.timestamp_millis() + 5_400_000);
        hand.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn the_system_clock_follows_the_wall() {
        let before = Utc::now();
        let t = Clock::system().now();
        assert!(t >= before && t <= Utc::now());
    }
}
