//! `script` agents: herald itself plays WAV prompts, gathers key presses
//! (RFC 4733) and branches on them, then sets the result and hangs up.
//!
//! A script is a set of named steps, starting at `start`:
//!
//! ```toml
//! start = "ask"
//! [steps.ask]
//! result = "retry"                  # set on entry: what a hang-up here means
//! play = ["appointment-ask.wav"]    # prompts, in order
//! gather = { max_digits = 1, timeout_ms = 6000, terminator = "#" }
//! on = { "1" = "confirmed", "2" = "cancelled" }
//! timeout = "ask-again"             # nothing pressed before the timeout
//! invalid = "ask-again"             # a key sequence `on` does not list
//! [steps.confirmed]
//! play = ["confirmed.wav"]
//! result = "confirmed"              # no gather and no `next`: play, then hang up
//! ```
//!
//! A key pressed during a prompt stops the prompt (barge-in). A step entered
//! more than `max_visits` times (default 3) ends the session. Prompts are
//! WAV files (8 or 16 kHz mono PCM), converted to μ-law once when the
//! script is loaded (when the agent is built): a shipped prompt
//! (`scenarios/audio/`) by its file name, or a file under the configured
//! `agents.prompt_dir`, and nothing else ([`crate::media::prompts`]).
//! Shipped scripts (`scenarios/scripts/*.toml`) are named by their file stem.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::{Agent, AgentUnavailable, Session, SessionContext, SessionControl};
use crate::domain::FieldError;
use crate::media::prompts::Prompts;
use crate::media::MediaEvent;
use crate::sip::CallMedia;

/// Scripts shipped with herald, by name.
const SHIPPED_SCRIPTS: &[(&str, &str)] = &[
    (
        "appointment-confirmation",
        include_str!("../../scenarios/scripts/appointment-confirmation.toml"),
    ),
    (
        "emergency-acknowledgement",
        include_str!("../../scenarios/scripts/emergency-acknowledgement.toml"),
    ),
];

/// The default cap on entries into one step.
const DEFAULT_MAX_VISITS: u32 = 3;
/// The most steps a script may have.
const MAX_STEPS: usize = 100;

/// A loaded script: steps with their prompts already in μ-law.
#[derive(Debug)]
pub struct Script {
    pub name: String,
    start: usize,
    steps: Vec<Step>,
    max_visits: u32,
}

#[derive(Debug)]
struct Step {
    name: String,
    result: Option<String>,
    prompts: Vec<Bytes>,
    gather: Option<Gather>,
    on: HashMap<String, usize>,
    timeout: Option<usize>,
    invalid: Option<usize>,
    next: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Gather {
    max_digits: usize,
    timeout: Duration,
    terminator: Option<char>,
}

/// The names of the shipped scripts.
pub fn shipped_scripts() -> impl Iterator<Item = &'static str> {
    SHIPPED_SCRIPTS.iter().map(|(n, _)| *n)
}

impl Script {
    /// From an agent's `script`: a shipped script's name, or a script object,
    /// with its prompts loaded from `prompts` (this reads files: call it from
    /// a blocking task). Errors name the field (`script.steps.ask.on.1`) and why.
    pub fn from_spec(spec: &Value, prompts: &Prompts) -> Result<Script, FieldError> {
        match spec {
            Value::String(name) => {
                let (_, text) =
                    SHIPPED_SCRIPTS
                        .iter()
                        .find(|(n, _)| n == name)
                        .ok_or_else(|| {
                            let shipped = shipped_scripts().collect::<Vec<_>>().join(", ");
                            FieldError::new(
                                "script",
                                format!("no shipped script named {name:?} (shipped: {shipped})"),
                            )
                        })?;
                let v: toml::Value = toml::from_str(text)
                    .map_err(|e| FieldError::new("script", format!("{name:?}: {e}")))?;
                let json = serde_json::to_value(v)
                    .map_err(|e| FieldError::new("script", e.to_string()))?;
                Script::parse(name, &json, prompts)
            }
            Value::Object(_) => {
                let name = spec["name"].as_str().unwrap_or("inline").to_string();
                Script::parse(&name, spec, prompts)
            }
            _ => Err(FieldError::new(
                "script",
                "must be an object (the script) or a shipped script's name",
            )),
        }
    }

