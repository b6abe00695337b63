//! Answering-machine detection (AMD): who answered a call, from the audio
//! heard after the answer. Verdicts and thresholds follow Twilio's
//! `MachineDetection`.
//!
//! Owns: a per-call state machine fed 20 ms frames of 8 kHz linear PCM that
//! answers once (human, machine at its greeting's start or end, fax, unknown)
//! with the cause and the evidence.
//!
//! Must not: allocate, do I/O or read a clock (time is the audio fed).
//!
//! Per frame, the level against a minimum-statistics noise floor says voice
//! or silence, and a 2nd-order linear predictor plus one Goertzel filter say
//! whether it is one pure tone, at what frequency. Voice makes words and an
//! utterance; steady tones make beeps and fax tones. Accuracy effects quoted
//! below are on the tuning half of the `scenarios/tools/amd_corpus.py` corpus
//! (`benches/amd_accuracy.rs`), or on it with white noise at -40 dBFS added;
//! durations and counts are over the whole corpus.

const SAMPLES_PER_MS: usize = 8;
const FRAME_MS: u32 = 20;
/// All-zero frames are lost packets (zero-filled) unless more than this many
/// come in a row (digital silence). As silence they cut 3% of fax tones and
/// 1% of beeps short.
const LOST_RUN_FRAMES: u32 = 2;
/// The noise floor: the quietest frame of the last `FLOOR_BLOCKS` blocks of
/// `FLOOR_BLOCK_FRAMES` (1 s; 0.6 s or 2 s changed nothing), `FLOOR_PRIOR_DB`
/// before that.
const FLOOR_BLOCKS: usize = 5;
const FLOOR_BLOCK_FRAMES: u32 = 10;
const FLOOR_PRIOR_DB: f32 = -55.0;
/// Sound as steady as noise (`STEADY_FRAMES` frames within `STEADY_RANGE_DB`)
/// is background: the floor rises to it at once, and what was taken for voice
/// in it is dropped. The corpus's speech held 4 dB for 18 frames at most.
const STEADY_FRAMES: u32 = 25;
const STEADY_RANGE_DB: f32 = 4.0;
/// Voice: `VOICE_MARGIN_DB` over the floor starts a word, `VOICE_HOLD_DB`
/// keeps it going. 8/4 rather than 10/5: in -40 dBFS noise, beeps 71% → 82%
/// and humans 93–98% → 97–100% right; no change on the corpus itself.
const VOICE_MARGIN_DB: f32 = 8.0;
const VOICE_HOLD_DB: f32 = 4.0;
const VOICE_MIN_DB: f32 = -55.0;
/// A word is `WORD_MIN_MS` of voice; a `WORD_GAP_MS` gap ends it. Voice that
/// makes no word is a click, forgotten.
const WORD_MIN_MS: u32 = 100;
const WORD_GAP_MS: u32 = 80;
/// app_amd's many-words rule at a human-safe count: live answers had at most
/// 5 words; 5 called 1 human a machine, 6 none (and 7 greetings early).
const MANY_WORDS: u32 = 6;
/// A tone frame: the predictor leaves at most `TONE_MAX_RESIDUAL` of the
/// energy, and a Goertzel filter at its frequency holds `TONE_MIN_SHARE`
/// (`TONE_EDGE_SHARE` at the edges of a tone already heard). 0.1, not 0.02:
/// in -40 dBFS noise fax 48% → 100%, beeps 42% → 82%; no change on the corpus
/// itself. A Goertzel grid every 25 Hz over 400–2,100 Hz took ~25 µs a frame
/// here; this, ~0.1 µs.
const TONE_MAX_RESIDUAL: f64 = 0.1;
const TONE_MIN_SHARE: f64 = 0.7;
const TONE_EDGE_SHARE: f64 = 0.25;
const TONE_MIN_DB: f32 = -45.0;
/// A tone keeps within a bin (±25 Hz) of its mean frequency and within
/// `TONE_LEVEL_RANGE_DB`; a voice's harmonic drifts and fades.
const TONE_TOLERANCE_HZ: f32 = 25.0;
const TONE_LEVEL_RANGE_DB: f32 = 6.0;
/// A beep: a tone after speech, of `BEEP_MIN_MS` or more, not followed by
/// voice. Synthetic voices hold one harmonic up to 100 ms (such "beeps" were
/// found in greetings up to 100 ms, none from 120 ms); beeps last 200 ms+.
const BEEP_MIN_MS: u32 = 160;
const BEEP_HZ: (f32, f32) = (350.0, 2_200.0);
/// Fax, a tone with no speech before: CNG (1,100 Hz, 0.5 s on) when it stops,
/// CED (2,100 Hz, 2.6 s or more) after `CED_MS`.
const CNG_HZ: f32 = 1_100.0;
const CNG_MS: (u32, u32) = (350, 800);
const CED_HZ: f32 = 2_100.0;
const CED_MS: u32 = 700;
const FAX_TOLERANCE_HZ: f32 = 50.0;
/// A machine's greeting ends after `speech_end_threshold_ms` plus this much
/// silence, as its beep may still come: last voice to beep took up to 1.47 s
/// (greetings paused 0.72 s at most); without it 4% of beeps were missed.
const BEEP_WAIT_MS: u32 = 800;

