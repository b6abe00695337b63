//! Validation of outplans, agents and campaigns. Each validator takes the
//! request JSON and returns the normalised document (defaults filled in) that
//! is stored, or the first error with its field. `name` is part of the input
//! and of the document.

use serde_json::{json, Value};

use super::destination::{validate_e164, validate_sip_uri};
use super::fields::{Fields, MAX_DETAIL_CHARS};
use super::window::{parse_hhmm, parse_weekday, CallingWindow};
use super::{parse_timezone, FieldError};

const DAY_S: i64 = 86_400;

/// Slowest pacing a campaign accepts: one call every 100 seconds.
pub const MIN_CALLS_PER_SECOND: f64 = 0.01;

/// An outplan: caller id, ring timeout, try budget and retry delays.
pub fn validate_outplan(v: &Value) -> Result<Value, FieldError> {
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
    let name = f.name("name", 200)?;
    let caller_id = match f.str_opt("caller_id")? {
        None => Value::Null,
        Some(c) => {
            validate_e164(c).map_err(|r| f.err("caller_id", r))?;
            Value::String(c.to_string())
        }
    };
    let retry = match f.obj_opt("retry")? {
        None => {
            json!({"busy_s": 300, "no_answer_s": 3600, "failed_s": 600, "backoff": 1.0, "jitter_s": 0})
        }
        Some(r) => {
            r.deny_unknown(&["busy_s", "no_answer_s", "failed_s", "backoff", "jitter_s"])?;
            json!({
                "busy_s": r.int_or("busy_s", 0, 30 * DAY_S, 300)?,
                "no_answer_s": r.int_or("no_answer_s", 0, 30 * DAY_S, 3600)?,
                "failed_s": r.int_or("failed_s", 0, 30 * DAY_S, 600)?,
                "backoff": r.num_or("backoff", 1.0, 10.0, false, 1.0)?,
                "jitter_s": r.int_or("jitter_s", 0, DAY_S, 0)?,
            })
        }
    };
    Ok(json!({
        "name": name,
        "detail": f.text_opt("detail", MAX_DETAIL_CHARS)?.unwrap_or(""),
        "caller_id": caller_id,
        "dial_timeout_s": f.int_or("dial_timeout_s", 5, 600, 30)?,
        "try_count_max": f.int_or("try_count_max", 1, 100, 3)?,
        "retry": retry,
        "max_call_duration_s": f.int_or("max_call_duration_s", 1, DAY_S, 3600)?,
    }))
}

pub const AGENT_KINDS: [&str; 3] = ["media_stream", "sip", "script"];

/// An agent configuration: what answers the callee.
pub fn validate_agent(v: &Value) -> Result<Value, FieldError> {
    let f = Fields::new(v, "")?;
    f.deny_unknown(&[
        "name",
        "detail",
        "kind",
        "url",
        "parameters",
        "max_concurrent_sessions",
        "script",
    ])?;
    let name = f.name("name", 200)?;
    let kind = f.str_req("kind")?;
    if !AGENT_KINDS.contains(&kind) {
        return Err(f.err(
            "kind",
            format!("must be one of {}, got {kind:?}", AGENT_KINDS.join(", ")),
        ));
    }
    let url = f.str_opt("url")?.map(str::trim);
    let script = f.get("script").cloned();
    match kind {
        "media_stream" => {
            let u = url.ok_or_else(|| {
                f.err(
                    "url",
                    "is required for a media_stream agent (ws:// or wss://)",
                )
            })?;
            let rest = u
                .strip_prefix("ws://")
                .or_else(|| u.strip_prefix("wss://"))
                .ok_or_else(|| {
                    f.err("url", format!("must start with ws:// or wss://, got {u:?}"))
                })?;
            if rest.is_empty() || rest.starts_with('/') || u.contains(char::is_whitespace) {
                return Err(f.err("url", format!("{u:?} has no host")));
            }
        }
        "sip" => {
            let u = url.ok_or_else(|| f.err("url", "is required for a sip agent (a SIP URI)"))?;
            validate_sip_uri(u).map_err(|r| f.err("url", r))?;
        }
        _ => {
            match &script {
                Some(Value::Object(_)) | Some(Value::String(_)) => {}
                Some(_) => {
                    return Err(f.err(
                        "script",
                        "must be an object (the script) or a shipped script's name",
                    ))
                }
                None => return Err(f.err("script", "is required for a script agent")),
            }
            // The script itself is compiled, and its prompts loaded, when the
            // agent is built (before it is stored), not here.
            if url.is_some() {
                return Err(f.err("url", "a script agent has no url"));
            }
        }
    }
    Ok(json!({
        "name": name,
        "detail": f.text_opt("detail", MAX_DETAIL_CHARS)?.unwrap_or(""),
        "kind": kind,
        "url": url,
        "parameters": Value::Object(f.map_opt("parameters", 16 * 1024)?),
        "max_concurrent_sessions": f.int_or("max_concurrent_sessions", 1, 100_000, 100)?,
        "script": script,
    }))
}

