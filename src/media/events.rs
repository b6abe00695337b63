//! The bounded, order-preserving queue of media events from a session to its
//! user.
//!
//! Owns: the backpressure rule: when the consumer falls behind, received audio
//! frames beyond a fixed number are dropped (and counted); DTMF, marks and
//! inactivity are never dropped (they are rare and small). Single consumer.
//!
//! Must not: block the session task (pushing never waits) or reorder events.

use super::types::MediaEvent;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<MediaEvent>,
    audio_queued: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct EventQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    audio_capacity: usize,
}

impl EventQueue {
    /// A queue that holds at most `audio_capacity` audio frames.
    pub(crate) fn new(audio_capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            audio_capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event; returns `false` if it was an audio frame that did not fit.
    pub(crate) fn push(&self, ev: MediaEvent) -> bool {
        {
            let mut inner = self.lock();
            if inner.closed {
                return false;
            }
            if matches!(ev, MediaEvent::Audio { .. }) {
                if inner.audio_queued >= self.audio_capacity {
                    return false;
                }
                inner.audio_queued += 1;
            }
            inner.queue.push_back(ev);
        }
        self.notify.notify_one();
        true
    }

    /// No more events will come; the consumer drains what is queued, then sees `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    pub(crate) async fn next(&self) -> Option<MediaEvent> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(ev) = inner.queue.pop_front() {
                    if matches!(ev, MediaEvent::Audio { .. }) {
                        inner.audio_queued -= 1;
                    }
                    return Some(ev);
                }
                if inner.closed {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between
            // the check above and this await is not lost.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn audio(seq: u16) -> MediaEvent {
        MediaEvent::Audio {
            ulaw: Bytes::from_static(&[0xFF; 4]),
            seq,
            timestamp: 0,
        }
    }

    #[tokio::test]
    async fn audio_beyond_capacity_is_dropped_but_control_events_are_kept() {
        let q = EventQueue::new(2);
        assert!(q.push(audio(1)));
        assert!(q.push(audio(2)));
        assert!(!q.push(audio(3)), "third frame does not fit");
        assert!(q.push(MediaEvent::Dtmf('5')));
        assert!(q.push(MediaEvent::MarkPlayed("m".into())));
        assert!(q.push(MediaEvent::Inactive));
        assert_eq!(q.next().await, Some(audio(1)));
        assert!(q.push(audio(4)), "room again after one was taken");
        assert_eq!(q.next().await, Some(audio(2)));
        assert_eq!(q.next().await, Some(MediaEvent::Dtmf('5')));
        assert_eq!(q.next().await, Some(MediaEvent::MarkPlayed("m".into())));
        assert_eq!(q.next().await, Some(MediaEvent::Inactive));
        assert_eq!(q.next().await, Some(audio(4)));
        q.close();
        assert_eq!(q.next().await, None);
        assert!(!q.push(MediaEvent::Inactive));
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken() {
        let q = std::sync::Arc::new(EventQueue::new(8));
        let q2 = std::sync::Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.push(MediaEvent::Dtmf('1'));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, Some(MediaEvent::Dtmf('1')));
    }
}
