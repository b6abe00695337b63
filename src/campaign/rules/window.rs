//! Calling windows in a time zone: whether an instant is inside, when the
//! next opening is, when the current opening closes.
//!
//! Owns the local-time → instant rule used by every campaign rule: a local
//! time skipped by a DST change resolves to the first valid instant after it;
//! an ambiguous one (repeated by a DST change) resolves to the earlier instant.
//! Each day's opening is the half-open interval `[start, end)` of those
//! resolved instants, so a window that straddles a change is exactly as long
//! as the clocks make it. Must not read the clock: callers pass `now`.

use crate::domain::window::{parse_hhmm, parse_weekday, CallingWindow};
use crate::domain::{parse_timezone, FieldError};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Weekdays (Monday first) and local hours in which dialing is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Monday..Sunday.
    pub days: [bool; 7],
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// Longest stretch scanned for an opening; any window with at least one day
/// opens within eight days, the rest covers dates a DST change emptied.
const SCAN_DAYS: i64 = 15;

/// The instant a local wall-clock time denotes in `tz`: skipped times move to
/// the first valid instant after them, repeated times take the earlier one.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Inside a gap: the first valid local minute after it is the
            // instant the clocks jumped.
            for minutes in 1..=(48 * 60) {
                let later = local + Duration::minutes(minutes);
                match tz.from_local_datetime(&later) {
                    LocalResult::Single(t) => return t.with_timezone(&Utc),
                    LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
                    LocalResult::None => {}
                }
            }
            // No zone skips two days; read the time as UTC rather than fail.
            local.and_utc()
        }
    }
}

