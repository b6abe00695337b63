//! A campaign's compliance settings: a profile (`compliance_profile`) and
//! its own rules, which may be stricter than the profile's, never looser (a
//! looser one is refused naming the profile's limit).

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::compliance::{Cap, CapScope, Profile, Rules};
use crate::domain::fields::Fields;
use crate::domain::FieldError;

/// At most `max` contacts per `per_days` days, per recipient number, across
/// every campaign and one-off call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSpec {
    pub max: u32,
    pub per_days: u32,
    /// `attempts` (every call placed) or `conversations` (calls that reached
    /// a person).
    pub scope: String,
}

/// The compliance fields of a campaign, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComplianceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compliance_profile: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frequency_caps: Vec<CapSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_after_refusal_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redial_after_machine_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redial_after_abandon_hours: Option<u32>,
    /// A share of live-answered calls (0.03 is 3%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abandon_rate: Option<f64>,
    /// A prompt (shipped, or a WAV under `agents.prompt_dir`) played to a
    /// person answered with no agent to take the call: who called and a
    /// number to call back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandon_prompt: Option<String>,
}

/// The campaign fields this module reads.
pub const FIELDS: [&str; 7] = [
    "compliance_profile",
    "frequency_caps",
    "quiet_after_refusal_days",
    "redial_after_machine_hours",
    "redial_after_abandon_hours",
    "max_abandon_rate",
    "abandon_prompt",
];

