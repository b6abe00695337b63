//! One-off call requests (`POST /v1/calls`, the seed API's `outboundCalls.create`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compliance::{self, ComplianceSpec};
use super::DAY_S;
use crate::domain::destination::{validate_e164, validate_sip_uri};
use crate::domain::fields::Fields;
use crate::domain::target::CONSENT_LEVELS;
use crate::domain::{parse_timezone, FieldError};

/// When a one-off call is dialed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleType {
    /// At once.
    #[default]
    Immediate,
    /// At `scheduled_at` (at once if that has passed).
    Scheduled,
}

impl ScheduleType {
    pub const ALL: [ScheduleType; 2] = [ScheduleType::Immediate, ScheduleType::Scheduled];

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleType::Immediate => "immediate",
            ScheduleType::Scheduled => "scheduled",
        }
    }
}

/// A parsed one-off call request, as stored with the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallRequest {
    /// An E.164 number or a SIP URI.
    pub to: String,
    /// The caller id (E.164); the trunk's when `None`.
    pub from: Option<String>,
    pub agent_id: Option<String>,
    pub trunk: String,
    pub schedule_type: ScheduleType,
    /// Epoch milliseconds; set exactly when `schedule_type` is `scheduled`.
    pub scheduled_at: Option<i64>,
    /// Seconds.
    pub max_duration: u32,
    /// Tries after the first.
    pub max_retries: u32,
    /// Seconds.
    pub ring_timeout: u32,
    /// Seconds between tries.
    pub retry_delay: u32,
    /// The callee's zone (IANA), for a compliance profile's calling hours;
    /// else inferred from the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The consent on record: `none`, `express` or `express_written`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// A compliance profile and stricter rules, as on a campaign.
    #[serde(flatten)]
    pub compliance: ComplianceSpec,
    /// Answering-machine detection after the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd: Option<super::amd::AmdSpec>,
}

impl Default for CallRequest {
    fn default() -> Self {
        CallRequest {
            to: String::new(),
            from: None,
            agent_id: None,
            trunk: "default".to_string(),
            schedule_type: ScheduleType::default(),
            scheduled_at: None,
            max_duration: 3600,
            max_retries: 0,
            ring_timeout: 30,
            retry_delay: 60,
            timezone: None,
            consent: None,
            compliance: ComplianceSpec::default(),
            amd: None,
        }
    }
}

impl CallRequest {
    /// Parses a request body. A `scheduled_at` in the past dials at once.
    pub fn parse(v: &Value) -> Result<CallRequest, FieldError> {
        let f = Fields::new(v, "")?;
        f.deny_unknown(
            &[
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
                "timezone",
                "consent",
                "amd",
            ]
            .iter()
            .chain(&compliance::FIELDS)
            .copied()
            .collect::<Vec<_>>(),
        )?;
        let d = CallRequest::default();
        let to = f.str_req("to")?.trim();
        if to.starts_with("sip:") || to.starts_with("sips:") {
            validate_sip_uri(to).map_err(|r| f.err("to", r))?;
        } else {
            validate_e164(to).map_err(|r| f.err("to", r))?;
        }
        let from = match f.str_opt("from")? {
            None => None,
            Some(c) => {
                validate_e164(c.trim()).map_err(|r| f.err("from", r))?;
                Some(c.trim().to_string())
            }
        };
        let names = ScheduleType::ALL.map(ScheduleType::as_str);
        let schedule_type = match f
            .choice_or("schedule_type", &names, d.schedule_type.as_str())?
            .as_str()
        {
            "scheduled" => ScheduleType::Scheduled,
            _ => ScheduleType::Immediate,
        };
        let scheduled_at = f.timestamp_opt("scheduled_at")?;
        match (schedule_type, scheduled_at) {
            (ScheduleType::Scheduled, None) => {
                return Err(f.err(
                    "scheduled_at",
                    "is required when schedule_type is \"scheduled\"",
                ))
            }
            (ScheduleType::Immediate, Some(_)) => {
                return Err(f.err("scheduled_at", "only goes with schedule_type \"scheduled\""))
            }
            _ => {}
        }
        let timezone = match f.str_opt("timezone")? {
            None => None,
            Some(tz) => Some(parse_timezone("timezone", tz.trim())?.name().to_string()),
        };
        let consent = match f.str_opt("consent")? {
            None => None,
            Some(c) if CONSENT_LEVELS.contains(&c) => Some(c.to_string()),
            Some(c) => {
                return Err(f.err(
                    "consent",
                    format!("must be one of {}, got {c:?}", CONSENT_LEVELS.join(", ")),
                ))
            }
        };
        Ok(CallRequest {
            timezone,
            consent,
            compliance: ComplianceSpec::parse(&f)?,
            amd: super::amd::AmdSpec::parse(&f)?,
            to: to.to_string(),
            from,
            agent_id: f.str_opt("agent_id")?.map(str::to_string),
            trunk: f.str_opt("trunk")?.map_or(d.trunk, str::to_string),
            schedule_type,
            scheduled_at,
            max_duration: f.int_or("max_duration", 1, DAY_S, d.max_duration)?,
            max_retries: f.int_or("max_retries", 0, 10, d.max_retries)?,
            ring_timeout: f.int_or("ring_timeout", 5, 600, d.ring_timeout)?,
            retry_delay: f.int_or("retry_delay", 0, DAY_S, d.retry_delay)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_requests_are_checked_field_by_field() {
        let e = |v: Value| CallRequest::parse(&v).unwrap_err().field;
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
        assert_eq!(
            e(json!({"to": "+15551234567", "ring_timeout": "25"})),
            "ring_timeout"
        );
        let ok = CallRequest::parse(
            &json!({"to": "sip:desk@127.0.0.1:5070", "schedule_type": "scheduled",
            "scheduled_at": "2026-11-22T10:00:00Z", "max_retries": 2}),
        )
        .unwrap();
        assert_eq!(ok.trunk, "default");
        assert_eq!(ok.scheduled_at, Some(1_795_341_600_000));
        assert_eq!(ok.max_retries, 2);
    }

    #[test]
    fn the_stored_document_keeps_its_shape() {
        let c = CallRequest::parse(&json!({"to": " +15551234567 ", "agent_id": "a"})).unwrap();
        assert_eq!(
            super::super::to_document(&c),
            json!({
                "to": "+15551234567", "from": null, "agent_id": "a", "trunk": "default",
                "schedule_type": "immediate", "scheduled_at": null, "max_duration": 3600,
                "max_retries": 0, "ring_timeout": 30, "retry_delay": 60,
            })
        );
    }
}