/// Parses weekday names (`mon`..`sun`); an empty list means every day.
pub(crate) fn parse_days(field: &str, names: &[String]) -> Result<[bool; 7], FieldError> {
    if names.is_empty() {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for (i, name) in names.iter().enumerate() {
        let path = format!("{field}[{i}]");
        days[parse_weekday(&path, name)?.num_days_from_monday() as usize] = true;
    }
    Ok(days)
}

impl Window {
    /// The window of a campaign's `calling_window`, and its zone. A document
    /// that got past `CampaignSpec::parse` always reads; the error names the
    /// field of one that did not.
    pub fn from_spec(calling_window: &CallingWindow) -> Result<(Window, Tz), FieldError> {
        let tz = parse_timezone("timezone", &calling_window.timezone)?;
        let days = parse_days("days", &calling_window.days)?;
        let start = parse_hhmm("start", &calling_window.start)?;
        let end = parse_hhmm("end", &calling_window.end)?;
        if start >= end {
            return Err(FieldError::new("end", "must be after start"));
        }
        Ok((Window { days, start, end }, tz))
    }

    /// The opening on local date `date`, if that weekday is allowed and the
    /// DST change of that day (if any) leaves it non-empty.
    fn opening_on(&self, tz: Tz, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.days[date.weekday().num_days_from_monday() as usize] {
            return None;
        }
        let open = resolve_local(tz, date.and_time(self.start));
        let close = resolve_local(tz, date.and_time(self.end));
        (open < close).then_some((open, close))
    }

    /// Whether dialing is allowed at `now` in `tz`.
    pub fn is_open(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        self.closes_at(tz, now).is_some()
    }

    /// The first instant at or after `from` at which the window is open:
    /// `from` itself when open. A window with no day never opens: the answer
    /// is then `DateTime::<Utc>::MAX_UTC`.
    pub fn next_opening(&self, tz: Tz, from: DateTime<Utc>) -> DateTime<Utc> {
        let today = from.with_timezone(&tz).date_naive();
        for offset in 0..SCAN_DAYS {
            let Some(date) = today.checked_add_signed(Duration::days(offset)) else {
                break;
            };
            if let Some((open, close)) = self.opening_on(tz, date) {
                if close > from {
                    return open.max(from);
                }
            }
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// When the opening that contains `now` closes; `None` when closed now.
    pub fn closes_at(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&tz).date_naive();
        let (open, close) = self.opening_on(tz, today)?;
        (open <= now && now < close).then_some(close)
    }

    /// When a dial planned for `at` may happen: `at` itself inside the window,
    /// else the next opening (never earlier than `at`, never dropped).
    pub fn dial_time(&self, tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
        self.next_opening(tz, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::London;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn every_day(start: NaiveTime, end: NaiveTime) -> Window {
        Window {
            days: [true; 7],
            start,
            end,
        }
    }

    fn weekdays_9_to_17() -> Window {
        Window {
            days: [true, true, true, true, true, false, false],
            start: hm(9, 0),
            end: hm(17, 0),
        }
    }

    fn calling_window(v: serde_json::Value) -> CallingWindow {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn spec_with_days_and_zone_is_read() {
        let (w, tz) = Window::from_spec(&calling_window(json!({
            "timezone": "America/Chicago", "days": ["mon", "fri"], "start": "09:00", "end": "20:00"
        })))
        .unwrap();
        assert_eq!(tz, chrono_tz::America::Chicago);
        assert_eq!(w.days, [true, false, false, false, true, false, false]);
        assert_eq!((w.start, w.end), (hm(9, 0), hm(20, 0)));
    }

    #[test]
    fn bad_spec_names_its_field() {
        let bad =
            calling_window(json!({"timezone": "Mars/Base", "start": "09:00", "end": "17:00"}));
        assert_eq!(Window::from_spec(&bad).unwrap_err().field, "timezone");
        let reversed = calling_window(json!({"timezone": "UTC", "start": "17:00", "end": "09:00"}));
        assert_eq!(Window::from_spec(&reversed).unwrap_err().field, "end");
        let (w, _) = Window::from_spec(&calling_window(
            json!({"timezone": "UTC", "start": "09:00", "end": "17:00"}),
        ))
        .unwrap();
        assert_eq!(w.days, [true; 7], "absent days means every day");
        let (w, _) = Window::from_spec(&calling_window(
            json!({"timezone": "UTC", "days": [], "start": "09:00", "end": "17:00"}),
        ))
        .unwrap();
        assert_eq!(w.days, [true; 7], "an empty list means every day");
    }

    #[test]
    fn window_is_open_from_start_inclusive_to_end_exclusive() {
        let w = weekdays_9_to_17();
        // Friday 2026-11-20, EST (UTC-5).
        assert!(!w.is_open(New_York, utc("2026-11-20T13:59:59Z")));
        assert!(w.is_open(New_York, utc("2026-11-20T14:00:00Z")));
        assert!(w.is_open(New_York, utc("2026-11-20T21:59:59Z")));
        assert!(!w.is_open(New_York, utc("2026-11-20T22:00:00Z")));
        assert_eq!(
            w.closes_at(New_York, utc("2026-11-20T15:00:00Z")),
            Some(utc("2026-11-20T22:00:00Z"))
        );
        assert_eq!(w.closes_at(New_York, utc("2026-11-20T23:00:00Z")), None);
    }

    #[test]
    fn next_opening_is_now_when_open() {
        let w = weekdays_9_to_17();
        let now = utc("2026-11-20T15:00:00Z");
        assert_eq!(w.next_opening(New_York, now), now);
    }

    #[test]
    fn weekends_are_skipped() {
        let w = weekdays_9_to_17();
        // Friday 17:30 EST → Monday 09:00 EST.
        assert_eq!(
            w.next_opening(New_York, utc("2026-11-20T22:30:00Z")),
            utc("2026-11-23T14:00:00Z")
        );
        // Saturday noon is closed.
        assert!(!w.is_open(New_York, utc("2026-11-21T17:00:00Z")));
    }

    #[test]
    fn before_the_start_the_opening_is_the_same_day() {
        let w = weekdays_9_to_17();
        assert_eq!(
            w.next_opening(New_York, utc("2026-11-20T12:00:00Z")),
            utc("2026-11-20T14:00:00Z")
        );
    }

    #[test]
    fn retry_due_outside_the_window_moves_to_the_next_opening_never_earlier() {
        let w = weekdays_9_to_17();
        for due in [
            "2026-11-20T22:00:00Z", // Friday at the close
            "2026-11-21T03:00:00Z", // Friday night
            "2026-11-22T16:00:00Z", // Sunday
            "2026-11-23T13:59:00Z", // Monday just before
        ] {
            let due = utc(due);
            let at = w.dial_time(New_York, due);
            assert_eq!(at, utc("2026-11-23T14:00:00Z"), "{due}");
            assert!(at >= due);
            assert!(w.is_open(New_York, at));
        }
        let inside = utc("2026-11-23T18:00:00Z");
        assert_eq!(w.dial_time(New_York, inside), inside);
    }

    #[test]
    fn new_york_spring_forward_keeps_local_hours() {
        // 2026-03-08: 02:00 EST → 03:00 EDT. 09:00 local is 13:00Z (EDT).
        let w = every_day(hm(9, 0), hm(17, 0));
        assert_eq!(
            w.next_opening(New_York, utc("2026-03-08T05:00:00Z")),
            utc("2026-03-08T13:00:00Z")
        );
        // The day before, 09:00 EST was 14:00Z.
        assert_eq!(
            w.next_opening(New_York, utc("2026-03-07T05:00:00Z")),
            utc("2026-03-07T14:00:00Z")
        );
        assert!(
            !w.is_open(New_York, utc("2026-03-08T21:00:00Z")),
            "17:00 EDT"
        );
    }

    #[test]
    fn start_in_the_skipped_hour_opens_at_the_first_valid_instant_after_it() {
        // 02:30 does not exist on 2026-03-08 in New York; 03:00 EDT = 07:00Z.
        let w = every_day(hm(2, 30), hm(5, 0));
        assert_eq!(
            w.next_opening(New_York, utc("2026-03-08T00:00:00Z")),
            utc("2026-03-08T07:00:00Z")
        );
        assert!(!w.is_open(New_York, utc("2026-03-08T06:59:59Z")));
        assert!(w.is_open(New_York, utc("2026-03-08T07:00:00Z")));
        // The window wholly inside the gap is empty that day: next day 02:30 EDT.
        let w = every_day(hm(2, 10), hm(2, 50));
        assert_eq!(
            w.next_opening(New_York, utc("2026-03-08T00:00:00Z")),
            utc("2026-03-09T06:10:00Z")
        );
    }

    #[test]
    fn ambiguous_start_on_fall_back_uses_the_earlier_instant() {
        // 2026-11-01: 01:30 happens at 05:30Z (EDT) and 06:30Z (EST).
        let w = every_day(hm(1, 30), hm(4, 0));
        assert_eq!(
            w.next_opening(New_York, utc("2026-11-01T03:00:00Z")),
            utc("2026-11-01T05:30:00Z")
        );
        // 04:00 EST = 09:00Z: the window lasts 3.5 hours of real time.
        assert_eq!(
            w.closes_at(New_York, utc("2026-11-01T05:30:00Z")),
            Some(utc("2026-11-01T09:00:00Z"))
        );
    }

    #[test]
    fn window_spanning_fall_back_is_an_hour_longer() {
        // 00:00–06:00 local on 2026-11-01 covers 04:00Z..11:00Z: seven hours.
        let w = every_day(hm(0, 0), hm(6, 0));
        let open = w.next_opening(New_York, utc("2026-11-01T03:00:00Z"));
        let close = w.closes_at(New_York, open).unwrap();
        assert_eq!(open, utc("2026-11-01T04:00:00Z"));
        assert_eq!(close - open, Duration::hours(7));
        assert!(
            w.is_open(New_York, utc("2026-11-01T06:30:00Z")),
            "second 01:30"
        );
    }

    #[test]
    fn window_spanning_spring_forward_is_an_hour_shorter() {
        let w = every_day(hm(0, 0), hm(6, 0));
        let open = w.next_opening(New_York, utc("2026-03-08T04:00:00Z"));
        assert_eq!(open, utc("2026-03-08T05:00:00Z"));
        assert_eq!(
            w.closes_at(New_York, open).unwrap() - open,
            Duration::hours(5)
        );
    }

    #[test]
    fn london_spring_forward_and_fall_back() {
        let w = every_day(hm(9, 0), hm(17, 0));
        // 2026-03-29 01:00 GMT → 02:00 BST: 09:00 BST = 08:00Z.
        assert_eq!(
            w.next_opening(London, utc("2026-03-29T00:30:00Z")),
            utc("2026-03-29T08:00:00Z")
        );
        assert_eq!(
            w.next_opening(London, utc("2026-03-28T00:30:00Z")),
            utc("2026-03-28T09:00:00Z")
        );
        // 2026-10-25 02:00 BST → 01:00 GMT: 09:00 GMT = 09:00Z.
        assert_eq!(
            w.next_opening(London, utc("2026-10-25T00:30:00Z")),
            utc("2026-10-25T09:00:00Z")
        );
        // Skipped 01:30 in London opens at 02:00 BST = 01:00Z.
        let w = every_day(hm(1, 30), hm(3, 0));
        assert_eq!(
            w.next_opening(London, utc("2026-03-29T00:00:00Z")),
            utc("2026-03-29T01:00:00Z")
        );
        // Repeated 01:30 in London uses the BST one (00:30Z).
        assert_eq!(
            w.next_opening(London, utc("2026-10-25T00:00:00Z")),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn validated_campaign_window_is_read() {
        let campaign = crate::domain::specs::CampaignSpec::parse(&json!({
            "name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a",
            "calling_window": {"timezone": "Europe/London", "days": ["sat", "sun"], "start": "10:00", "end": "12:30"}
        }))
        .unwrap();
        let (w, tz) = Window::from_spec(campaign.calling_window.as_ref().unwrap()).unwrap();
        assert_eq!(tz, London);
        assert_eq!(w.days, [false, false, false, false, false, true, true]);
        assert_eq!((w.start, w.end), (hm(10, 0), hm(12, 30)));
    }

    #[test]
    fn next_opening_is_an_open_boundary_all_year_in_new_york_and_london() {
        // 01:30–02:30 touches both DST changes (Sundays) in both zones.
        let w = Window {
            days: [true, false, true, false, true, true, true],
            start: hm(1, 30),
            end: hm(2, 30),
        };
        for tz in [New_York, London] {
            let mut from = utc("2026-01-01T00:00:00Z");
            while from < utc("2027-01-01T00:00:00Z") {
                let open = w.next_opening(tz, from);
                assert!(open >= from, "{tz} {from}");
                assert!(open - from < Duration::days(4), "{tz} {from} → {open}");
                assert!(w.is_open(tz, open), "{tz} {from} → {open}");
                if open > from {
                    assert!(!w.is_open(tz, from), "{tz} {from}");
                    assert!(!w.is_open(tz, open - Duration::seconds(1)), "{tz} {open}");
                    assert_eq!(w.next_opening(tz, open - Duration::seconds(1)), open);
                }
                let close = w.closes_at(tz, open).unwrap();
                assert!(
                    close > open && close - open <= Duration::hours(2),
                    "{tz} {open}"
                );
                assert!(!w.is_open(tz, close), "{tz} {close}");
                from += Duration::minutes(37);
            }
        }
    }

    #[test]
    fn a_window_with_no_day_never_opens() {
        let w = Window {
            days: [false; 7],
            start: hm(9, 0),
            end: hm(17, 0),
        };
        let now = utc("2026-11-20T15:00:00Z");
        assert!(!w.is_open(New_York, now));
        assert_eq!(w.next_opening(New_York, now), DateTime::<Utc>::MAX_UTC);
    }
}
