//! The outbound playout queue: μ-law audio and marks, cut into 20 ms frames.
//!
//! Owns: queued audio as one continuous byte stream (chunks of any length),
//! marks placed between chunks, and the rule that a mark is played once all
//! audio queued before it has gone out. Frames are padded with μ-law silence
//! when the queue runs dry. Queued audio is capped at [`MAX_QUEUED_BYTES`]
//! (five minutes): whatever is pushed beyond it is dropped, and the caller
//! is told how much, so that a peer sending audio much faster than real time
//! cannot grow a call's memory without bound.
//!
//! Must not: read the clock or send anything; the RTP session asks for one
//! frame per 20 ms tick.

use super::g711::ULAW_SILENCE;
use bytes::{Buf, Bytes};
use std::collections::VecDeque;

/// Samples (and μ-law bytes) in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// The most audio a queue holds by default: five minutes of 8 kHz μ-law
/// (2,400,000 bytes). Longer than any prompt or bot utterance, short enough
/// that thousands of calls cannot exhaust memory.
pub const MAX_QUEUED_BYTES: usize = 5 * 60 * 8000;

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
#[derive(Debug)]
pub struct PlayoutQueue {
    items: VecDeque<Item>,
    queued_bytes: usize,
    max_bytes: usize,
}

impl Default for PlayoutQueue {
    fn default() -> Self {
        PlayoutQueue::with_limit(MAX_QUEUED_BYTES)
    }
}

impl PlayoutQueue {
    /// A queue holding at most [`MAX_QUEUED_BYTES`] of audio.
    pub fn new() -> PlayoutQueue {
        PlayoutQueue::default()
    }

    /// A queue holding at most `max_bytes` of audio.
    pub fn with_limit(max_bytes: usize) -> PlayoutQueue {
        PlayoutQueue {
            items: VecDeque::new(),
            queued_bytes: 0,
            max_bytes,
        }
    }

    /// Queues μ-law audio of any length, up to the queue's limit; returns
    /// how many bytes did not fit and were dropped (the end of `ulaw`).
    pub fn push_audio(&mut self, mut ulaw: Bytes) -> usize {
        let room = self.max_bytes.saturating_sub(self.queued_bytes);
        let dropped = ulaw.len().saturating_sub(room);
        ulaw.truncate(ulaw.len() - dropped);
        if !ulaw.is_empty() {
            self.queued_bytes += ulaw.len();
            self.items.push_back(Item::Audio(ulaw));
        }
        dropped
    }

    /// Queues a mark after the audio queued so far.
    pub fn push_mark(&mut self, name: String) {
        self.items.push_back(Item::Mark(name));
    }

    /// Audio bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Drops all queued audio. Returns the pending marks, in order, in two
    /// lists: those with no audio left before them (played: all the audio
    /// queued before them has gone out), and those dropped with audio still
    /// before them.
    pub fn clear(&mut self) -> (Vec<String>, Vec<String>) {
        self.queued_bytes = 0;
        let (mut played, mut dropped) = (Vec::new(), Vec::new());
        let mut audio_before = false;
        for item in self.items.drain(..) {
            match item {
                Item::Mark(m) if audio_before => dropped.push(m),
                Item::Mark(m) => played.push(m),
                Item::Audio(_) => audio_before = true,
            }
        }
        (played, dropped)
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
    fn audio_beyond_the_limit_is_dropped_and_counted_marks_are_kept() {
        let mut q = PlayoutQueue::with_limit(400);
        assert_eq!(q.push_audio(Bytes::from(vec![1u8; 300])), 0);
        assert_eq!(q.push_audio(Bytes::from(vec![2u8; 300])), 200);
        q.push_mark("after".into());
        assert_eq!(q.push_audio(Bytes::from(vec![3u8; 10])), 10);
        assert_eq!(q.queued_bytes(), 400);
        q.next_frame();
        let f = q.next_frame();
        assert_eq!(&f.ulaw[..140], &[1u8; 140][..]);
        assert_eq!(&f.ulaw[140..], &[2u8; 20][..]);
        let f = q.next_frame();
        assert_eq!(f.audio_bytes, 80);
        assert_eq!(f.marks, ["after"]);
        // Room again once played.
        assert_eq!(q.push_audio(Bytes::from(vec![4u8; 400])), 0);
        assert_eq!(PlayoutQueue::new().max_bytes, 2_400_000);
    }

    #[test]
    fn clear_drops_audio_and_returns_pending_marks() {
        let mut q = PlayoutQueue::new();
        q.push_audio(Bytes::from(vec![1u8; 1000]));
        q.push_mark("a".into());
        q.push_audio(Bytes::from(vec![1u8; 1000]));
        q.push_mark("b".into());
        assert_eq!(
            q.clear(),
            (Vec::<String>::new(), vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.next_frame().audio_bytes, 0);
    }

    #[test]
    fn marks_with_no_audio_left_before_them_count_as_played_on_clear() {
        let mut q = PlayoutQueue::new();
        q.push_audio(Bytes::from(vec![1u8; 160]));
        q.push_mark("a".into());
        q.push_mark("b".into());
        q.push_audio(Bytes::from(vec![1u8; 1000]));
        q.push_mark("c".into());
        assert_eq!(q.next_frame().marks, ["a", "b"]);
        let mut q2 = PlayoutQueue::new();
        q2.push_mark("first".into());
        q2.push_audio(Bytes::from(vec![1u8; 1000]));
        q2.push_mark("second".into());
        assert_eq!(
            q2.clear(),
            (vec!["first".to_string()], vec!["second".to_string()])
        );
        assert_eq!(q.clear(), (vec![], vec!["c".to_string()]));
    }
}
