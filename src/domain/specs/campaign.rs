//! Campaigns: what to dial, with which plan and agent, how fast, when.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::fields::{Fields, MAX_DETAIL_CHARS};
use crate::domain::window::{parse_hhmm, parse_weekday, CallingWindow};
use crate::domain::{parse_timezone, FieldError};

use super::compliance::{self, ComplianceSpec};

/// Slowest pacing a campaign accepts: one call every 100 seconds.
pub const MIN_CALLS_PER_SECOND: f64 = 0.01;

/// A campaign's `priority`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Normal,
    /// Ignores calling windows and takes trunk capacity ahead of `Normal`.
    Emergency,
}

impl Priority {
    pub const ALL: [Priority; 2] = [Priority::Normal, Priority::Emergency];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What a campaign does once nothing is left to dial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndHandle {
    /// Finishes.
    #[default]
    Stop,
    /// Keeps running, waiting for targets added later.
    Continue,
}

impl EndHandle {
    pub const ALL: [EndHandle; 2] = [EndHandle::Stop, EndHandle::Continue];

    pub fn as_str(self) -> &'static str {
        match self {
            EndHandle::Stop => "stop",
            EndHandle::Continue => "continue",
        }
    }
}

/// A campaign's `schedule`: it wakes at `daily_start` local time on each of
/// `days` (every day when empty), in `timezone` (else the calling window's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyScheduleSpec {
    /// `HH:MM`, 24-hour.
    pub daily_start: String,
    /// Lower-case weekday names as given.
    #[serde(default)]
    pub days: Vec<String>,
    /// An IANA zone name.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A parsed campaign, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignSpec {
    pub name: String,
    pub detail: String,
    pub outdial_id: String,
    pub outplan_id: String,
    pub agent_id: String,
    /// The configured trunk `tel` destinations go out on.
    pub trunk: String,
    pub max_concurrent_calls: u32,
    pub calls_per_second: f64,
    pub calling_window: Option<CallingWindow>,
    pub schedule: Option<DailyScheduleSpec>,
    pub priority: Priority,
    pub end_handle: EndHandle,
    /// A message for targets that end `failed` with every call attempt
    /// spent (not DNC, not an invalid destination, not opted out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
    /// `compliance_profile` and the campaign's own stricter rules.
    #[serde(flatten)]
    pub compliance: ComplianceSpec,
    /// Answering-machine detection after the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd: Option<super::amd::AmdSpec>,
}

/// A campaign's fallback message: `channel` (`sms` to the target's first
/// phone number, `email` to its `email` variable) rendered from
/// `template_id` with the target's variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackSpec {
    pub channel: String,
    pub template_id: String,
}

impl Default for CampaignSpec {
    fn default() -> Self {
        CampaignSpec {
            name: String::new(),
            detail: String::new(),
            outdial_id: String::new(),
            outplan_id: String::new(),
            agent_id: String::new(),
            trunk: "default".to_string(),
            max_concurrent_calls: 10,
            calls_per_second: 1.0,
            calling_window: None,
            schedule: None,
            priority: Priority::default(),
            end_handle: EndHandle::default(),
            fallback: None,
            compliance: ComplianceSpec::default(),
            amd: None,
        }
    }
}

