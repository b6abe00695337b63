//! Sends held back while a bulk is being accepted.
//!
//! Accepting a bulk and sending its first messages compete for the same
//! writer (SQLite has one) and the same cores: a 100,000-recipient bulk took
//! three times as long to accept while the senders sent its first rows.
//! While a bulk is being accepted, the senders of this node claim only
//! messages ranked above the bulk's priority; the bulk's rows (and any of
//! its rank or lower) go once its answer is written, at the transports'
//! rate. An `emergency` bulk holds nothing back. A verification code sent
//! during a marketing bulk is never held.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The holds in force on this node, by priority rank (0 emergency,
/// 1 transactional, 2 marketing).
#[derive(Debug, Clone, Default)]
pub struct ClaimHolds {
    counts: Arc<Mutex<[u32; 3]>>,
    /// The senders to wake when a hold ends.
    wakes: Arc<Mutex<Vec<Arc<Notify>>>>,
}

impl ClaimHolds {
    /// The senders woken when a hold is released.
    pub fn wake_on_release(&self, wake: Arc<Notify>) {
        self.wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(wake);
    }

    /// Holds back messages ranked `rank` or lower until the guard drops;
    /// `None` for an emergency (nothing is held).
    pub fn hold(&self, rank: i64) -> Option<ClaimHold> {
        let rank = usize::try_from(rank).ok().filter(|r| (1..3).contains(r))?;
        self.counts.lock().unwrap_or_else(|e| e.into_inner())[rank] += 1;
        Some(ClaimHold {
            holds: self.clone(),
            rank,
        })
    }

    /// Messages ranked this or lower are held: claims take only those
    /// ranked before it.
    pub fn ceiling(&self) -> Option<i64> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (1..3).find(|&r| counts[r] > 0).map(|r| r as i64)
    }
}

/// A hold in force; released (and the senders woken) when dropped.
#[derive(Debug)]
pub struct ClaimHold {
    holds: ClaimHolds,
    rank: usize,
}

impl Drop for ClaimHold {
    fn drop(&mut self) {
        {
            let mut counts = self.holds.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts[self.rank] = counts[self.rank].saturating_sub(1);
        }
        for w in self
            .holds
            .wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            w.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_rank_held_bounds_claims_until_its_hold_ends() {
        let holds = ClaimHolds::default();
        assert_eq!(holds.ceiling(), None);
        assert!(holds.hold(0).is_none(), "an emergency bulk holds nothing");
        let marketing = holds.hold(2).expect("held");
        assert_eq!(holds.ceiling(), Some(2));
        let transactional = holds.hold(1).expect("held");
        assert_eq!(holds.ceiling(), Some(1));
        drop(transactional);
        assert_eq!(holds.ceiling(), Some(2));
        drop(marketing);
        assert_eq!(holds.ceiling(), None);
    }

    #[tokio::test]
    async fn a_released_hold_wakes_the_senders() {
        let holds = ClaimHolds::default();
        let wake = Arc::new(Notify::new());
        holds.wake_on_release(wake.clone());
        let h = holds.hold(2).expect("held");
        drop(h);
        // The permit stored by notify_one is taken at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified())
            .await
            .expect("woken");
    }
}