    fn parse(name: &str, v: &Value, prompts: &Prompts) -> Result<Script, FieldError> {
        let obj = v
            .as_object()
            .ok_or_else(|| FieldError::new("script", "must be an object"))?;
        for k in obj.keys() {
            if !["name", "description", "start", "steps", "max_visits"].contains(&k.as_str()) {
                return Err(FieldError::new(
                    format!("script.{k}"),
                    "unknown key (expected name, description, start, steps, max_visits)",
                ));
            }
        }
        let steps_v = obj.get("steps").and_then(Value::as_object).ok_or_else(|| {
            FieldError::new("script.steps", "is required (an object of named steps)")
        })?;
        if steps_v.is_empty() || steps_v.len() > MAX_STEPS {
            return Err(FieldError::new(
                "script.steps",
                format!("must have 1 to {MAX_STEPS} steps"),
            ));
        }
        let index: HashMap<&str, usize> = steps_v
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let step_ref = |field: &str, v: &Value| -> Result<usize, FieldError> {
            let s = v
                .as_str()
                .ok_or_else(|| FieldError::new(field, "must be a step name"))?;
            index
                .get(s)
                .copied()
                .ok_or_else(|| FieldError::new(field, format!("no step named {s:?}")))
        };
        let start = match obj.get("start") {
            Some(s) => step_ref("script.start", s)?,
            None => {
                return Err(FieldError::new(
                    "script.start",
                    "is required (the first step's name)",
                ))
            }
        };
        let max_visits = match obj.get("max_visits") {
            None => DEFAULT_MAX_VISITS,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=100) => n as u32,
                _ => {
                    return Err(FieldError::new(
                        "script.max_visits",
                        "must be an integer from 1 to 100",
                    ))
                }
            },
        };
        let mut steps = Vec::with_capacity(steps_v.len());
        for (sname, sv) in steps_v {
            let p = format!("script.steps.{sname}");
            let so = sv
                .as_object()
                .ok_or_else(|| FieldError::new(&p, "must be an object"))?;
            for k in so.keys() {
                if ![
                    "result", "play", "gather", "on", "timeout", "invalid", "next",
                ]
                .contains(&k.as_str())
                {
                    return Err(FieldError::new(
                        format!("{p}.{k}"),
                        "unknown key (expected result, play, gather, on, timeout, invalid, next)",
                    ));
                }
            }
            let result = match so.get("result") {
                None => None,
                Some(Value::String(r))
                    if !r.trim().is_empty() && r.len() <= super::MAX_RESULT_LEN =>
                {
                    Some(r.trim().to_string())
                }
                Some(_) => {
                    return Err(FieldError::new(
                        format!("{p}.result"),
                        "must be a non-empty string",
                    ))
                }
            };
            let load = |field: String, f: &str| {
                prompts
                    .load(f)
                    .map_err(|e| FieldError::new(field, e.to_string()))
            };
            let prompts = match so.get("play") {
                None => Vec::new(),
                Some(Value::String(f)) => vec![load(format!("{p}.play"), f)?],
                Some(Value::Array(fs)) => fs
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let field = format!("{p}.play[{i}]");
                        let f = f
                            .as_str()
                            .ok_or_else(|| FieldError::new(&field, "must be a file name"))?;
                        load(field, f)
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(FieldError::new(
                        format!("{p}.play"),
                        "must be a file name or a list of them",
                    ))
                }
            };
            let gather = match so.get("gather") {
                None => None,
                Some(g) => Some(parse_gather(&format!("{p}.gather"), g)?),
            };
            let mut on = HashMap::new();
            if let Some(o) = so.get("on") {
                let o = o.as_object().ok_or_else(|| {
                    FieldError::new(format!("{p}.on"), "must be an object of keys → step")
                })?;
                if gather.is_none() {
                    return Err(FieldError::new(
                        format!("{p}.on"),
                        "needs a gather in the same step",
                    ));
                }
                for (keys, target) in o {
                    let field = format!("{p}.on.{keys}");
                    if keys.is_empty() || !keys.chars().all(is_dtmf) {
                        return Err(FieldError::new(field, "must be keys from 0-9, *, #, A-D"));
                    }
                    on.insert(keys.clone(), step_ref(&field, target)?);
                }
            }
            let opt_ref = |k: &str| -> Result<Option<usize>, FieldError> {
                so.get(k)
                    .map(|v| step_ref(&format!("{p}.{k}"), v))
                    .transpose()
            };
            steps.push(Step {
                name: sname.clone(),
                result,
                prompts,
                gather,
                on,
                timeout: opt_ref("timeout")?,
                invalid: opt_ref("invalid")?,
                next: opt_ref("next")?,
            });
        }
        Ok(Script {
            name: name.to_string(),
            start,
            steps,
            max_visits,
        })
    }
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn parse_gather(p: &str, g: &Value) -> Result<Gather, FieldError> {
    let o = g
        .as_object()
        .ok_or_else(|| FieldError::new(p, "must be an object"))?;
    for k in o.keys() {
        if !["max_digits", "timeout_ms", "terminator"].contains(&k.as_str()) {
            return Err(FieldError::new(
                format!("{p}.{k}"),
                "unknown key (expected max_digits, timeout_ms, terminator)",
            ));
        }
    }
    let max_digits = match o.get("max_digits") {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=32) => n as usize,
            _ => {
                return Err(FieldError::new(
                    format!("{p}.max_digits"),
                    "must be an integer from 1 to 32",
                ))
            }
        },
    };
    let timeout_ms = match o.get("timeout_ms") {
        None => 5000,
        Some(v) => match v.as_u64() {
            Some(n @ 100..=120_000) => n,
            _ => {
                return Err(FieldError::new(
                    format!("{p}.timeout_ms"),
                    "must be an integer from 100 to 120000",
                ))
            }
        },
    };
    let terminator = match o.get("terminator") {
        None => None,
        Some(Value::String(s)) if s.chars().count() == 1 && s.chars().all(is_dtmf) => {
            s.chars().next()
        }
        Some(_) => {
            return Err(FieldError::new(
                format!("{p}.terminator"),
                "must be one key, e.g. \"#\"",
            ))
        }
    };
    Ok(Gather {
        max_digits,
        timeout: Duration::from_millis(timeout_ms),
        terminator,
    })
}

