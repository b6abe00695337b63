//! Reading a population from TOML: every key checked (unknown keys, types,
//! ranges, shares that add up), every error naming the key and the file.

use std::path::Path;

use super::*;

impl Population {
    /// Parses population TOML; `origin` names it in errors, `dir` is where
    /// relative WAV paths start (else the working directory).
    pub fn parse(
        text: &str,
        origin: &str,
        dir: Option<&Path>,
    ) -> Result<Population, PopulationError> {
        let root: Value = text
            .parse()
            .map_err(|e: toml::de::Error| PopulationError::Syntax {
                origin: origin.to_string(),
                message: e.message().to_string(),
            })?;
        let p = Parser { origin };
        let top = p.table(&root, "")?;
        p.known(
            top,
            "",
            &[
                "name",
                "outcomes",
                "ring_ms",
                "reject_ms",
                "talk_ms",
                "callee_hangs_up",
                "retry_after_s",
                "media",
                "audio",
                "dtmf",
                "sms",
            ],
        )?;
        let name = match top.get("name") {
            Some(v) => p.string(v, "name")?.to_string(),
            None => "unnamed".into(),
        };
        let outcomes = p.table(p.required(top, "outcomes")?, "outcomes")?;
        p.known(
            outcomes,
            "outcomes",
            &[
                "answer",
                "busy",
                "no_answer",
                "invalid_number",
                "temporary_failure",
            ],
        )?;
        let share = |k: &str| -> Result<f64, PopulationError> {
            let key = format!("outcomes.{k}");
            match outcomes.get(k) {
                Some(v) => p.share(v, &key, None),
                None => Ok(0.0),
            }
        };
        let shares = Shares {
            answer: share("answer")?,
            busy: share("busy")?,
            no_answer: share("no_answer")?,
            invalid_number: share("invalid_number")?,
            temporary_failure: share("temporary_failure")?,
        };
        let total = shares.answer
            + shares.busy
            + shares.no_answer
            + shares.invalid_number
            + shares.temporary_failure;
        if total <= 0.0 {
            return Err(p.err(
                "outcomes",
                "at least one of answer, busy, no_answer, invalid_number, temporary_failure must be above 0",
            ));
        }
        let millis = |k: &str, default: Millis| -> Result<Millis, PopulationError> {
            match top.get(k) {
                Some(v) => p.millis(v, k),
                None => Ok(default),
            }
        };
        let ring_ms = millis("ring_ms", Millis::ZERO)?;
        let reject_ms = millis("reject_ms", Millis::ZERO)?;
        let talk_ms = millis("talk_ms", Millis::ZERO)?;
        let callee_hangs_up = match top.get("callee_hangs_up") {
            Some(v) => p.share(v, "callee_hangs_up", Some(1.0))?,
            None => 1.0,
        };
        let retry_after_s = match top.get("retry_after_s") {
            Some(v) => match p.integer(v, "retry_after_s", 86_400)? {
                0 => None,
                n => Some(n),
            },
            None => None,
        };
        let media = match top.get("media") {
            None => true,
            Some(v) => match p.string(v, "media")? {
                "rtp" => true,
                "none" => false,
                other => {
                    return Err(p.err(
                        "media",
                        &format!("must be \"rtp\" or \"none\", got {other:?}"),
                    ))
                }
            },
        };
        let audio = match top.get("audio") {
            None => Audio::Silence,
            Some(v) => match p.string(v, "audio")? {
                "silence" => Audio::Silence,
                "tone" => Audio::Tone,
                path => {
                    let full = match dir {
                        Some(d) if Path::new(path).is_relative() => d.join(path),
                        _ => PathBuf::from(path),
                    };
                    let ulaw = crate::media::wav::read_wav(&full).map_err(|e| {
                        p.err(
                            "audio",
                            &format!(
                                "must be \"silence\", \"tone\" or a readable WAV file: {}: {e}",
                                full.display()
                            ),
                        )
                    })?;
                    Audio::Wav { path: full, ulaw }
                }
            },
        };
        if !media && audio != Audio::Silence {
            return Err(p.err(
                "audio",
                "needs media = \"rtp\" (calls without media play nothing)",
            ));
        }
        let mut dtmf = Vec::new();
        if let Some(v) = top.get("dtmf") {
            let list = v
                .as_array()
                .ok_or_else(|| p.err("dtmf", "must be an array of tables ([[dtmf]])"))?;
            let mut sum = 0.0;
            for (i, item) in list.iter().enumerate() {
                let key = format!("dtmf[{i}]");
                let t = p.table(item, &key)?;
                p.known(t, &key, &["digits", "share", "at_ms"])?;
                let digits = p
                    .string(p.required_at(t, &key, "digits")?, &format!("{key}.digits"))?
                    .to_string();
                if digits.is_empty()
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c))
                {
                    return Err(p.err(
                        &format!("{key}.digits"),
                        &format!("must be one or more of 0-9, *, #, A-D; got {digits:?}"),
                    ));
                }
                let share = p.share(
                    p.required_at(t, &key, "share")?,
                    &format!("{key}.share"),
                    Some(1.0),
                )?;
                let at_ms = p.millis(p.required_at(t, &key, "at_ms")?, &format!("{key}.at_ms"))?;
                sum += share;
                dtmf.push(DtmfChoice {
                    digits,
                    share,
                    at_ms,
                });
            }
            if sum > 1.0 + 1e-9 {
                return Err(p.err(
                    "dtmf",
                    &format!("the shares add up to {sum}, more than 1 (the rest press nothing)"),
                ));
            }
            if !dtmf.is_empty() && !media {
                return Err(p.err("dtmf", "needs media = \"rtp\" (key presses travel as RTP)"));
            }
        }
        let sms = match top.get("sms") {
            None => SmsShares::default(),
            Some(v) => {
                let t = p.table(v, "sms")?;
                p.known(
                    t,
                    "sms",
                    &["delivered", "failed", "no_receipt", "receipt_ms"],
                )?;
                let share = |k: &str| -> Result<f64, PopulationError> {
                    match t.get(k) {
                        Some(v) => p.share(v, &format!("sms.{k}"), None),
                        None => Ok(0.0),
                    }
                };
                let sms = SmsShares {
                    delivered: share("delivered")?,
                    failed: share("failed")?,
                    no_receipt: share("no_receipt")?,
                    receipt_ms: match t.get("receipt_ms") {
                        Some(v) => p.millis(v, "sms.receipt_ms")?,
                        None => Millis::ZERO,
                    },
                };
                if sms.delivered + sms.failed + sms.no_receipt <= 0.0 {
                    return Err(p.err(
                        "sms",
                        "at least one of delivered, failed, no_receipt must be above 0",
                    ));
                }
                sms
            }
        };
        Ok(Population {
            name,
            shares,
            ring_ms,
            reject_ms,
            talk_ms,
            callee_hangs_up,
            retry_after_s,
            media,
            audio,
            dtmf,
            sms,
        })
    }
}

