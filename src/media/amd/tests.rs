//! The detector's unit tests: synthetic calls (sines, noise bursts as
//! syllables, a small PRNG), no files.

use super::Cause::*;
use super::Verdict::*;
use super::*;
use std::f32::consts::{PI, TAU};

/// Test audio from a tiny xorshift PRNG, no files: hiss under everything,
/// word-like bursts of resonant noise, tones, white noise.
struct Synth(u64, Vec<i16>);

fn audio() -> Synth {
    Synth(0x2545_f491_4f6c_dd1d, Vec::new())
}

impl Synth {
    fn rand(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Appends `ms` of `f(self, sample index)`, plus hiss (-64 dBFS).
    fn add(&mut self, ms: u32, mut f: impl FnMut(&mut Self, usize) -> f32) -> &mut Self {
        for i in 0..ms as usize * 8 {
            let v = f(self, i) + 20.0 * self.rand();
            self.1.push(v.clamp(-32768.0, 32767.0) as i16);
        }
        self
    }

    fn quiet(&mut self, ms: u32) -> &mut Self {
        self.add(ms, |_, _| 0.0)
    }

    fn tone(&mut self, hz: f32, ms: u32) -> &mut Self {
        self.add(ms, |_, i| 6000.0 * (TAU * hz / 8000.0 * i as f32).sin())
    }

    fn noise(&mut self, ms: u32, amp: f32) -> &mut Self {
        self.add(ms, |s, _| amp * s.rand())
    }

    /// `ms` of words of about `word` ms, 90–150 ms apart.
    fn words(&mut self, ms: u32, word: u32) -> &mut Self {
        let end = self.1.len() + ms as usize * 8;
        while self.1.len() < end {
            let len = (word as f32 * (1.0 + 0.3 * self.rand())) as u32;
            let c = 1.8 * (TAU * (700.0 + 300.0 * self.rand()) / 8000.0).cos();
            let (mut y1, mut y2) = (0.0, 0.0);
            self.add(len, |s, i| {
                (y2, y1) = (y1, 3000.0 * s.rand() + c * y1 - 0.81 * y2);
                y1 * (PI * i as f32 / (len * 8) as f32).sin()
            });
            let gap = 120.0 + 30.0 * self.rand();
            self.quiet(gap as u32);
        }
        self.1.truncate(end);
        self
    }

    /// Zeroes the 20 ms frame at `ms` (a lost packet).
    fn lose(&mut self, ms: u32) -> &mut Self {
        self.1[ms as usize * 8..][..160].fill(0);
        self
    }
}

const DME: Mode = Mode::DetectMessageEnd;
const DET: Mode = Mode::Detect;

fn detector(mode: Mode) -> Detector {
    Detector::new(AmdConfig {
        mode,
        ..AmdConfig::default()
    })
}

/// Feeds `s` as 20 ms frames: the one verdict (asserting there is only
/// one, and that `finish` repeats it), or the one `finish` gives.
fn run(mode: Mode, s: &Synth) -> Decision {
    let mut det = detector(mode);
    let mut got = None;
    for frame in s.1.chunks(160) {
        if let Some(d) = det.push(frame) {
            assert!(got.is_none(), "a second verdict: {d:?} after {got:?}");
            got = Some(d);
        }
    }
    let d = got.unwrap_or_else(|| det.finish());
    assert_eq!(det.finish(), d);
    d
}

fn assert_at(d: Decision, verdict: Verdict, cause: Cause, ms: [u32; 2]) {
    assert_eq!((d.verdict, d.cause), (verdict, cause), "{d:?}");
    assert!((ms[0]..=ms[1]).contains(&d.at_ms), "not in {ms:?}: {d:?}");
}

#[test]
fn short_hello_then_silence_is_human() {
    let d = run(DME, audio().quiet(300).words(600, 250).quiet(3000));
    assert_at(d, Human, ShortGreeting, [1900, 2200]);
    assert!(d.words >= 1 && d.speech_ms < 700, "{d:?}");
}

#[test]
fn greeting_then_beep_or_silence() {
    let mut s = audio();
    s.quiet(500).words(4000, 500).quiet(600);
    let mut beep = Synth(s.0, s.1.clone());
    let d = run(DME, beep.tone(1000.0, 400).quiet(3000));
    assert_at(d, MachineEndBeep, Beep, [5500, 5560]);
    assert!(d.beep_hz.is_some_and(|hz| hz.abs_diff(1000) <= 25), "{d:?}");
    assert!(d.speech_ms > 3000 && d.words > 3, "{d:?}");
    let d = run(DME, s.quiet(4000));
    assert_at(d, MachineEndSilence, SilenceAfterGreeting, [6300, 6500]);
}

#[test]
fn a_tone_after_speech_is_a_beep_even_at_fax_frequencies() {
    for hz in [1100.0, 2100.0] {
        let d = run(DME, audio().words(3000, 500).quiet(400).tone(hz, 800));
        assert_at(d, MachineEndBeep, Beep, [4200, 4260]);
    }
    let d = run(DET, audio().words(600, 250).quiet(400).tone(1e3, 300));
    assert_at(d, MachineStart, Beep, [1300, 1360]);
    // A tone that sound follows at once is no beep (music, a whistle).
    let mut s = audio();
    s.words(3000, 500).tone(1000.0, 300).noise(200, 8000.0);
    let d = run(DME, s.words(1000, 500).quiet(4000));
    assert_eq!(d.verdict, MachineEndSilence, "{d:?}");
}

#[test]
fn silence_dial_tone_and_steady_noise_are_unknown() {
    let d = run(DME, audio().quiet(8000));
    assert_at(d, Unknown, InitialSilence, [5000; 2]);
    let dial_tone = run(DME, audio().tone(425.0, 8000));
    assert_at(dial_tone, Unknown, InitialSilence, [5000; 2]);
    for amp in [300.0, 3000.0, 20000.0] {
        let d = run(DME, audio().noise(8000, amp));
        assert_at(d, Unknown, InitialSilence, [5000; 2]);
    }
    // Noise from right after a hello is background once it proves steady.
    let d = run(DME, audio().quiet(300).words(600, 250).noise(4000, 1e3));
    assert_at(d, Human, ShortGreeting, [2000, 2200]);
}

#[test]
fn fax_tones() {
    let mut s = audio();
    s.tone(1100.0, 500).quiet(3000).tone(1100.0, 500);
    assert_at(run(DME, &s), Fax, FaxCng, [500, 560]);
    // A lost frame inside the tone doesn't cut it in two.
    assert_at(run(DET, s.lose(240)), Fax, FaxCng, [500, 560]);
    let d = run(DET, audio().quiet(200).tone(2100.0, 3000));
    assert_at(d, Fax, FaxCed, [900, 960]);
    assert!(d.beep_hz.is_some_and(|hz| hz.abs_diff(2100) <= 25), "{d:?}");
}

#[test]
fn detect_mode_gives_machine_start_at_the_speech_threshold() {
    let d = run(DET, audio().quiet(1000).words(6000, 600));
    assert_at(d, MachineStart, LongGreeting, [3400, 3500]);
    let d = run(DET, audio().quiet(1000).words(6000, 150));
    assert_at(d, MachineStart, ManyWords, [1800, 3400]);
}

#[test]
fn lost_frames_do_not_end_a_greeting() {
    let mut s = audio();
    s.quiet(500).words(4000, 500).quiet(4000);
    let clean = run(DME, &s);
    (600..6000).step_by(300).for_each(|ms| _ = s.lose(ms));
    let lossy = run(DME, &s);
    let window = [clean.at_ms, clean.at_ms + 200];
    assert_at(lossy, clean.verdict, clean.cause, window);
    // An RTP gap longer than the end threshold right after speech is no
    // silence: the human verdict waits for silence heard.
    let mut det = detector(DME);
    for frame in audio().quiet(200).words(500, 250).1.chunks(160) {
        assert_eq!(det.push(frame), None);
    }
    (0..75).for_each(|_| assert_eq!(det.push_lost(), None));
    let quiet = audio().quiet(2000).1.clone();
    let d = quiet.chunks(160).find_map(|f| det.push(f));
    assert_at(d.expect("a verdict"), Human, ShortGreeting, [3380, 3420]);
    // Zeros for longer than a lost packet or two are digital silence.
    let mut s = audio();
    s.quiet(200).words(500, 250).1.resize(16_000, 0);
    assert_at(run(DME, &s), Human, ShortGreeting, [1900, 1960]);
}

#[test]
fn one_verdict_only() {
    let mut det = detector(DET);
    let mut s = audio();
    s.quiet(300).words(500, 250).quiet(3000).words(4000, 400);
    let verdicts: Vec<Decision> = s.1.chunks(160).filter_map(|f| det.push(f)).collect();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].verdict, Human);
    assert_eq!((det.push_lost(), det.finish()), (None, verdicts[0]));
}

#[test]
fn timeout_mid_greeting_is_machine_end_other() {
    let mut det = detector(DME);
    det.cfg.timeout_ms = 6_000;
    let s = audio().words(10_000, 500).1.clone();
    let d = s.chunks(160).find_map(|f| det.push(f));
    assert_at(d.expect("a verdict"), MachineEndOther, Timeout, [6000; 2]);
    assert_eq!(MachineEndOther.as_str(), "machine_end_other");
}