impl CampaignSpec {
    /// Parses a request body (or a stored document with a patch merged in).
    /// The ids it refers to are not looked up here.
    pub fn parse(v: &Value) -> Result<CampaignSpec, FieldError> {
        let f = Fields::new(v, "")?;
        f.deny_unknown(
            &[
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
                "fallback",
                "amd",
            ]
            .iter()
            .chain(&compliance::FIELDS)
            .copied()
            .collect::<Vec<_>>(),
        )?;
        let d = CampaignSpec::default();
        let name = f.name("name", 200)?;
        let outdial_id = f.str_req("outdial_id")?.to_string();
        let outplan_id = f.str_req("outplan_id")?.to_string();
        let agent_id = f.str_req("agent_id")?.to_string();
        let trunk = f.str_opt("trunk")?.map_or(d.trunk, str::to_string);
        let calling_window = match f.get("calling_window") {
            None => None,
            Some(w) => {
                Fields::new(w, "calling_window")?;
                let cw: CallingWindow = serde_json::from_value(w.clone())
                    .map_err(|e| FieldError::new("calling_window", e.to_string()))?;
                cw.validate().map_err(|e| e.within("calling_window"))?;
                Some(cw)
            }
        };
        let schedule = match f.obj_opt("schedule")? {
            None => None,
            Some(s) => Some(parse_schedule(&s)?),
        };
        let priority = choice(&f, "priority", &Priority::ALL, Priority::as_str, d.priority)?;
        let end_handle = choice(
            &f,
            "end_handle",
            &EndHandle::ALL,
            EndHandle::as_str,
            d.end_handle,
        )?;
        let fallback = match f.obj_opt("fallback")? {
            None => None,
            Some(fb) => {
                fb.deny_unknown(&["channel", "template_id"])?;
                let channel = fb.str_req("channel")?;
                if !["sms", "email"].contains(&channel) {
                    return Err(fb.err("channel", format!("must be sms or email, got {channel:?}")));
                }
                Some(FallbackSpec {
                    channel: channel.to_string(),
                    template_id: fb.name("template_id", 200)?,
                })
            }
        };
        let compliance = ComplianceSpec::parse(&f)?;
        let amd = super::amd::AmdSpec::parse(&f)?;
        Ok(CampaignSpec {
            amd,
            name,
            fallback,
            compliance,
            detail: f
                .text_opt("detail", MAX_DETAIL_CHARS)?
                .unwrap_or_default()
                .to_string(),
            outdial_id,
            outplan_id,
            agent_id,
            trunk,
            max_concurrent_calls: f.int_or(
                "max_concurrent_calls",
                1,
                100_000,
                d.max_concurrent_calls,
            )?,
            calls_per_second: f.num_or(
                "calls_per_second",
                MIN_CALLS_PER_SECOND,
                100_000.0,
                false,
                d.calls_per_second,
            )?,
            calling_window,
            schedule,
            priority,
            end_handle,
        })
    }
}

/// One of `choices` by its name, else `default`.
fn choice<T: Copy>(
    f: &Fields<'_>,
    key: &str,
    choices: &[T],
    name: fn(T) -> &'static str,
    default: T,
) -> Result<T, FieldError> {
    let names: Vec<&str> = choices.iter().map(|c| name(*c)).collect();
    let chosen = f.choice_or(key, &names, name(default))?;
    Ok(choices
        .iter()
        .copied()
        .find(|c| name(*c) == chosen)
        .unwrap_or(default))
}

fn parse_schedule(s: &Fields<'_>) -> Result<DailyScheduleSpec, FieldError> {
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
    let timezone = match s.str_opt("timezone")? {
        None => None,
        Some(tz) => Some(
            parse_timezone(&s.path_of("timezone"), tz)?
                .name()
                .to_string(),
        ),
    };
    Ok(DailyScheduleSpec {
        daily_start: start.to_string(),
        days,
        timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn campaign_errors_name_fields() {
        let base = json!({"name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            CampaignSpec::parse(&b).unwrap_err().field
        };
        assert!(CampaignSpec::parse(&base).is_ok());
        assert_eq!(with("calls_per_second", json!(0)), "calls_per_second");
        assert_eq!(with("calls_per_second", json!("25")), "calls_per_second");
        assert_eq!(with("calls_per_second", json!(1e-9)), "calls_per_second");
        assert_eq!(with("calls_per_second", json!("5")), "calls_per_second");
        assert_eq!(with("detail", json!("a\u{0}b")), "detail");
        let mut slow = base.clone();
        slow["calls_per_second"] = json!(MIN_CALLS_PER_SECOND);
        assert!(CampaignSpec::parse(&slow).is_ok());
        assert_eq!(
            with("max_concurrent_calls", json!(-1)),
            "max_concurrent_calls"
        );
        assert_eq!(
            with("max_concurrent_calls", json!("25")),
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
        assert_eq!(
            CampaignSpec::parse(&missing).unwrap_err().field,
            "outplan_id"
        );
    }

    #[test]
    fn choices_parse_into_their_enums() {
        let c = CampaignSpec::parse(&json!({
            "name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a",
            "priority": "emergency", "end_handle": "continue",
        }))
        .unwrap();
        assert_eq!(c.priority, Priority::Emergency);
        assert_eq!(c.end_handle, EndHandle::Continue);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
    }

    #[test]
    fn the_stored_document_keeps_its_shape() {
        let c = CampaignSpec::parse(&json!({
            "name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a",
            "calls_per_second": 25, "schedule": {"daily_start": "09:00", "days": ["Mon"]},
        }))
        .unwrap();
        assert_eq!(
            super::super::to_document(&c),
            json!({
                "name": "c", "detail": "", "outdial_id": "o", "outplan_id": "p", "agent_id": "a",
                "trunk": "default", "max_concurrent_calls": 10, "calls_per_second": 25.0,
                "calling_window": null,
                "schedule": {"daily_start": "09:00", "days": ["mon"], "timezone": null},
                "priority": "normal", "end_handle": "stop",
            })
        );
    }
}