/// When a machine's verdict is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As soon as a machine is recognised (`MachineStart`).
    Detect,
    /// At the end of the machine's greeting (beep, silence or timeout).
    DetectMessageEnd,
}

/// Thresholds, as Twilio's `MachineDetection*` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdConfig {
    pub mode: Mode,
    /// Give up: `Unknown`, or `MachineEndOther` during a machine's greeting.
    pub timeout_ms: u32,
    /// Speech longer than this is a machine.
    pub speech_threshold_ms: u32,
    /// Silence after speech this long ends the utterance.
    pub speech_end_threshold_ms: u32,
    /// No speech at all for this long: `Unknown`.
    pub silence_timeout_ms: u32,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            mode: Mode::Detect,
            timeout_ms: 30_000,
            speech_threshold_ms: 2_400,
            speech_end_threshold_ms: 1_200,
            silence_timeout_ms: 5_000,
        }
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Human => "human",
            Verdict::MachineStart => "machine_start",
            Verdict::MachineEndBeep => "machine_end_beep",
            Verdict::MachineEndSilence => "machine_end_silence",
            Verdict::MachineEndOther => "machine_end_other",
            Verdict::Fax => "fax",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Why the verdict was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A short utterance, then `speech_end_threshold_ms` of silence.
    ShortGreeting,
    /// Speech longer than `speech_threshold_ms`.
    LongGreeting,
    /// `MANY_WORDS` words in one utterance.
    ManyWords,
    /// No speech for `silence_timeout_ms`.
    InitialSilence,
    /// A tone after speech.
    Beep,
    /// Silence after a machine's greeting.
    SilenceAfterGreeting,
    /// `timeout_ms` reached.
    Timeout,
    /// A calling fax's 1,100 Hz tone.
    FaxCng,
    /// An answering fax's 2,100 Hz tone.
    FaxCed,
    /// The audio ended first (`finish`).
    EndOfAudio,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ShortGreeting => "short_greeting",
            Cause::LongGreeting => "long_greeting",
            Cause::ManyWords => "many_words",
            Cause::InitialSilence => "initial_silence",
            Cause::Beep => "beep",
            Cause::SilenceAfterGreeting => "silence_after_greeting",
            Cause::Timeout => "timeout",
            Cause::FaxCng => "fax_cng",
            Cause::FaxCed => "fax_ced",
            Cause::EndOfAudio => "end_of_audio",
        }
    }
}

