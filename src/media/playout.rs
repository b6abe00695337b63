//! The outbound playout queue: μ-law audio and marks, cut into 20 ms frames.
//!
//! Owns: queued audio as one continuous byte stream (chunks of any length),
//! marks placed between chunks, and the rule that a mark is played once all
//! audio queued before it has gone out. Frames are padded with μ-law silence
//! when the queue runs dry.
//!
//! Must not: read the clock or send anything; the RTP session asks for one
//! frame per 20 ms tick.

use super::g711::ULAW_SILENCE;
use bytes::{Buf, Bytes};
use std::collections::VecDeque;

/// Samples (and μ-law bytes) in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;

#[derive(Debug)]
enum Item {
    Audio(Bytes),
    Mark(String),
}

/// One frame taken from the queue.
#[derive(Debug, PartialEq, Eq)]
pub struct PlayoutFrame {
    pub ulaw: [u8; FRAME_BYTES],
    /// How many bytes came from queued audio (the rest is silence).
    pub audio_bytes: usize,
    /// Marks whose preceding audio is complete once this frame is sent.
    pub marks: Vec<String>,
}

/// Audio and marks waiting to be played.
#[derive(Debug, Default)]
pub struct PlayoutQueue {
    items: VecDeque<Item>,
    queued_bytes: usize,
}

impl PlayoutQueue {
    pub fn new() -> PlayoutQueue {
        PlayoutQueue::default()
    }

    /// Queues μ-law audio of any length.
    pub fn push_audio(&mut self, ulaw: Bytes) {
        if ulaw.is_empty() {
            return;
        }
        self.queued_bytes += ulaw.len();
        self.items.push_back(Item::Audio(ulaw));
    }

    /// Queues a mark after the audio queued so far.
    pub fn push_mark(&mut self, name: String) {
        self.items.push_back(Item::Mark(name));
    }

    /// Audio bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Drops all queued audio; returns the pending marks, in order.
    pub fn clear(&mut self) -> Vec<String> {
        self.queued_bytes = 0;
        self.items
            .drain(..)
            .filter_map(|i| match i {
                Item::Mark(m) => Some(m),
                Item::Audio(_) => None,
            })
            .collect()
    }

    /// Takes the next 20 ms frame.
    pub fn next_frame(&mut self) -> PlayoutFrame {
        let mut ulaw = [ULAW_SILENCE; FRAME_BYTES];
        let mut filled = 0;
        let mut marks = Vec::new();
        loop {
            match self.items.front_mut() {
                Some(Item::Mark(_)) => {
                    if let Some(Item::Mark(m)) = self.items.pop_front() {
                        marks.push(m);
                    }
                }
                Some(Item::Audio(chunk)) if filled < FRAME_BYTES => {
                    let n = chunk.len().min(FRAME_BYTES - filled);
                    ulaw[filled..filled + n].copy_from_slice(&chunk[..n]);
                    chunk.advance(n);
                    filled += n;
                    self.queued_bytes -= n;
                    if chunk.is_empty() {
                        self.items.pop_front();
                    }
                }
                _ => break,
            }
        }
        PlayoutFrame {
            ulaw,
            audio_bytes: filled,
            marks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_plays_silence() {
        let mut q = PlayoutQueue::new();
        let f = q.next_frame();
        assert_eq!(f.audio_bytes, 0);
        assert!(f.ulaw.iter().all(|&b| b == ULAW_SILENCE));
        assert!(f.marks.is_empty());
    }

    #[test]
    fn chunks_of_any_length_form_one_stream() {
        let mut q = PlayoutQueue::new();
        let data: Vec<u8> = (0..400u32).map(|i| (i % 251) as u8).collect();
        q.push_audio(Bytes::copy_from_slice(&data[..70]));
        q.push_audio(Bytes::copy_from_slice(&data[70..]));
        assert_eq!(q.queued_bytes(), 400);
        let a = q.next_frame();
        let b = q.next_frame();
        let c = q.next_frame();
        assert_eq!(&a.ulaw[..], &data[..160]);
        assert_eq!(&b.ulaw[..], &data[160..320]);
        assert_eq!(c.audio_bytes, 80);
        assert_eq!(&c.ulaw[..80], &data[320..]);
        assert!(c.ulaw[80..].iter().all(|&x| x == ULAW_SILENCE));
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn a_mark_plays_with_the_frame_that_ends_the_audio_before_it() {
        let mut q = PlayoutQueue::new();
        q.push_audio(Bytes::from(vec![1u8; 200]));
        q.push_mark("one".into());
        q.push_audio(Bytes::from(vec![2u8; 120]));
        q.push_mark("two".into());
        q.push_mark("three".into());
        assert!(q.next_frame().marks.is_empty());
        let f = q.next_frame();
        assert_eq!(&f.ulaw[..40], &[1u8; 40][..]);
        assert_eq!(&f.ulaw[40..160], &[2u8; 120][..]);
        // The frame ends exactly with the second chunk, so all three are done.
        assert_eq!(f.marks, ["one", "two", "three"]);
        assert!(q.next_frame().marks.is_empty());
    }

    #[test]
    fn marks_right_after_a_full_frame_are_reported_with_it() {
        let mut q = PlayoutQueue::new();
        q.push_audio(Bytes::from(vec![1u8; 160]));
        q.push_mark("end".into());
        let f = q.next_frame();
        assert_eq!(f.marks, ["end"]);
        let mut q = PlayoutQueue::new();
        q.push_mark("alone".into());
        assert_eq!(q.next_frame().marks, ["alone"]);
    }

    #[test]
    fn clear_drops_audio_and_returns_pending_marks() {
        let mut q = PlayoutQueue::new();
        q.push_audio(Bytes::from(vec![1u8; 1000]));
        q.push_mark("a".into());
        q.push_audio(Bytes::from(vec![1u8; 1000]));
        q.push_mark("b".into());
        assert_eq!(q.clear(), ["a", "b"]);
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.next_frame().audio_bytes, 0);
    }
}