/// The ids a campaign refers to; the caller checks they exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRefs {
    pub outdial_id: String,
    pub outplan_id: String,
    pub agent_id: String,
    pub trunk: String,
}

/// A campaign: what to dial, with which plan and agent, how fast, when.
pub fn validate_campaign(v: &Value) -> Result<(Value, CampaignRefs), FieldError> {
    let f = Fields::new(v, "")?;
    f.deny_unknown(&[
        "name",
        "detail",
        "outdial_id",
        "outplan_id",
        "agent_id",
        "trunk",
        "max_concurrent_calls",
        "calls_per_second",
        "calling_window",
        "schedule",
        "priority",
        "end_handle",
    ])?;
    let name = f.name("name", 200)?;
    let refs = CampaignRefs {
        outdial_id: f.str_req("outdial_id")?.to_string(),
        outplan_id: f.str_req("outplan_id")?.to_string(),
        agent_id: f.str_req("agent_id")?.to_string(),
        trunk: f.str_opt("trunk")?.unwrap_or("default").to_string(),
    };
    let window = match f.get("calling_window") {
        None => Value::Null,
        Some(w) => {
            Fields::new(w, "calling_window")?;
            let cw: CallingWindow = serde_json::from_value(w.clone())
                .map_err(|e| FieldError::new("calling_window", e.to_string()))?;
            cw.validate().map_err(|e| e.within("calling_window"))?;
            serde_json::to_value(&cw).expect("window serializes")
        }
    };
    let schedule = match f.obj_opt("schedule")? {
        None => Value::Null,
        Some(s) => {
            s.deny_unknown(&["daily_start", "days", "timezone"])?;
            let start = s.str_req("daily_start")?;
            parse_hhmm(&s.path_of("daily_start"), start)?;
            let days: Vec<String> = match s.array_opt("days")? {
                None => vec![],
                Some(days) => days
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let path = s.path_of(&format!("days[{i}]"));
                        let name = d
                            .as_str()
                            .ok_or_else(|| FieldError::new(&path, "must be a weekday name"))?;
                        parse_weekday(&path, name).map(|_| name.to_ascii_lowercase())
                    })
                    .collect::<Result<_, _>>()?,
            };
            let tz = match s.str_opt("timezone")? {
                None => Value::Null,
                Some(tz) => Value::String(
                    parse_timezone(&s.path_of("timezone"), tz)?
                        .name()
                        .to_string(),
                ),
            };
            json!({"daily_start": start, "days": days, "timezone": tz})
        }
    };
    let spec = json!({
        "name": name,
        "detail": f.text_opt("detail", MAX_DETAIL_CHARS)?.unwrap_or(""),
        "outdial_id": refs.outdial_id,
        "outplan_id": refs.outplan_id,
        "agent_id": refs.agent_id,
        "trunk": refs.trunk,
        "max_concurrent_calls": f.int_or("max_concurrent_calls", 1, 100_000, 10)?,
        "calls_per_second": f.num_or("calls_per_second", MIN_CALLS_PER_SECOND, 100_000.0, false, 1.0)?,
        "calling_window": window,
        "schedule": schedule,
        "priority": f.choice_or("priority", &["normal", "emergency"], "normal")?,
        "end_handle": f.choice_or("end_handle", &["stop", "continue"], "stop")?,
    });
    Ok((spec, refs))
}