/// A verdict, when it was reached (ms of audio fed) and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub at_ms: u32,
    pub cause: Cause,
    /// The utterance's length, first to last voice frame.
    pub speech_ms: u32,
    /// Words in the utterance.
    pub words: u32,
    /// The tone's frequency (a beep's, or a fax tone's).
    pub beep_hz: Option<u32>,
}

/// A frame's level (dBFS) and, when it is (partly) one pure tone, the tone's
/// frequency (Hz) and share of the frame's energy; `None` if all zero.
fn measure(x: &[i16]) -> Option<(f32, Option<(f32, f64)>)> {
    let energy: i64 = x.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    if energy == 0 {
        return None;
    }
    let n = x.len() as f64;
    let db = (10.0 * (energy as f64 / (n * 32768.0 * 32768.0)).log10()) as f32;
    if db < TONE_MIN_DB || x.len() < 40 {
        return Some((db, None));
    }
    // A sine obeys x[n-2] + x[n] = c x[n-1] with c = 2 cos(w): fit c by least
    // squares; the residual is what is not that one tone.
    let (mut sbb, mut sby, mut syy) = (0i64, 0i64, 0i64);
    for w in x.windows(3) {
        let (b, y) = (i64::from(w[1]), i64::from(w[0]) + i64::from(w[2]));
        sbb += b * b;
        sby += b * y;
        syy += y * y;
    }
    let c = sby as f64 / sbb.max(1) as f64;
    if c.abs() >= 2.0 || (syy as f64 - c * sby as f64) > TONE_MAX_RESIDUAL * sbb as f64 {
        return Some((db, None));
    }
    // Goertzel at that frequency (its coefficient is c): the tone's share.
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &s in x {
        (s1, s2) = (f64::from(s) + c * s1 - s2, s1);
    }
    let share = 2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * energy as f64);
    let hz = (c / 2.0).acos() * 8_000.0 / std::f64::consts::TAU;
    Some((db, Some((hz as f32, share))))
}

/// Within a fax tone's tolerance of `fax` Hz.
fn near(hz: f32, fax: f32) -> bool {
    (hz - fax).abs() <= FAX_TOLERANCE_HZ
}

/// One frame as the detector hears it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sound {
    Lost,
    Silence,
    Voice(f32),
    Tone { hz: f32, db: f32, edge: bool },
}

/// A run of tone frames at one frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ToneRun {
    start_ms: u32,
    end_ms: u32,
    hz_sum: f32,
    frames: u32,
    db_min: f32,
    db_max: f32,
}

impl ToneRun {
    fn hz(&self) -> f32 {
        self.hz_sum / self.frames.max(1) as f32
    }

    fn ms(&self) -> u32 {
        self.end_ms - self.start_ms
    }

    /// Long enough, at a steady level.
    fn steady(&self) -> bool {
        self.ms() >= BEEP_MIN_MS && self.db_max - self.db_min <= TONE_LEVEL_RANGE_DB
    }
}

/// The noise floor: block minima, and the current run of steady frames.
#[derive(Debug, Clone, Copy)]
struct Floor {
    blocks: [f32; FLOOR_BLOCKS],
    block_min: f32,
    block_frames: u32,
    block_idx: usize,
    /// Lowest and highest level, length and start (ms) of the steady run.
    steady: (f32, f32, u32, u32),
}

impl Floor {
    fn level(&self) -> f32 {
        self.blocks.iter().fold(self.block_min, |a, &b| a.min(b))
    }

    /// Takes a frame's level; when steady sound raised the floor, the time
    /// that sound began.
    fn update(&mut self, db: f32, now_ms: u32) -> Option<u32> {
        let (lo, hi, n, since) = self.steady;
        self.steady = if n > 0 && db.max(hi) - db.min(lo) <= STEADY_RANGE_DB {
            (db.min(lo), db.max(hi), n + 1, since)
        } else {
            (db, db, 1, now_ms)
        };
        let (lo, _, n, since) = self.steady;
        let raised = n >= STEADY_FRAMES && lo > self.level();
        if raised {
            self.blocks = [lo; FLOOR_BLOCKS];
            self.block_min = lo;
        }
        self.block_min = self.block_min.min(db);
        self.block_frames += 1;
        if self.block_frames == FLOOR_BLOCK_FRAMES {
            self.blocks[self.block_idx] = self.block_min;
            self.block_idx = (self.block_idx + 1) % FLOOR_BLOCKS;
            (self.block_min, self.block_frames) = (f32::INFINITY, 0);
        }
        raised.then_some(since)
    }
}

