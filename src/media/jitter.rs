//! A small receive jitter buffer keyed by RTP sequence number.
//!
//! Owns: reordering packets by (wrap-around safe, extended) sequence number,
//! holding each for a configurable playout delay after it arrived, dropping
//! late and duplicate packets, and counting gaps (packets never received) when
//! playout moves past them. Resynchronises on a sequence jump larger than
//! RFC 3550's `MAX_DROPOUT`.
//!
//! Must not: read the clock (callers pass `now` in ms from any fixed origin),
//! decode audio, or touch sockets.

use bytes::Bytes;
use std::collections::BTreeMap;

/// A jump larger than this (either way) is a new stream, not loss (RFC 3550 A.1).
const MAX_DROPOUT: i64 = 3000;
/// A packet further behind than this is a candidate restart of the stream
/// (RFC 3550 A.1 `MAX_MISORDER`): two in a row resynchronise.
const MAX_MISORDER: i64 = 100;
/// Extended sequence numbers start this far up so a stream can go backwards.
const EXT_ORIGIN: i64 = 1 << 32;

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Its place in the playout has already passed.
    Late,
    /// The same sequence number is already waiting.
    Duplicate,
}

/// A packet released for playout, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u16,
    pub timestamp: u32,
    pub payload: Bytes,
    /// How many sequence numbers were skipped just before this frame.
    pub lost_before: u64,
}

/// Running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterCounters {
    /// Packets never received (sequence numbers skipped by playout).
    pub lost: u64,
    /// Number of separate gaps.
    pub gaps: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Sequence jumps treated as a new stream.
    pub resyncs: u64,
}

#[derive(Debug)]
struct Slot {
    arrived_ms: u64,
    seq: u16,
    timestamp: u32,
    payload: Bytes,
}

/// The jitter buffer. Feed with [`JitterBuffer::push`], drain with
/// [`JitterBuffer::pop`] until it returns `None`.
#[derive(Debug)]
pub struct JitterBuffer {
    delay_ms: u64,
    capacity: usize,
    slots: BTreeMap<i64, Slot>,
    highest: Option<i64>,
    next: Option<i64>,
    /// The sequence number that would confirm a restart far behind.
    restart_probe: Option<u16>,
    counters: JitterCounters,
}

impl JitterBuffer {
    /// A buffer that holds each packet `delay_ms` after its arrival and at
    /// most `capacity` packets (the oldest are released early beyond that).
    pub fn new(delay_ms: u32, capacity: usize) -> JitterBuffer {
        JitterBuffer {
            delay_ms: u64::from(delay_ms),
            capacity: capacity.max(1),
            slots: BTreeMap::new(),
            highest: None,
            next: None,
            restart_probe: None,
            counters: JitterCounters::default(),
        }
    }

    pub fn counters(&self) -> JitterCounters {
        self.counters
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// When the oldest waiting packet becomes due (ms), if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.slots
            .first_key_value()
            .map(|(_, s)| s.arrived_ms + self.delay_ms)
    }

    fn extend(&self, seq: u16) -> i64 {
        match self.highest {
            None => EXT_ORIGIN + i64::from(seq),
            Some(h) => {
                let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
                h + diff
            }
        }
    }

    /// Adds a received packet.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Bytes, now_ms: u64) -> Pushed {
        let mut ext = self.extend(seq);
        if let Some(h) = self.highest {
            if (ext - h).abs() > MAX_DROPOUT {
                self.counters.resyncs += 1;
                self.reset();
                ext = self.extend(seq);
            }
        }
        if let Some(n) = self.next.filter(|&n| ext < n) {
            if n - ext > MAX_MISORDER {
                if self.restart_probe == Some(seq) {
                    // Two consecutive packets far behind: the sender restarted.
                    self.counters.resyncs += 1;
                    self.reset();
                    ext = self.extend(seq);
                } else {
                    self.restart_probe = Some(seq.wrapping_add(1));
                    self.counters.late += 1;
                    return Pushed::Late;
                }
            } else {
                self.counters.late += 1;
                return Pushed::Late;
            }
        }
        self.restart_probe = None;
        if self.slots.contains_key(&ext) {
            self.counters.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.slots.insert(
            ext,
            Slot {
                arrived_ms: now_ms,
                seq,
                timestamp,
                payload,
            },
        );
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        if self.next.is_none() {
            self.next = Some(ext);
        }
        Pushed::Queued
    }

    /// Releases the next frame if its playout time has come (or the buffer
    /// is over capacity).
    pub fn pop(&mut self, now_ms: u64) -> Option<Frame> {
        let (&ext, slot) = self.slots.first_key_value()?;
        if now_ms < slot.arrived_ms + self.delay_ms && self.slots.len() <= self.capacity {
            return None;
        }
        Some(self.release(ext))
    }

    /// Releases every waiting frame in order regardless of time (e.g. before
    /// the sender changes stream).
    pub fn drain_all(&mut self) -> Vec<Frame> {
        let keys: Vec<i64> = self.slots.keys().copied().collect();
        keys.into_iter().map(|k| self.release(k)).collect()
    }

    /// Forgets the stream position (waiting frames are discarded).
    pub fn reset(&mut self) {
        self.slots.clear();
        self.highest = None;
        self.next = None;
        self.restart_probe = None;
    }

