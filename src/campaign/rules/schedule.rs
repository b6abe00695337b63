//! Daily runs: a campaign with `schedule: {daily_start, days, timezone}`
//! wakes at `daily_start` local time on each listed day (every day when the
//! list is empty), in the schedule's zone, else the calling window's, else UTC.
//!
//! How the scheduler uses it: each loop it asks [`daily_gate`] with `now` and
//! the instant the current day's run last drained (nothing left to dial that
//! day). `Open` → dial; `Waiting { until }` → campaign status `waiting`,
//! sleep (on the runtime's timer) until `until`. A run that is still busy at
//! local midnight stops at the day change and resumes at the next start.
//!
//! Must not read the clock: `now` is an input. Local times skipped or
//! repeated by DST follow `window::resolve_local`.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use super::window::{parse_days, resolve_local};
use crate::domain::specs::{CampaignSpec, DailyScheduleSpec};
use crate::domain::window::parse_hhmm;
use crate::domain::{parse_timezone, FieldError};

/// A parsed `schedule` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailySchedule {
    pub start: NaiveTime,
    /// Monday..Sunday.
    pub days: [bool; 7],
    /// The schedule's own zone; `None` means the caller's fallback.
    pub timezone: Option<Tz>,
}

/// What the scheduler does about the daily schedule right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DailyGate {
    /// Today's run began at `run_started`; dial.
    Open { run_started: DateTime<Utc> },
    /// Do not dial before `until` (the next daily start).
    Waiting { until: DateTime<Utc> },
}

impl DailySchedule {
    /// The schedule of a campaign's `schedule`. A document that got past
    /// `CampaignSpec::parse` always reads; the error names the field of one
    /// that did not.
    pub fn from_spec(schedule: &DailyScheduleSpec) -> Result<DailySchedule, FieldError> {
        let start = parse_hhmm("daily_start", &schedule.daily_start)?;
        let days = parse_days("days", &schedule.days)?;
        let timezone = match &schedule.timezone {
            None => None,
            Some(name) => Some(parse_timezone("timezone", name)?),
        };
        Ok(DailySchedule {
            start,
            days,
            timezone,
        })
    }

    fn start_on(&self, tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
        self.days[date.weekday().num_days_from_monday() as usize]
            .then(|| resolve_local(tz, date.and_time(self.start)))
    }

    /// The zone the schedule runs in.
    pub fn zone(&self, fallback_tz: Tz) -> Tz {
        self.timezone.unwrap_or(fallback_tz)
    }

    /// The first daily start strictly after `after`; `None` when no day is allowed.
    pub fn next_start(&self, fallback_tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.zone(fallback_tz);
        let today = after.with_timezone(&tz).date_naive();
        (0..9)
            .filter_map(|i| today.checked_add_signed(Duration::days(i)))
            .filter_map(|d| self.start_on(tz, d))
            .find(|start| *start > after)
    }

    /// Today's start (local date of `now`) if today is a run day and it has
    /// passed; `None` otherwise.
    pub fn started_today(&self, fallback_tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.zone(fallback_tz);
        self.start_on(tz, now.with_timezone(&tz).date_naive())
            .filter(|start| *start <= now)
    }
}

/// The zone a campaign's schedule runs in: `schedule.timezone`, else
/// `calling_window.timezone`, else UTC.
pub fn schedule_timezone(campaign: &CampaignSpec) -> Tz {
    let named = |name: Option<&String>| name?.parse::<Tz>().ok();
    named(campaign.schedule.as_ref().and_then(|s| s.timezone.as_ref()))
        .or_else(|| named(campaign.calling_window.as_ref().map(|w| &w.timezone)))
        .unwrap_or(Tz::UTC)
}