pub struct ScriptAgent {
    script: Arc<Script>,
}

impl ScriptAgent {
    pub fn new(script: Arc<Script>) -> ScriptAgent {
        ScriptAgent { script }
    }
}

#[async_trait]
impl Agent for ScriptAgent {
    async fn prepare(&self, _ctx: &SessionContext) -> Result<Box<dyn Session>, AgentUnavailable> {
        Ok(Box::new(ScriptSession {
            script: self.script.clone(),
        }))
    }
}

struct ScriptSession {
    script: Arc<Script>,
}

/// How gathering went.
enum Gathered {
    Keys(String),
    Timeout,
    CallEnded,
}

#[async_trait]
impl Session for ScriptSession {
    async fn run(self: Box<Self>, mut media: CallMedia, ctl: Arc<SessionControl>) {
        let script = &self.script;
        let mut visits = vec![0u32; script.steps.len()];
        let mut at = script.start;
        loop {
            let step = &script.steps[at];
            visits[at] += 1;
            if visits[at] > script.max_visits {
                tracing::debug!(script = %script.name, step = %step.name, "step entered too often; hanging up");
                break;
            }
            if let Some(r) = &step.result {
                let _ = ctl.set_result(r);
            }
            for p in &step.prompts {
                media.play(p.clone());
            }
            let played = format!("{}#{}", step.name, visits[at]);
            media.mark(played.clone());
            let next = match step.gather {
                Some(g) => match gather(&mut media, g, &played).await {
                    Gathered::CallEnded => return,
                    Gathered::Timeout => step.timeout,
                    Gathered::Keys(k) => step.on.get(&k).copied().or(step.invalid),
                },
                None => {
                    if !wait_for_mark(&mut media, &played).await {
                        return;
                    }
                    step.next
                }
            };
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        ctl.hang_up();
    }
}

/// Waits for the prompts before `mark` to play out; `false` if the call ended.
async fn wait_for_mark(media: &mut CallMedia, mark: &str) -> bool {
    loop {
        match media.next_event().await {
            None => return false,
            Some(MediaEvent::MarkPlayed(m) | MediaEvent::MarkCleared(m)) if m == mark => {
                return true
            }
            Some(_) => {}
        }
    }
}

/// Gathers keys: the timeout runs from the end of the prompts (or from the
/// last key); a key during the prompts stops them.
async fn gather(media: &mut CallMedia, g: Gather, mark: &str) -> Gathered {
    let mut keys = String::new();
    let mut prompts_done = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let ev = match deadline {
            Some(d) => match tokio::time::timeout_at(d, media.next_event()).await {
                Ok(ev) => ev,
                Err(_) => {
                    return if keys.is_empty() {
                        Gathered::Timeout
                    } else {
                        Gathered::Keys(keys)
                    }
                }
            },
            None => media.next_event().await,
        };
        match ev {
            None => return Gathered::CallEnded,
            Some(MediaEvent::MarkPlayed(m) | MediaEvent::MarkCleared(m)) if m == mark => {
                prompts_done = true;
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + g.timeout);
                }
            }
            Some(MediaEvent::Dtmf(d)) => {
                if !prompts_done {
                    media.clear();
                }
                if Some(d) == g.terminator {
                    return if keys.is_empty() {
                        Gathered::Timeout
                    } else {
                        Gathered::Keys(keys)
                    };
                }
                keys.push(d);
                if keys.len() >= g.max_digits {
                    return Gathered::Keys(keys);
                }
                deadline = Some(tokio::time::Instant::now() + g.timeout);
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shipped_scripts_load() {
        for name in shipped_scripts() {
            let s = Script::from_spec(&json!(name), &Prompts::shipped_only())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!s.steps.is_empty());
            assert!(s.steps.iter().any(|st| !st.prompts.is_empty()));
        }
    }

