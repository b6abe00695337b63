//! Outplans: caller id, ring timeout, try budget and retry delays.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DAY_S;
use crate::domain::destination::validate_e164;
use crate::domain::fields::{Fields, MAX_DETAIL_CHARS};
use crate::domain::FieldError;

/// A parsed outplan, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outplan {
    pub name: String,
    pub detail: String,
    /// E.164 number presented to the callee; the trunk's when `None`.
    pub caller_id: Option<String>,
    pub dial_timeout_s: u32,
    /// Tries per destination unless the target says otherwise.
    pub try_count_max: u32,
    pub retry: RetryDelays,
    pub max_call_duration_s: u32,
}

/// How long to wait before the next try, by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryDelays {
    pub busy_s: u32,
    pub no_answer_s: u32,
    pub failed_s: u32,
    /// Each further try on the same destination multiplies the delay by this (≥ 1).
    pub backoff: f64,
    pub jitter_s: u32,
}

impl Default for Outplan {
    fn default() -> Self {
        Outplan {
            name: String::new(),
            detail: String::new(),
            caller_id: None,
            dial_timeout_s: 30,
            try_count_max: 3,
            retry: RetryDelays::default(),
            max_call_duration_s: 3600,
        }
    }
}

impl Default for RetryDelays {
    fn default() -> Self {
        RetryDelays {
            busy_s: 300,
            no_answer_s: 3600,
            failed_s: 600,
            backoff: 1.0,
            jitter_s: 0,
        }
    }
}

impl Outplan {
    /// Parses a request body; the first bad field is the error.
    pub fn parse(v: &Value) -> Result<Outplan, FieldError> {
        let f = Fields::new(v, "")?;
        f.deny_unknown(&[
            "name",
            "detail",
            "caller_id",
            "dial_timeout_s",
            "try_count_max",
            "retry",
            "max_call_duration_s",
        ])?;
        let d = Outplan::default();
        let name = f.name("name", 200)?;
        let caller_id = match f.str_opt("caller_id")? {
            None => None,
            Some(c) => {
                validate_e164(c).map_err(|r| f.err("caller_id", r))?;
                Some(c.to_string())
            }
        };
        let retry = match f.obj_opt("retry")? {
            None => d.retry,
            Some(r) => {
                r.deny_unknown(&["busy_s", "no_answer_s", "failed_s", "backoff", "jitter_s"])?;
                let d = d.retry;
                RetryDelays {
                    busy_s: r.int_or("busy_s", 0, 30 * DAY_S, d.busy_s)?,
                    no_answer_s: r.int_or("no_answer_s", 0, 30 * DAY_S, d.no_answer_s)?,
                    failed_s: r.int_or("failed_s", 0, 30 * DAY_S, d.failed_s)?,
                    backoff: r.num_or("backoff", 1.0, 10.0, false, d.backoff)?,
                    jitter_s: r.int_or("jitter_s", 0, DAY_S, d.jitter_s)?,
                }
            }
        };
        Ok(Outplan {
            name,
            detail: f
                .text_opt("detail", MAX_DETAIL_CHARS)?
                .unwrap_or_default()
                .to_string(),
            caller_id,
            dial_timeout_s: f.int_or("dial_timeout_s", 5, 600, d.dial_timeout_s)?,
            try_count_max: f.int_or("try_count_max", 1, 100, d.try_count_max)?,
            retry,
            max_call_duration_s: f.int_or(
                "max_call_duration_s",
                1,
                DAY_S,
                d.max_call_duration_s,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outplan_defaults_fill_in() {
        let p = Outplan::parse(&json!({"name": "sales-3x"})).unwrap();
        assert_eq!(p.try_count_max, 3);
        assert_eq!(p.retry.busy_s, 300);
        assert_eq!(p.dial_timeout_s, 30);
    }

    #[test]
    fn outplan_errors_name_fields() {
        let e = |v: Value| Outplan::parse(&v).unwrap_err().field;
        assert_eq!(e(json!({})), "name");
        assert_eq!(e(json!({"name": "x", "caller_id": "555"})), "caller_id");
        assert_eq!(
            e(json!({"name": "x", "dial_timeout_s": 0})),
            "dial_timeout_s"
        );
        assert_eq!(
            e(json!({"name": "x", "retry": {"busy_s": -5}})),
            "retry.busy_s"
        );
        assert_eq!(
            e(json!({"name": "x", "retry": {"backoff": 0.5}})),
            "retry.backoff"
        );
        assert_eq!(
            e(json!({"name": "x", "try_count_max": "lots"})),
            "try_count_max"
        );
        assert_eq!(
            e(json!({"name": "x", "try_count_max": "5"})),
            "try_count_max"
        );
        assert_eq!(
            e(json!({"name": "x", "dial_timeout_s": "25"})),
            "dial_timeout_s"
        );
        assert_eq!(e(json!({"name": "x", "detail": "a\u{0}b"})), "detail");
    }

    #[test]
    fn the_stored_document_keeps_its_shape() {
        let p = Outplan::parse(&json!({"name": " p ", "caller_id": "+15551234567"})).unwrap();
        assert_eq!(
            super::super::to_document(&p),
            json!({
                "name": "p", "detail": "", "caller_id": "+15551234567",
                "dial_timeout_s": 30, "try_count_max": 3, "max_call_duration_s": 3600,
                "retry": {"busy_s": 300, "no_answer_s": 3600, "failed_s": 600, "backoff": 1.0, "jitter_s": 0},
            })
        );
    }

    #[test]
    fn a_document_stored_without_newer_fields_reads_with_the_defaults() {
        let p: Outplan =
            serde_json::from_value(json!({"name": "old", "retry": {"busy_s": 5}})).unwrap();
        assert_eq!(p.retry.busy_s, 5);
        assert_eq!(p.retry.no_answer_s, 3600);
        assert_eq!(p.max_call_duration_s, 3600);
        assert_eq!(p.caller_id, None);
    }
}