/// The utterance, from its first voice frame (none: the default).
#[derive(Debug, Clone, Copy, Default)]
struct Utterance {
    on: bool,
    start_ms: u32,
    end_ms: u32,
    peak_db: f32,
    words: u32,
    burst_ms: u32,
    gap_ms: u32,
    silence_ms: u32,
    machine: bool,
}

/// The answering-machine detector of one call.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: AmdConfig,
    now_ms: u32,
    decision: Option<Decision>,
    zero_run: u32,
    floor: Floor,
    utt: Utterance,
    /// The tone being heard; one that ended on a voice frame (a beep only if
    /// what follows is not voice too).
    tone: Option<ToneRun>,
    ended: Option<ToneRun>,
}

impl Detector {
    pub fn new(cfg: AmdConfig) -> Self {
        let floor = Floor {
            blocks: [FLOOR_PRIOR_DB; FLOOR_BLOCKS],
            block_min: f32::INFINITY,
            block_frames: 0,
            block_idx: 0,
            steady: (0.0, 0.0, 0, 0),
        };
        Detector {
            cfg,
            now_ms: 0,
            decision: None,
            zero_run: 0,
            floor,
            utt: Utterance::default(),
            tone: None,
            ended: None,
        }
    }

    /// Feeds one 20 ms frame (160 samples; shorter frames allowed at the
    /// end). Returns `Some` once, the first time a verdict is reached (in
    /// `DetectMessageEnd` mode a machine's comes at its greeting's end).
    pub fn push(&mut self, frame: &[i16]) -> Option<Decision> {
        if self.decision.is_some() || frame.is_empty() {
            return None;
        }
        let ms = u32::try_from(frame.len() / SAMPLES_PER_MS).unwrap_or(u32::MAX);
        let Some((db, tone)) = measure(frame) else {
            self.zero_run += 1;
            let lost = self.zero_run <= LOST_RUN_FRAMES;
            return self.step(if lost { Sound::Lost } else { Sound::Silence }, ms);
        };
        self.zero_run = 0;
        if let Some((hz, share)) = tone.filter(|_| db >= self.floor.level() + VOICE_MARGIN_DB) {
            let same = self
                .tone
                .is_some_and(|t| (hz - t.hz()).abs() <= TONE_TOLERANCE_HZ);
            if share >= TONE_MIN_SHARE || (same && share >= TONE_EDGE_SHARE) {
                let edge = share < TONE_MIN_SHARE;
                return self.step(Sound::Tone { hz, db, edge }, ms);
            }
        }
        if let Some(since) = self.floor.update(db, self.now_ms) {
            self.background_since(since);
        }
        let hold = self.utt.on && self.utt.burst_ms > 0;
        let margin = if hold { VOICE_HOLD_DB } else { VOICE_MARGIN_DB };
        let v = db >= self.floor.level() + margin && db >= VOICE_MIN_DB;
        self.step(if v { Sound::Voice(db) } else { Sound::Silence }, ms)
    }

    /// A lost frame (RTP gap): counts as time, not as silence evidence that
    /// ends a greeting on its own.
    pub fn push_lost(&mut self) -> Option<Decision> {
        if self.decision.is_some() {
            return None;
        }
        self.step(Sound::Lost, FRAME_MS)
    }