impl ComplianceSpec {
    pub fn parse(f: &Fields<'_>) -> Result<ComplianceSpec, FieldError> {
        let names: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
        let profile = match f.get("compliance_profile") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(f.choice_or("compliance_profile", &names, "")?),
        };
        let mut frequency_caps = Vec::new();
        for (i, c) in f
            .array_opt("frequency_caps")?
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = f.path_of(&format!("frequency_caps[{i}]"));
            let c = Fields::new(c, path)?;
            c.deny_unknown(&["max", "per_days", "scope"])?;
            let max = c
                .int_opt("max", 0, 10_000)?
                .ok_or_else(|| c.err("max", "is required"))?;
            let per_days = c
                .int_opt("per_days", 1, 3_650)?
                .ok_or_else(|| c.err("per_days", "is required"))?;
            frequency_caps.push(CapSpec {
                max: max as u32,
                per_days: per_days as u32,
                scope: c.choice_or("scope", &["attempts", "conversations"], "attempts")?,
            });
        }
        if frequency_caps.len() > 8 {
            return Err(f.err("frequency_caps", "at most 8 caps"));
        }
        let u = |key: &str, hi: i64| -> Result<Option<u32>, FieldError> {
            Ok(f.int_opt(key, 0, hi)?.map(|n| n as u32))
        };
        let max_abandon_rate = match f.get("max_abandon_rate") {
            None => None,
            Some(_) => Some(f.num_or("max_abandon_rate", 0.0, 1.0, false, 0.0)?),
        };
        let spec = ComplianceSpec {
            compliance_profile: profile,
            frequency_caps,
            quiet_after_refusal_days: u("quiet_after_refusal_days", 3_650)?,
            redial_after_machine_hours: u("redial_after_machine_hours", 87_600)?,
            redial_after_abandon_hours: u("redial_after_abandon_hours", 87_600)?,
            max_abandon_rate,
            abandon_prompt: f.str_opt("abandon_prompt")?.map(str::to_string),
        };
        if spec
            .abandon_prompt
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.len() > 500)
        {
            return Err(f.err(
                "abandon_prompt",
                "must be a prompt name of 1 to 500 characters",
            ));
        }
        spec.no_looser_than_profile(f)?;
        Ok(spec)
    }

    fn profile(&self) -> Option<Profile> {
        self.compliance_profile.as_deref().and_then(Profile::parse)
    }

    /// A setting looser than its profile's is refused, naming the limit.
    fn no_looser_than_profile(&self, f: &Fields<'_>) -> Result<(), FieldError> {
        let Some(p) = self.profile() else {
            return Ok(());
        };
        let r = p.rules();
        let name = p.as_str();
        if r.abandon_prompt_required && self.abandon_prompt.is_none() {
            return Err(f.err(
                "abandon_prompt",
                format!("is required under {name}: a message naming the caller and a number to call back"),
            ));
        }
        if let (Some(mine), Some(max)) = (self.max_abandon_rate, r.max_abandon_rate) {
            if mine > max {
                return Err(f.err(
                    "max_abandon_rate",
                    format!("may be at most {max} under {name}, got {mine}"),
                ));
            }
        }
        let at_least = |key: &str, mine: Option<u32>, theirs: Option<Duration>, unit: i64| match (
            mine, theirs,
        ) {
            (Some(m), Some(t)) if i64::from(m) * unit < t.num_seconds() => Err(f.err(
                key,
                format!(
                    "must be at least {} under {name}, got {m}",
                    t.num_seconds() / unit
                ),
            )),
            _ => Ok(()),
        };
        at_least(
            "quiet_after_refusal_days",
            self.quiet_after_refusal_days,
            r.quiet_after_refusal,
            86_400,
        )?;
        at_least(
            "redial_after_machine_hours",
            self.redial_after_machine_hours,
            r.redial_after_machine,
            3_600,
        )?;
        at_least(
            "redial_after_abandon_hours",
            self.redial_after_abandon_hours,
            r.redial_after_abandon,
            3_600,
        )?;
        for (i, c) in self.frequency_caps.iter().enumerate() {
            let mine = cap(c);
            for theirs in &r.caps {
                if theirs.scope == mine.scope && mine.per >= theirs.per && mine.max > theirs.max {
                    return Err(FieldError::new(
                        f.path_of(&format!("frequency_caps[{i}].max")),
                        format!(
                            "may be at most {} per {} days under {name}, got {}",
                            theirs.max,
                            theirs.per.num_days(),
                            mine.max
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether any rule applies at all.
    pub fn is_set(&self) -> bool {
        *self != ComplianceSpec::default()
    }

    /// The rules the gate applies: the profile's, tightened by the campaign's.
    pub fn rules(&self) -> Rules {
        let mut r = self.profile().map_or_else(Rules::none, Profile::rules);
        r.caps.extend(self.frequency_caps.iter().map(cap));
        let longer = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let days = |d: Option<u32>| d.map(|d| Duration::days(d.into()));
        let hours = |h: Option<u32>| h.map(|h| Duration::hours(h.into()));
        r.quiet_after_refusal = longer(r.quiet_after_refusal, days(self.quiet_after_refusal_days));
        r.redial_after_machine = longer(
            r.redial_after_machine,
            hours(self.redial_after_machine_hours),
        );
        r.redial_after_abandon = longer(
            r.redial_after_abandon,
            hours(self.redial_after_abandon_hours),
        );
        r.max_abandon_rate = match (r.max_abandon_rate, self.max_abandon_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        r
    }
}

fn cap(c: &CapSpec) -> Cap {
    Cap {
        max: c.max,
        per: Duration::days(c.per_days.into()),
        scope: if c.scope == "conversations" {
            CapScope::Conversations
        } else {
            CapScope::Attempts
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<ComplianceSpec, FieldError> {
        ComplianceSpec::parse(&Fields::new(&v, "").unwrap())
    }

    #[test]
    fn a_setting_looser_than_the_profile_is_refused_naming_its_limit() {
        let e = parse(
            json!({"compliance_profile": "us_tcpa", "max_abandon_rate": 0.05,
                "abandon_prompt": "sorry.wav"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "max_abandon_rate");
        assert!(
            e.reason.contains("at most 0.03 under us_tcpa"),
            "{}",
            e.reason
        );
        let e = parse(json!({"compliance_profile": "fr_consumer", "quiet_after_refusal_days": 30}))
            .unwrap_err();
        assert_eq!(e.field, "quiet_after_refusal_days");
        assert!(
            e.reason.contains("at least 60 under fr_consumer"),
            "{}",
            e.reason
        );
        let e = parse(json!({"compliance_profile": "fr_consumer",
            "frequency_caps": [{"max": 6, "per_days": 30}]}))
        .unwrap_err();
        assert_eq!(e.field, "frequency_caps[0].max");
        assert!(
            e.reason.contains("at most 4 per 30 days under fr_consumer"),
            "{}",
            e.reason
        );
        let e = parse(
            json!({"compliance_profile": "uk_ofcom", "redial_after_machine_hours": 24,
            "abandon_prompt": "sorry.wav"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "redial_after_machine_hours");
        let e = parse(json!({"compliance_profile": "gdpr"})).unwrap_err();
        assert_eq!(e.field, "compliance_profile");
        let e = parse(json!({"compliance_profile": "us_tcpa"})).unwrap_err();
        assert_eq!(e.field, "abandon_prompt");
    }

    #[test]
    fn stricter_settings_tighten_the_profile() {
        let s = parse(
            json!({"compliance_profile": "fr_consumer", "max_abandon_rate": 0.01,
            "frequency_caps": [{"max": 2, "per_days": 7, "scope": "conversations"}],
            "quiet_after_refusal_days": 90}),
        )
        .unwrap();
        let r = s.rules();
        assert_eq!(r.caps.len(), 2);
        assert_eq!(r.quiet_after_refusal, Some(Duration::days(90)));
        assert_eq!(r.max_abandon_rate, Some(0.01));
        assert!(r.reads_history());
        assert_eq!(r.history_span(), Duration::days(90));
        let none = parse(json!({})).unwrap();
        assert!(!none.is_set());
        assert!(!none.rules().reads_history());
    }
}
