//! A callee population: what share of calls is answered, busy, unanswered,
//! invalid or failing, how long they ring and talk, who hangs up, what is
//! played and which keys are pressed — read from TOML, and turned into one
//! [`CallPlan`] per call as a pure function of the seed and the call's
//! arrival index.
//!
//! Must not: touch sockets or clocks. Loading reads the population file and
//! a WAV prompt, nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use toml::Value;

/// The population used when none is given (`scenarios/population/default.toml`).
pub const DEFAULT_POPULATION: &str = include_str!("../../../scenarios/population/default.toml");

/// The longest ring, talk or key-press time accepted (one hour).
const MAX_MS: u64 = 3_600_000;

mod parse;

/// A bad population file: the key and why.
#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("cannot read population file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("population {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("population {origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// A time in milliseconds: fixed, or uniform over `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis {
    pub min: u64,
    pub max: u64,
}

impl Millis {
    pub const ZERO: Millis = Millis { min: 0, max: 0 };

    fn fixed(ms: u64) -> Millis {
        Millis { min: ms, max: ms }
    }

    fn draw(&self, rng: &mut StdRng) -> Duration {
        let ms = if self.max > self.min {
            rng.gen_range(self.min..=self.max)
        } else {
            self.min
        };
        Duration::from_millis(ms)
    }
}

/// What the callee plays once it has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// Nothing (the RTP session sends silence).
    Silence,
    /// One second of a 440 Hz tone.
    Tone,
    /// A WAV file (any rate the media module reads), as μ-law 8 kHz.
    Wav { path: PathBuf, ulaw: Bytes },
}

impl Audio {
    /// The μ-law bytes to queue after the answer; `None` for silence.
    pub fn ulaw(&self) -> Option<Bytes> {
        match self {
            Audio::Silence => None,
            Audio::Tone => Some(tone_440hz_1s()),
            Audio::Wav { ulaw, .. } => Some(ulaw.clone()),
        }
    }
}

/// A key-press choice: `share` of answered calls press `digits` at `at_ms`
/// after the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DtmfChoice {
    pub digits: String,
    pub share: f64,
    pub at_ms: Millis,
}

/// The shares of each outcome (weights, normalised).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub answer: f64,
    pub busy: f64,
    pub no_answer: f64,
    pub invalid_number: f64,
    pub temporary_failure: f64,
}

/// A whole population.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub name: String,
    pub shares: Shares,
    /// Ringing before the answer.
    pub ring_ms: Millis,
    /// Ringing before a busy, invalid-number or temporary-failure response.
    pub reject_ms: Millis,
    /// From the answer to the callee's BYE (when the callee hangs up).
    pub talk_ms: Millis,
    /// Share of answered calls that the callee ends; the rest wait for the caller.
    pub callee_hangs_up: f64,
    /// `Retry-After` on 503s.
    pub retry_after_s: Option<u64>,
    /// Whether answered calls get an RTP session (else a sink).
    pub media: bool,
    pub audio: Audio,
    pub dtmf: Vec<DtmfChoice>,
    /// How the population's phones take SMS (`[sms]`).
    pub sms: SmsShares,
}

/// What happens to an SMS sent to the population: shares of delivered,
/// failed and never-reported messages, and the delay before the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmsShares {
    pub delivered: f64,
    pub failed: f64,
    pub no_receipt: f64,
    pub receipt_ms: Millis,
}

impl Default for SmsShares {
    fn default() -> Self {
        SmsShares {
            delivered: 1.0,
            failed: 0.0,
            no_receipt: 0.0,
            receipt_ms: Millis::ZERO,
        }
    }
}

/// The fate of one SMS in the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsPlan {
    Delivered(Duration),
    Failed(Duration),
    NoReceipt,
}

impl SmsShares {
    /// The fate of the SMS numbered `index` (deterministic for a seed).
    pub fn plan(&self, seed: u64, index: u64) -> SmsPlan {
        let mut rng = StdRng::seed_from_u64(mix(seed ^ 0x5345_4e44, index));
        let total = self.delivered + self.failed + self.no_receipt;
        let x: f64 = rng.gen::<f64>() * total;
        let delay = self.receipt_ms.draw(&mut rng);
        if x < self.delivered {
            SmsPlan::Delivered(delay)
        } else if x < self.delivered + self.failed {
            SmsPlan::Failed(delay)
        } else {
            SmsPlan::NoReceipt
        }
    }
}