    /// End of audio: the verdict given, or the one due now (a tone heard to
    /// its end, a machine's greeting cut short, a short utterance, nothing).
    pub fn finish(&mut self) -> Decision {
        if let Some(d) = self.decision {
            return d;
        }
        let run = self.tone.take().or(self.ended.take());
        if let Some(d) = run.and_then(|r| self.tone_heard(r)) {
            return d;
        }
        let verdict = match (self.speech(), self.utt.machine) {
            (true, true) => self.machine_verdict(Verdict::MachineEndOther),
            (true, false) => Verdict::Human,
            (false, _) => Verdict::Unknown,
        };
        self.decide(verdict, Cause::EndOfAudio, None)
    }

    /// Audio fed so far.
    pub fn elapsed_ms(&self) -> u32 {
        self.now_ms
    }

    /// An utterance with a word in it.
    fn speech(&self) -> bool {
        self.utt.on && self.utt.words > 0
    }

    fn speech_ms(&self) -> u32 {
        self.utt.end_ms - self.utt.start_ms
    }

    fn decide(&mut self, verdict: Verdict, cause: Cause, hz: Option<f32>) -> Decision {
        let d = Decision {
            verdict,
            at_ms: self.now_ms,
            cause,
            speech_ms: self.speech_ms(),
            words: self.utt.words,
            beep_hz: hz.map(|hz| hz.round() as u32),
        };
        self.decision = Some(d);
        d
    }

    /// `end` in `DetectMessageEnd` mode, `MachineStart` in `Detect` mode.
    fn machine_verdict(&self, end: Verdict) -> Verdict {
        match self.cfg.mode {
            Mode::Detect => Verdict::MachineStart,
            Mode::DetectMessageEnd => end,
        }
    }

    /// Steady sound began at `since`: what was taken for voice after that was
    /// background. (Without this, -40 dBFS noise starting 2 s in made 72% of
    /// the long hellos machines.)
    fn background_since(&mut self, since: u32) {
        let u = &mut self.utt;
        if u.on && u.end_ms > since {
            u.end_ms = since.max(u.start_ms);
            u.silence_ms = self.now_ms - u.end_ms;
            (u.gap_ms, u.burst_ms) = (u.silence_ms, 0);
            u.machine &= u.end_ms - u.start_ms > self.cfg.speech_threshold_ms;
        }
    }

    fn step(&mut self, sound: Sound, ms: u32) -> Option<Decision> {
        let start = self.now_ms;
        self.now_ms = self.now_ms.saturating_add(ms);
        if sound == Sound::Lost {
            return self.check();
        }
        let same = match (sound, self.tone) {
            (Sound::Tone { hz, .. }, Some(run)) => (hz - run.hz()).abs() <= TONE_TOLERANCE_HZ,
            _ => false,
        };
        if !same {
            // A tone ended (now, or on the voice frame before this one).
            let (ended, run) = (self.ended.take(), self.tone.take());
            if matches!(sound, Sound::Voice(_)) {
                self.ended = run;
            } else if let Some(d) = run.or(ended).and_then(|r| self.tone_heard(r)) {
                return Some(d);
            }
        }
        match sound {
            Sound::Tone { hz, db, edge } => {
                let run = self.tone.get_or_insert(ToneRun {
                    start_ms: start,
                    end_ms: start,
                    hz_sum: 0.0,
                    frames: 0,
                    db_min: f32::INFINITY,
                    db_max: f32::NEG_INFINITY,
                });
                run.end_ms = self.now_ms;
                if !edge {
                    (run.hz_sum, run.frames) = (run.hz_sum + hz, run.frames + 1);
                    (run.db_min, run.db_max) = (run.db_min.min(db), run.db_max.max(db));
                }
            }
            Sound::Voice(db) => {
                let u = &mut self.utt;
                if !u.on {
                    (u.on, u.start_ms, u.peak_db) = (true, start, db);
                }
                u.peak_db = u.peak_db.max(db);
                u.end_ms = self.now_ms;
                u.words += u32::from(u.burst_ms < WORD_MIN_MS && u.burst_ms + ms >= WORD_MIN_MS);
                (u.burst_ms, u.gap_ms, u.silence_ms) = (u.burst_ms + ms, 0, 0);
            }
            _ => {
                let floor = self.floor.level();
                let u = &mut self.utt;
                (u.gap_ms, u.silence_ms) = (u.gap_ms + ms, u.silence_ms + ms);
                if u.gap_ms >= WORD_GAP_MS {
                    u.burst_ms = 0;
                }
                // A click (voice but no word), or steady noise: the floor
                // caught up with an "utterance" that never stood out of it
                // (without this, 36% of noise: human).
                let click = u.words == 0 && u.gap_ms >= WORD_GAP_MS;
                if u.on && (click || (!u.machine && u.peak_db < floor + VOICE_MARGIN_DB)) {
                    *u = Utterance::default();
                }
            }
        }
        self.check()
    }

