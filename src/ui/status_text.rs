//! What the live page says of a campaign's status, for people: why a
//! waiting campaign waits and when it dials again ("outside the calling
//! window — it opens 09:00 America/Chicago, in 2 h 14 min"), and who made
//! each change in its status log. Pure: the time is given.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::campaign::rules::schedule::{schedule_timezone, DailySchedule};
use crate::campaign::rules::window::Window;
use crate::domain::specs::CampaignSpec;
use crate::domain::{CampaignStatus, StatusCause};

/// The status reason to show at `now`: for a waiting campaign, when its
/// window opens or its daily run starts, and how long until then; else the
/// stored reason.
pub fn reason_text(
    status: &str,
    reason: Option<&str>,
    cause: Option<StatusCause>,
    spec: &CampaignSpec,
    now: DateTime<Utc>,
) -> Option<String> {
    if CampaignStatus::parse(status) != Some(CampaignStatus::Waiting) {
        return reason.map(str::to_string);
    }
    if cause == Some(StatusCause::DailyStart) {
        let tz = schedule_timezone(spec);
        let next = spec
            .schedule
            .as_ref()
            .and_then(|s| DailySchedule::from_spec(s).ok())
            .map(|s| (s.next_start(tz, now), s.zone(tz)));
        return Some(match next {
            Some((Some(at), zone)) => {
                format!("waiting for the daily start — {}", when(at, zone, now))
            }
            Some((None, _)) => "waiting for a daily start that no day allows".into(),
            None => reason.unwrap_or("waiting for the next daily start").into(),
        });
    }
    let window = spec
        .calling_window
        .as_ref()
        .and_then(|w| Window::from_spec(w).ok());
    match window {
        Some((w, tz)) => {
            let opens = w.next_opening(tz, now);
            Some(if opens == DateTime::<Utc>::MAX_UTC {
                "outside the calling window, which allows no day".into()
            } else if opens <= now {
                // Open again: the scheduler wakes the campaign on its next tick.
                "the calling window is open; dialing resumes now".into()
            } else {
                format!(
                    "outside the calling window — it opens {}",
                    when(opens, tz, now)
                )
            })
        }
        None => reason.map(str::to_string),
    }
}

/// "09:00 America/Chicago, in 2 h 14 min", with the day when not today.
fn when(at: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> String {
    let local = at.with_timezone(&tz);
    let day = if local.date_naive() == now.with_timezone(&tz).date_naive() {
        String::new()
    } else {
        format!("{} ", local.format("%a %-d %b"))
    };
    format!(
        "{day}{} {}, in {}",
        local.format("%H:%M"),
        tz.name(),
        span((at - now).num_seconds())
    )
}

/// A duration in seconds as "2 h 14 min", "3 d 4 h", "45 s".
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

/// Who made a status change, in words.
pub fn who(by: &str) -> String {
    match by.split_once(':') {
        Some(("api", key)) => format!("key “{key}”, over the API"),
        Some(("console", key)) => format!("key “{key}”, in the console"),
        _ if by == crate::domain::campaign_status::SCHEDULER => "herald's scheduler".into(),
        _ if by == "unknown" => "not recorded".into(),
        _ => by.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(v: serde_json::Value) -> CampaignSpec {
        let mut doc = json!({"name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a"});
        crate::domain::fields::merge_patch(&mut doc, &v);
        CampaignSpec::parse(&doc).unwrap()
    }

    #[test]
    fn a_campaign_waiting_for_its_window_says_when_it_opens_in_its_zone() {
        let s = spec(json!({"calling_window": {"start": "09:00", "end": "17:00",
            "timezone": "America/Chicago", "days": ["mon", "tue", "wed", "thu", "fri"]}}));
        // Tuesday 06:46 in Chicago (CST, UTC-6).
        let now = at("2026-12-01T12:46:00Z");
        let r = reason_text("waiting", Some("outside the calling window"), None, &s, now);
        assert_eq!(
            r.as_deref(),
            Some("outside the calling window — it opens 09:00 America/Chicago, in 2 h 14 min")
        );
        // Friday evening: Monday's opening, with its day.
        let fri = at("2026-12-05T00:30:00Z");
        let r = reason_text("waiting", None, None, &s, fri).unwrap();
        assert_eq!(
            r,
            "outside the calling window — it opens Mon 7 Dec 09:00 America/Chicago, in 2 d 14 h"
        );
    }

    #[test]
    fn other_statuses_keep_their_stored_reason() {
        let s = spec(json!({}));
        let now = at("2026-12-01T12:00:00Z");
        let r = reason_text("paused", Some("paused by request"), None, &s, now);
        assert_eq!(r.as_deref(), Some("paused by request"));
        assert_eq!(reason_text("running", None, None, &s, now), None);
    }

    #[test]
    fn a_daily_wait_names_the_next_start() {
        let s = spec(
            json!({"schedule": {"daily_start": "08:30", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "timezone": "Europe/Paris"}}),
        );
        // 07:00 in Paris (UTC+1).
        let now = at("2026-12-01T06:00:00Z");
        let r = reason_text("waiting", None, Some(StatusCause::DailyStart), &s, now).unwrap();
        assert_eq!(
            r,
            "waiting for the daily start — 08:30 Europe/Paris, in 1 h 30 min"
        );
    }

    #[test]
    fn spans_and_callers_read_as_words() {
        assert_eq!(span(45), "45 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(8_040), "2 h 14 min");
        assert_eq!(span(-3), "0 s");
        assert_eq!(who("console:ops lead"), "key “ops lead”, in the console");
        assert_eq!(who("api:ci"), "key “ci”, over the API");
        assert_eq!(who("scheduler"), "herald's scheduler");
        assert_eq!(who("unknown"), "not recorded");
    }
}