/// Whether a scheduled campaign may dial at `now`. `drained_at` is when the
/// scheduler last found nothing left to dial in a run (`None` if never). Today's
/// run is open from today's start until it drains; otherwise the campaign waits
/// for the next start. A schedule with no day waits forever (`MAX_UTC`).
pub fn daily_gate(
    schedule: &DailySchedule,
    fallback_tz: Tz,
    now: DateTime<Utc>,
    drained_at: Option<DateTime<Utc>>,
) -> DailyGate {
    if let Some(start) = schedule.started_today(fallback_tz, now) {
        if drained_at.is_none_or(|d| d < start) {
            return DailyGate::Open { run_started: start };
        }
    }
    DailyGate::Waiting {
        until: schedule
            .next_start(fallback_tz, now)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Chicago, New_York};
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(v: serde_json::Value) -> DailySchedule {
        DailySchedule::from_spec(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn nine_weekdays() -> DailySchedule {
        schedule(json!({
            "daily_start": "09:00", "days": ["mon", "tue", "wed", "thu", "fri"], "timezone": "America/New_York"
        }))
    }

    fn campaign(v: serde_json::Value) -> CampaignSpec {
        let mut base = json!({"name": "c", "outdial_id": "o", "outplan_id": "p", "agent_id": "a"});
        crate::domain::fields::merge_patch(&mut base, &v);
        CampaignSpec::parse(&base).unwrap()
    }

    #[test]
    fn validated_campaign_schedule_is_read() {
        let c = campaign(json!({"schedule": {"daily_start": "09:00"}}));
        let s = DailySchedule::from_spec(c.schedule.as_ref().unwrap()).unwrap();
        assert_eq!(s.start, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(s.days, [true; 7], "empty days means every day");
        assert_eq!(s.timezone, None);
        let bad: DailyScheduleSpec = serde_json::from_value(json!({"daily_start": "9am"})).unwrap();
        assert_eq!(
            DailySchedule::from_spec(&bad).unwrap_err().field,
            "daily_start"
        );
    }

    #[test]
    fn schedule_zone_falls_back_to_the_window_then_utc() {
        let window = json!({"timezone": "America/Chicago", "start": "09:00", "end": "17:00"});
        assert_eq!(
            schedule_timezone(&campaign(
                json!({"schedule": {"daily_start": "09:00", "timezone": "Europe/London"}, "calling_window": window})
            )),
            chrono_tz::Europe::London
        );
        assert_eq!(
            schedule_timezone(&campaign(
                json!({"schedule": {"daily_start": "09:00", "timezone": null}, "calling_window": window})
            )),
            Chicago
        );
        assert_eq!(schedule_timezone(&campaign(json!({}))), Tz::UTC);
    }

    #[test]
    fn next_daily_start_is_later_today_before_the_start() {
        let s = schedule(json!({"daily_start": "09:00", "days": [], "timezone": null}));
        assert_eq!(
            s.next_start(Chicago, utc("2026-11-20T12:00:00Z")),
            Some(utc("2026-11-20T15:00:00Z"))
        );
    }

    #[test]
    fn next_daily_start_is_tomorrow_at_or_after_the_start() {
        let s = schedule(json!({"daily_start": "09:00"}));
        assert_eq!(
            s.next_start(Chicago, utc("2026-11-20T15:00:00Z")),
            Some(utc("2026-11-21T15:00:00Z"))
        );
    }

    #[test]
    fn daily_start_skips_days_not_listed() {
        // Friday after the start → Monday 09:00 EST.
        assert_eq!(
            nine_weekdays().next_start(Chicago, utc("2026-11-20T15:00:00Z")),
            Some(utc("2026-11-23T14:00:00Z"))
        );
    }

    #[test]
    fn daily_start_keeps_local_time_across_dst() {
        let s = nine_weekdays();
        // Friday 2026-03-06 after the start → Monday 2026-03-09 09:00 EDT = 13:00Z.
        assert_eq!(
            s.next_start(Chicago, utc("2026-03-06T20:00:00Z")),
            Some(utc("2026-03-09T13:00:00Z"))
        );
        // Friday 2026-10-30 → Monday 2026-11-02 09:00 EST = 14:00Z.
        assert_eq!(
            s.next_start(Chicago, utc("2026-10-30T20:00:00Z")),
            Some(utc("2026-11-02T14:00:00Z"))
        );
        // A start in the skipped hour runs at 03:00 EDT.
        let early = DailySchedule {
            start: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            days: [true; 7],
            timezone: None,
        };
        assert_eq!(
            early.next_start(New_York, utc("2026-03-08T05:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn campaign_waits_before_todays_start_and_opens_at_it() {
        let s = nine_weekdays();
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-20T13:00:00Z"), None),
            DailyGate::Waiting {
                until: utc("2026-11-20T14:00:00Z")
            }
        );
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-20T14:00:00Z"), None),
            DailyGate::Open {
                run_started: utc("2026-11-20T14:00:00Z")
            }
        );
    }

    #[test]
    fn drained_run_waits_until_the_next_daily_start() {
        let s = nine_weekdays();
        let drained = Some(utc("2026-11-20T16:00:00Z"));
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-20T16:05:00Z"), drained),
            DailyGate::Waiting {
                until: utc("2026-11-23T14:00:00Z")
            }
        );
        // A drain from an earlier day does not hold today's run back.
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-23T14:30:00Z"), drained),
            DailyGate::Open {
                run_started: utc("2026-11-23T14:00:00Z")
            }
        );
    }

    #[test]
    fn run_days_not_listed_wait_even_after_the_start_hour() {
        let s = nine_weekdays();
        // Saturday noon EST.
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-21T17:00:00Z"), None),
            DailyGate::Waiting {
                until: utc("2026-11-23T14:00:00Z")
            }
        );
        assert_eq!(s.started_today(Chicago, utc("2026-11-21T17:00:00Z")), None);
    }

    #[test]
    fn schedule_without_days_waits_forever() {
        let s = DailySchedule {
            days: [false; 7],
            ..nine_weekdays()
        };
        assert_eq!(
            daily_gate(&s, Chicago, utc("2026-11-20T15:00:00Z"), None),
            DailyGate::Waiting {
                until: DateTime::<Utc>::MAX_UTC
            }
        );
    }
}