/// What one call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPlan {
    Answer {
        ring: Duration,
        /// `Some(t)`: the callee hangs up `t` after the answer.
        hangup_after: Option<Duration>,
        /// Keys pressed, and when (after the answer).
        dtmf: Option<(String, Duration)>,
    },
    /// 486 Busy Here (Q.850 cause 17).
    Busy { ring: Duration },
    /// 180 until CANCEL, then 487.
    NoAnswer,
    /// 404 Not Found (Q.850 cause 1).
    InvalidNumber { ring: Duration },
    /// 503 Service Unavailable, with `Retry-After` when set.
    TemporaryFailure {
        ring: Duration,
        retry_after: Option<Duration>,
    },
}

impl CallPlan {
    /// A stable name for counting: answer, busy, no_answer, invalid_number, temporary_failure.
    pub fn kind(&self) -> &'static str {
        match self {
            CallPlan::Answer { .. } => "answer",
            CallPlan::Busy { .. } => "busy",
            CallPlan::NoAnswer => "no_answer",
            CallPlan::InvalidNumber { .. } => "invalid_number",
            CallPlan::TemporaryFailure { .. } => "temporary_failure",
        }
    }
}

impl Population {
    /// The embedded default population.
    pub fn default_population() -> Population {
        Population::parse(DEFAULT_POPULATION, "(embedded default)", None)
            .expect("the embedded default population is valid")
    }