    #[test]
    fn script_errors_name_the_field() {
        let e = |v: Value| {
            Script::from_spec(&v, &Prompts::shipped_only())
                .unwrap_err()
                .to_string()
        };
        assert!(e(json!("nope")).contains("no shipped script named \"nope\""));
        assert!(e(json!({"steps": {"a": {}}})).starts_with("script.start"));
        assert!(e(json!({"start": "b", "steps": {"a": {}}}))
            .starts_with("script.start: no step named \"b\""));
        assert!(e(json!({"start": "a", "steps": {"a": {"on": {"1": "a"}}}}))
            .starts_with("script.steps.a.on: needs a gather"));
        assert!(
            e(json!({"start": "a", "steps": {"a": {"gather": {}, "on": {"x": "a"}}}}))
                .starts_with("script.steps.a.on.x")
        );
        assert!(
            e(json!({"start": "a", "steps": {"a": {"gather": {"max_digits": 0}}}}))
                .starts_with("script.steps.a.gather.max_digits")
        );
        assert!(
            e(json!({"start": "a", "steps": {"a": {"play": ["/nonexistent.wav"]}}}))
                .starts_with("script.steps.a.play[0]: must name a shipped prompt")
        );
        assert!(e(json!({"start": "a", "steps": {"a": {"nxt": "a"}}}))
            .starts_with("script.steps.a.nxt: unknown key"));
        assert!(e(json!({"start": "a", "steps": {"a": {"next": "zz"}}}))
            .starts_with("script.steps.a.next: no step named"));
    }
}
