//! Calling windows: which local hours and weekdays a target may be called in.
//! Validation lives here; the "is `now` inside / when is the next opening"
//! rules come with the scheduler.

use chrono::{NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::FieldError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingWindow {
    pub timezone: String,
    #[serde(default = "all_days")]
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

fn all_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Parses `HH:MM` (24-hour).
pub fn parse_hhmm(field: &str, s: &str) -> Result<NaiveTime, FieldError> {
    let bad = || FieldError::new(field, format!("must be HH:MM (24-hour), got {s:?}"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// Parses a weekday name: `mon`..`sun` (or the full English name).
pub fn parse_weekday(field: &str, s: &str) -> Result<Weekday, FieldError> {
    let d = match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => {
            return Err(FieldError::new(
                field,
                format!("unknown weekday {s:?}: use mon, tue, wed, thu, fri, sat or sun"),
            ))
        }
    };
    Ok(d)
}

impl CallingWindow {
    /// Checks every field; `start` must come before `end`.
    pub fn validate(&self) -> Result<(), FieldError> {
        super::parse_timezone("timezone", &self.timezone)?;
        if self.days.is_empty() {
            return Err(FieldError::new("days", "must name at least one weekday"));
        }
        for (i, d) in self.days.iter().enumerate() {
            parse_weekday(&format!("days[{i}]"), d)?;
        }
        let start = parse_hhmm("start", &self.start)?;
        let end = parse_hhmm("end", &self.end)?;
        if start >= end {
            return Err(FieldError::new(
                "end",
                format!("must be after start ({} >= {})", self.start, self.end),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm_is_strict() {
        assert!(parse_hhmm("start", "09:00").is_ok());
        assert!(parse_hhmm("start", "23:59").is_ok());
        for bad in ["9:00", "24:00", "09:60", "0900", "09:00:00", "ab:cd"] {
            assert_eq!(
                parse_hhmm("start", bad).unwrap_err().field,
                "start",
                "{bad}"
            );
        }
    }

    #[test]
    fn window_errors_name_the_field() {
        let mut w = CallingWindow {
            timezone: "America/Chicago".into(),
            days: vec!["mon".into(), "fri".into()],
            start: "09:00".into(),
            end: "20:00".into(),
        };
        assert!(w.validate().is_ok());
        w.days.push("funday".into());
        assert_eq!(w.validate().unwrap_err().field, "days[2]");
        w.days.pop();
        w.timezone = "Mars/Olympus".into();
        assert_eq!(w.validate().unwrap_err().field, "timezone");
        w.timezone = "UTC".into();
        w.end = "08:00".into();
        assert_eq!(w.validate().unwrap_err().field, "end");
    }
}