    /// Reads a population file; a WAV path in it is relative to the file.
    pub fn load(path: &Path) -> Result<Population, PopulationError> {
        let text = std::fs::read_to_string(path).map_err(|source| PopulationError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Population::parse(&text, &path.display().to_string(), path.parent())
    }

    /// The plan of the call that arrived `index`-th (from 0) under `seed`:
    /// the same seed and index always give the same plan.
    pub fn plan(&self, seed: u64, index: u64) -> CallPlan {
        let mut rng = StdRng::seed_from_u64(mix(seed, index));
        let s = &self.shares;
        let total = s.answer + s.busy + s.no_answer + s.invalid_number + s.temporary_failure;
        let mut x = rng.gen::<f64>() * total;
        let mut pick = |w: f64| {
            let hit = x < w;
            x -= w;
            hit
        };
        // Every draw below is made whatever the outcome, so adding a key to
        // one outcome does not reshuffle the others.
        let ring = self.ring_ms.draw(&mut rng);
        let reject = self.reject_ms.draw(&mut rng);
        let talk = self.talk_ms.draw(&mut rng);
        let callee_ends = rng.gen::<f64>() < self.callee_hangs_up;
        let mut y = rng.gen::<f64>();
        let mut dtmf = None;
        for d in &self.dtmf {
            let at = d.at_ms.draw(&mut rng);
            if dtmf.is_none() && y < d.share {
                dtmf = Some((d.digits.clone(), at));
            }
            y -= d.share;
        }
        if pick(s.answer) {
            CallPlan::Answer {
                ring,
                hangup_after: callee_ends.then_some(talk),
                dtmf,
            }
        } else if pick(s.busy) {
            CallPlan::Busy { ring: reject }
        } else if pick(s.no_answer) {
            CallPlan::NoAnswer
        } else if pick(s.invalid_number) {
            CallPlan::InvalidNumber { ring: reject }
        } else if s.temporary_failure > 0.0 {
            CallPlan::TemporaryFailure {
                ring: reject,
                retry_after: self.retry_after_s.map(Duration::from_secs),
            }
        } else {
            // Rounding left x just past the last non-zero share.
            CallPlan::Answer {
                ring,
                hangup_after: callee_ends.then_some(talk),
                dtmf,
            }
        }
    }
}

/// SplitMix64 over seed and index: neighbouring indexes get unrelated streams.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One second of a 440 Hz tone at half scale, μ-law 8 kHz.
fn tone_440hz_1s() -> Bytes {
    let samples: Vec<i16> = (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (16000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    let mut out = Vec::with_capacity(samples.len());
    crate::media::g711::encode_ulaw(&samples, &mut out);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Population, PopulationError> {
        Population::parse(text, "test.toml", None)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_populations_load() {
        let d = Population::default_population();
        assert!(d.shares.answer > 0.5);
        for f in ["default.toml", "benchmark.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/population")
                .join(f);
            Population::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_plan() {
        let p = Population::default_population();
        for i in 0..200 {
            assert_eq!(p.plan(7, i), p.plan(7, i));
        }
        let a: Vec<_> = (0..50).map(|i| p.plan(7, i)).collect();
        let b: Vec<_> = (0..50).map(|i| p.plan(8, i)).collect();
        assert_ne!(a, b, "another seed gives another sequence");
    }

    #[test]
    fn shares_hold_over_many_calls() {
        let p = parse(
            "ring_ms = { min = 100, max = 200 }\n\
             [outcomes]\nanswer = 5\nbusy = 2\nno_answer = 1\ninvalid_number = 1\ntemporary_failure = 1\n\
             [[dtmf]]\ndigits = \"1\"\nshare = 0.7\nat_ms = 3000\n\
             [[dtmf]]\ndigits = \"2\"\nshare = 0.2\nat_ms = 3000\n",
        )
        .unwrap();
        let n = 20_000;
        let mut counts = std::collections::HashMap::new();
        let mut ones = 0;
        let mut answered = 0;
        for i in 0..n {
            let plan = p.plan(1, i);
            *counts.entry(plan.kind()).or_insert(0) += 1;
            if let CallPlan::Answer { ring, dtmf, .. } = plan {
                assert!((100..=200).contains(&(ring.as_millis() as u64)));
                answered += 1;
                if dtmf.map(|d| d.0) == Some("1".into()) {
                    ones += 1;
                }
            }
        }
        let near = |k: &str, share: f64| {
            let got = counts[k] as f64 / n as f64;
            assert!((got - share).abs() < 0.015, "{k}: {got} vs {share}");
        };
        near("answer", 0.5);
        near("busy", 0.2);
        near("no_answer", 0.1);
        near("invalid_number", 0.1);
        near("temporary_failure", 0.1);
        let got = ones as f64 / answered as f64;
        assert!((got - 0.7).abs() < 0.02, "{got}");
    }

    #[test]
    fn errors_name_the_key_and_why() {
        assert!(err("").contains("`outcomes`: is required"), "{}", err(""));
        let e = err("[outcomes]\nanswer = -1\n");
        assert!(
            e.contains("`outcomes.answer`") && e.contains("negative"),
            "{e}"
        );
        let e = err("[outcomes]\nanswr = 1\n");
        assert!(
            e.contains("`outcomes.answr`") && e.contains("unknown key"),
            "{e}"
        );
        let e = err("[outcomes]\nanswer = 0\n");
        assert!(e.contains("`outcomes`") && e.contains("above 0"), "{e}");
        let e = err("ring_ms = { min = 5, max = 1 }\n[outcomes]\nanswer = 1\n");
        assert!(e.contains("`ring_ms`") && e.contains("above max"), "{e}");
        let e = err("talk_ms = \"long\"\n[outcomes]\nanswer = 1\n");
        assert!(e.contains("`talk_ms`") && e.contains("milliseconds"), "{e}");
        let e = err("[outcomes]\nanswer = 1\n[[dtmf]]\ndigits = \"x\"\nshare = 0.5\nat_ms = 1\n");
        assert!(e.contains("`dtmf[0].digits`"), "{e}");
        let e = err(
            "[outcomes]\nanswer = 1\n[[dtmf]]\ndigits = \"1\"\nshare = 0.7\nat_ms = 1\n\
             [[dtmf]]\ndigits = \"2\"\nshare = 0.7\nat_ms = 1\n",
        );
        assert!(e.contains("`dtmf`") && e.contains("more than 1"), "{e}");
        let e = err("audio = \"missing.wav\"\n[outcomes]\nanswer = 1\n");
        assert!(e.contains("`audio`") && e.contains("missing.wav"), "{e}");
        let e = err("media = \"none\"\naudio = \"tone\"\n[outcomes]\nanswer = 1\n");
        assert!(e.contains("`audio`"), "{e}");
        let e = err("callee_hangs_up = 2\n[outcomes]\nanswer = 1\n");
        assert!(e.contains("`callee_hangs_up`"), "{e}");
        let e = err("[outcomes\n");
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn the_tone_is_one_second_of_mu_law() {
        let t = Audio::Tone.ulaw().unwrap();
        assert_eq!(t.len(), 8000);
        assert!(t.iter().any(|&b| b != 0xFF));
    }
}