/// A one-off call request (`POST /v1/calls`, the seed API's
/// `outboundCalls.create`). `now` decides whether `scheduled_at` is given for
/// a scheduled call; a time in the past dials at once.
pub fn validate_call_request(v: &Value) -> Result<Value, FieldError> {
    let f = Fields::new(v, "")?;
    f.deny_unknown(&[
        "to",
        "from",
        "agent_id",
        "trunk",
        "schedule_type",
        "scheduled_at",
        "max_duration",
        "max_retries",
        "ring_timeout",
        "retry_delay",
    ])?;
    let to = f.str_req("to")?.trim();
    if to.starts_with("sip:") || to.starts_with("sips:") {
        validate_sip_uri(to).map_err(|r| f.err("to", r))?;
    } else {
        validate_e164(to).map_err(|r| f.err("to", r))?;
    }
    let from = match f.str_opt("from")? {
        None => Value::Null,
        Some(c) => {
            validate_e164(c.trim()).map_err(|r| f.err("from", r))?;
            Value::String(c.trim().to_string())
        }
    };
    let schedule_type = f.choice_or("schedule_type", &["immediate", "scheduled"], "immediate")?;
    let scheduled_at = f.timestamp_opt("scheduled_at")?;
    if schedule_type == "scheduled" && scheduled_at.is_none() {
        return Err(f.err(
            "scheduled_at",
            "is required when schedule_type is \"scheduled\"",
        ));
    }
    if schedule_type == "immediate" && scheduled_at.is_some() {
        return Err(f.err("scheduled_at", "only goes with schedule_type \"scheduled\""));
    }
    Ok(json!({
        "to": to,
        "from": from,
        "agent_id": f.str_opt("agent_id")?,
        "trunk": f.str_opt("trunk")?.unwrap_or("default"),
        "schedule_type": schedule_type,
        "scheduled_at": scheduled_at,
        "max_duration": f.int_or("max_duration", 1, DAY_S, 3600)?,
        "max_retries": f.int_or("max_retries", 0, 10, 0)?,
        "ring_timeout": f.int_or("ring_timeout", 5, 600, 30)?,
        "retry_delay": f.int_or("retry_delay", 0, DAY_S, 60)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outplan_defaults_fill_in() {
        let p = validate_outplan(&json!({"name": "sales-3x"})).unwrap();
        assert_eq!(p["try_count_max"], 3);
        assert_eq!(p["retry"]["busy_s"], 300);
        assert_eq!(p["dial_timeout_s"], 30);
    }

    #[test]
    fn outplan_errors_name_fields() {
        let e = |v: Value| validate_outplan(&v).unwrap_err().field;
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
            e(json!({"name": "x", "dial_timeout_s": "25"})),
            "dial_timeout_s"
        );
        assert_eq!(e(json!({"name": "x", "detail": "a\u{0}b"})), "detail");
    }

    #[test]
    fn agents_need_what_their_kind_needs() {
        let e = |v: Value| validate_agent(&v).unwrap_err().field;
        assert_eq!(e(json!({"name": "a", "kind": "robot"})), "kind");
        assert_eq!(e(json!({"name": "a", "kind": "media_stream"})), "url");
        assert_eq!(
            e(json!({"name": "a", "kind": "media_stream", "url": "http://x"})),
            "url"
        );
        assert_eq!(
            e(json!({"name": "a", "kind": "sip", "url": "agent@x"})),
            "url"
        );
        assert_eq!(e(json!({"name": "a", "kind": "script"})), "script");
        assert_eq!(
            e(
                json!({"name": "a", "kind": "media_stream", "url": "ws://h/s", "max_concurrent_sessions": 0})
            ),
            "max_concurrent_sessions"
        );
        let ok = validate_agent(
            &json!({"name": "bot", "kind": "media_stream", "url": "ws://127.0.0.1:8765/stream"}),
        )
        .unwrap();
        assert_eq!(ok["max_concurrent_sessions"], 100);
    }

    #[test]
    fn call_requests_are_checked_field_by_field() {
        let e = |v: Value| validate_call_request(&v).unwrap_err().field;
        assert_eq!(e(json!({})), "to");
        assert_eq!(e(json!({"to": "555"})), "to");
        assert_eq!(e(json!({"to": "+15551234567", "from": "x"})), "from");
        assert_eq!(
            e(json!({"to": "+15551234567", "schedule_type": "scheduled"})),
            "scheduled_at"
        );
        assert_eq!(
            e(json!({"to": "+15551234567", "scheduled_at": "2026-11-22T10:00:00Z"})),
            "scheduled_at"
        );
        assert_eq!(
            e(json!({"to": "+15551234567", "max_retries": 11})),
            "max_retries"
        );
        let ok = validate_call_request(
            &json!({"to": "sip:desk@127.0.0.1:5070", "schedule_type": "scheduled",
            "scheduled_at": "2026-11-22T10:00:00Z", "max_retries": 2}),
        )
        .unwrap();
        assert_eq!(ok["trunk"], "default");
        assert!(ok["scheduled_at"].is_i64());
    }

    #[test]
    fn campaign_errors_name_fields() {
        let base = json!({"name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            validate_campaign(&b).unwrap_err().field
        };
        assert!(validate_campaign(&base).is_ok());
        assert_eq!(with("calls_per_second", json!(0)), "calls_per_second");
        assert_eq!(with("calls_per_second", json!(1e-9)), "calls_per_second");
        assert_eq!(with("calls_per_second", json!("5")), "calls_per_second");
        let mut slow = base.clone();
        slow["calls_per_second"] = json!(0.01);
        assert!(validate_campaign(&slow).is_ok());
        assert_eq!(
            with("max_concurrent_calls", json!(-1)),
            "max_concurrent_calls"
        );
        assert_eq!(with("priority", json!("urgent")), "priority");
        assert_eq!(with("end_handle", json!("loop")), "end_handle");
        assert_eq!(
            with(
                "calling_window",
                json!({"timezone": "Bad/Zone", "start": "09:00", "end": "17:00"})
            ),
            "calling_window.timezone"
        );
        assert_eq!(
            with(
                "calling_window",
                json!({"timezone": "UTC", "days": ["mon", "xyz"], "start": "09:00", "end": "17:00"})
            ),
            "calling_window.days[1]"
        );
        assert_eq!(
            with(
                "calling_window",
                json!({"timezone": "UTC", "start": "9am", "end": "17:00"})
            ),
            "calling_window.start"
        );
        assert_eq!(
            with("schedule", json!({"daily_start": "25:00"})),
            "schedule.daily_start"
        );
        assert_eq!(
            with(
                "schedule",
                json!({"daily_start": "09:00", "days": ["someday"]})
            ),
            "schedule.days[0]"
        );
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("outplan_id");
        assert_eq!(validate_campaign(&missing).unwrap_err().field, "outplan_id");
    }
}