    /// A tone was heard and ended (or the audio did): a beep, a fax's CNG,
    /// or nothing (too short, unsteady, or a lone tone no fax makes).
    fn tone_heard(&mut self, run: ToneRun) -> Option<Decision> {
        let (ms, hz) = (run.ms(), run.hz());
        if !run.steady() {
            None
        } else if self.speech() {
            let v = self.machine_verdict(Verdict::MachineEndBeep);
            (BEEP_HZ.0..=BEEP_HZ.1)
                .contains(&hz)
                .then(|| self.decide(v, Cause::Beep, Some(hz)))
        } else {
            (near(hz, CNG_HZ) && (CNG_MS.0..=CNG_MS.1).contains(&ms))
                .then(|| self.decide(Verdict::Fax, Cause::FaxCng, Some(hz)))
        }
    }

    /// The verdict due after the frame just fed, if any.
    fn check(&mut self) -> Option<Decision> {
        let cfg = self.cfg;
        let speech = self.speech();
        if self.now_ms >= cfg.timeout_ms {
            let machine = speech && self.utt.machine;
            let v = if machine {
                Verdict::MachineEndOther
            } else {
                Verdict::Unknown
            };
            return Some(self.decide(v, Cause::Timeout, None));
        }
        // A tone that may be a fax's (none after speech) holds the silence
        // timeout; other tones (a dial tone) don't.
        let fax = self
            .tone
            .filter(|t| !speech && (near(t.hz(), CNG_HZ) || near(t.hz(), CED_HZ)));
        if let Some(t) = fax.filter(|t| near(t.hz(), CED_HZ) && t.ms() >= CED_MS && t.steady()) {
            return Some(self.decide(Verdict::Fax, Cause::FaxCed, Some(t.hz())));
        }
        if speech && !self.utt.machine {
            let cause = if self.speech_ms() > cfg.speech_threshold_ms {
                Some(Cause::LongGreeting)
            } else {
                (self.utt.words >= MANY_WORDS).then_some(Cause::ManyWords)
            };
            if let Some(cause) = cause {
                self.utt.machine = true;
                if cfg.mode == Mode::Detect {
                    return Some(self.decide(Verdict::MachineStart, cause, None));
                }
            }
        }
        let (silence, end) = (self.utt.silence_ms, cfg.speech_end_threshold_ms);
        if speech && !self.utt.machine && silence >= end {
            return Some(self.decide(Verdict::Human, Cause::ShortGreeting, None));
        }
        if speech && self.utt.machine && silence >= end.saturating_add(BEEP_WAIT_MS) {
            let cause = Cause::SilenceAfterGreeting;
            return Some(self.decide(Verdict::MachineEndSilence, cause, None));
        }
        if !self.utt.on && fax.is_none() && self.now_ms >= cfg.silence_timeout_ms {
            return Some(self.decide(Verdict::Unknown, Cause::InitialSilence, None));
        }
        None
    }
}

#[cfg(test)]
mod tests;