    fn release(&mut self, ext: i64) -> Frame {
        let next = self.next.unwrap_or(ext);
        let lost = u64::try_from(ext - next).unwrap_or(0);
        if lost > 0 {
            self.counters.lost += lost;
            self.counters.gaps += 1;
        }
        self.next = Some(ext + 1);
        // `ext` was just read from the map.
        let slot = self.slots.remove(&ext).unwrap_or(Slot {
            arrived_ms: 0,
            seq: ext as u16,
            timestamp: 0,
            payload: Bytes::new(),
        });
        Frame {
            seq: slot.seq,
            timestamp: slot.timestamp,
            payload: slot.payload,
            lost_before: lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Bytes {
        Bytes::from(vec![n; 4])
    }

    fn drain(jb: &mut JitterBuffer, now: u64) -> Vec<u16> {
        std::iter::from_fn(|| jb.pop(now)).map(|f| f.seq).collect()
    }

    #[test]
    fn frames_wait_for_the_playout_delay_then_come_out_in_order() {
        let mut jb = JitterBuffer::new(40, 100);
        assert_eq!(jb.push(10, 1600, p(10), 0), Pushed::Queued);
        assert_eq!(jb.push(12, 1920, p(12), 5), Pushed::Queued);
        assert_eq!(jb.push(11, 1760, p(11), 10), Pushed::Queued);
        assert_eq!(jb.next_due_ms(), Some(40));
        assert_eq!(drain(&mut jb, 39), Vec::<u16>::new());
        assert_eq!(drain(&mut jb, 40), [10]);
        assert_eq!(drain(&mut jb, 50), [11, 12]);
        assert_eq!(jb.counters().lost, 0);
    }

    #[test]
    fn zero_delay_releases_at_once() {
        let mut jb = JitterBuffer::new(0, 100);
        jb.push(1, 0, p(1), 7);
        let f = jb.pop(7).expect("due");
        assert_eq!((f.seq, f.payload.clone()), (1, p(1)));
        assert!(jb.pop(7).is_none());
    }

    #[test]
    fn sequence_wrap_around_keeps_order() {
        let mut jb = JitterBuffer::new(20, 100);
        for (i, s) in [65534u16, 0, 65535, 1].into_iter().enumerate() {
            jb.push(s, 0, p(0), i as u64);
        }
        assert_eq!(drain(&mut jb, 100), [65534, 65535, 0, 1]);
        assert_eq!(jb.counters(), JitterCounters::default());
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped_and_counted() {
        let mut jb = JitterBuffer::new(0, 100);
        jb.push(5, 0, p(5), 0);
        assert_eq!(jb.push(5, 0, p(5), 0), Pushed::Duplicate);
        assert_eq!(drain(&mut jb, 0), [5]);
        assert_eq!(jb.push(5, 0, p(5), 1), Pushed::Late);
        assert_eq!(jb.push(4, 0, p(4), 1), Pushed::Late);
        let c = jb.counters();
        assert_eq!((c.late, c.duplicates), (2, 1));
    }

    #[test]
    fn gaps_are_reported_once_the_delay_has_passed() {
        let mut jb = JitterBuffer::new(60, 100);
        jb.push(100, 0, p(0), 0);
        jb.push(103, 0, p(0), 60);
        jb.push(104, 0, p(0), 80);
        assert_eq!(drain(&mut jb, 60), [100]);
        // 101 and 102 may still come until 103 is due.
        assert_eq!(jb.push(101, 0, p(0), 100), Pushed::Queued);
        let f: Vec<Frame> = std::iter::from_fn(|| jb.pop(200)).collect();
        let got: Vec<(u16, u64)> = f.iter().map(|f| (f.seq, f.lost_before)).collect();
        assert_eq!(got, [(101, 0), (103, 1), (104, 0)]);
        let c = jb.counters();
        assert_eq!((c.lost, c.gaps), (1, 1));
    }

    #[test]
    fn a_large_jump_is_a_new_stream_not_loss() {
        let mut jb = JitterBuffer::new(0, 100);
        jb.push(1000, 0, p(0), 0);
        assert_eq!(drain(&mut jb, 0), [1000]);
        jb.push(40000, 0, p(0), 1);
        jb.push(40001, 0, p(0), 1);
        assert_eq!(drain(&mut jb, 1), [40000, 40001]);
        let c = jb.counters();
        assert_eq!((c.lost, c.resyncs), (0, 1));
    }

    #[test]
    fn a_sender_that_starts_over_is_followed_after_two_packets() {
        let mut jb = JitterBuffer::new(0, 100);
        for s in 1000..1300u16 {
            jb.push(s, 0, p(0), 0);
        }
        assert_eq!(drain(&mut jb, 0).len(), 300);
        // The same stream replayed from its first sequence number.
        assert_eq!(jb.push(1000, 0, p(0), 1), Pushed::Late);
        assert_eq!(jb.push(1001, 0, p(0), 1), Pushed::Queued);
        assert_eq!(jb.push(1002, 0, p(0), 1), Pushed::Queued);
        assert_eq!(drain(&mut jb, 1), [1001, 1002]);
        let c = jb.counters();
        assert_eq!((c.resyncs, c.late, c.lost), (1, 1, 0));
        // A single stray old packet does not resynchronise.
        assert_eq!(jb.push(500, 0, p(0), 2), Pushed::Late);
        assert_eq!(jb.push(1003, 0, p(0), 2), Pushed::Queued);
        assert_eq!(jb.counters().resyncs, 1);
    }

    #[test]
    fn capacity_bounds_memory_by_releasing_early() {
        let mut jb = JitterBuffer::new(10_000, 3);
        for s in 0..5u16 {
            jb.push(s, 0, p(0), 0);
        }
        assert_eq!(drain(&mut jb, 0), [0, 1]);
        assert_eq!(jb.len(), 3);
        assert_eq!(jb.drain_all().len(), 3);
        assert!(jb.is_empty());
    }
}