struct Parser<'a> {
    origin: &'a str,
}

type Table = toml::map::Map<String, Value>;

impl Parser<'_> {
    fn err(&self, key: &str, message: &str) -> PopulationError {
        PopulationError::Invalid {
            origin: self.origin.to_string(),
            key: if key.is_empty() { "(top)" } else { key }.to_string(),
            message: message.to_string(),
        }
    }

    fn table<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Table, PopulationError> {
        v.as_table().ok_or_else(|| self.err(key, "must be a table"))
    }

    fn known(&self, t: &Table, prefix: &str, keys: &[&str]) -> Result<(), PopulationError> {
        for k in t.keys() {
            if !keys.contains(&k.as_str()) {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                return Err(self.err(
                    &key,
                    &format!("unknown key; expected one of {}", keys.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn required<'v>(&self, t: &'v Table, k: &str) -> Result<&'v Value, PopulationError> {
        t.get(k).ok_or_else(|| self.err(k, "is required"))
    }

    fn required_at<'v>(
        &self,
        t: &'v Table,
        prefix: &str,
        k: &str,
    ) -> Result<&'v Value, PopulationError> {
        t.get(k)
            .ok_or_else(|| self.err(&format!("{prefix}.{k}"), "is required"))
    }

    fn string<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str, PopulationError> {
        v.as_str().ok_or_else(|| self.err(key, "must be a string"))
    }

    fn number(&self, v: &Value, key: &str) -> Result<f64, PopulationError> {
        match v {
            Value::Integer(i) => Ok(*i as f64),
            Value::Float(f) if f.is_finite() => Ok(*f),
            _ => Err(self.err(key, "must be a number")),
        }
    }

    fn share(&self, v: &Value, key: &str, max: Option<f64>) -> Result<f64, PopulationError> {
        let x = self.number(v, key)?;
        if x < 0.0 {
            return Err(self.err(key, &format!("must not be negative, got {x}")));
        }
        if let Some(m) = max {
            if x > m {
                return Err(self.err(key, &format!("must be between 0 and {m}, got {x}")));
            }
        }
        Ok(x)
    }

    fn integer(&self, v: &Value, key: &str, max: u64) -> Result<u64, PopulationError> {
        match v {
            Value::Integer(i) if *i >= 0 && (*i as u64) <= max => Ok(*i as u64),
            Value::Integer(i) => {
                Err(self.err(key, &format!("must be between 0 and {max}, got {i}")))
            }
            _ => Err(self.err(key, "must be a whole number")),
        }
    }

    /// `1500` or `{ min = 1000, max = 3000 }`.
    fn millis(&self, v: &Value, key: &str) -> Result<Millis, PopulationError> {
        match v {
            Value::Integer(_) => Ok(Millis::fixed(self.integer(v, key, MAX_MS)?)),
            Value::Table(t) => {
                self.known(t, key, &["min", "max"])?;
                let min = self.integer(
                    self.required_at(t, key, "min")?,
                    &format!("{key}.min"),
                    MAX_MS,
                )?;
                let max = self.integer(
                    self.required_at(t, key, "max")?,
                    &format!("{key}.max"),
                    MAX_MS,
                )?;
                if min > max {
                    return Err(self.err(key, &format!("min ({min}) is above max ({max})")));
                }
                Ok(Millis { min, max })
            }
            _ => Err(self.err(
                key,
                "must be milliseconds: a whole number, or { min = …, max = … }",
            )),
        }
    }
}
