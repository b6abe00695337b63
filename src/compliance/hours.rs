//! Hours in which a profile lets people be called: per weekday, one or more
//! local intervals, no calls on the dates of a holiday table. Local times
//! resolve to instants as campaign windows do (`rules::window::resolve_local`:
//! a time skipped by a DST change is the first instant after it, a repeated
//! one the earlier), so an interval that straddles a change is as long as the
//! clocks make it.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::campaign::rules::window::resolve_local;

/// Local intervals `[start, end)` for each weekday, Monday first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    pub days: [Vec<(NaiveTime, NaiveTime)>; 7],
    /// Dates on which nobody is called.
    pub holidays: Option<&'static Holidays>,
}

/// A table of dates, and the last date it covers.
#[derive(Debug, PartialEq, Eq)]
pub struct Holidays {
    pub name: &'static str,
    pub dates: BTreeSet<NaiveDate>,
    pub covers_until: NaiveDate,
}

/// When a time is allowed, and if not, why and from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    Now,
    /// Not now; the first allowed instant after.
    From(DateTime<Utc>, Closed),
    /// Not within the holiday table's years: the gate does not guess.
    Unknown,
}

/// Why the hours are closed at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    OutsideHours,
    Holiday,
}

/// France's public holidays, from `holidays_fr.txt` (source and years there).
pub static FR_HOLIDAYS: LazyLock<Holidays> = LazyLock::new(|| {
    let text = include_str!("holidays_fr.txt");
    let dates: BTreeSet<NaiveDate> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| NaiveDate::parse_from_str(l, "%Y-%m-%d").expect("holidays_fr.txt: a date"))
        .collect();
    let last = *dates.iter().next_back().expect("holidays_fr.txt: dates");
    Holidays {
        name: "France",
        covers_until: NaiveDate::from_ymd_opt(last.year(), 12, 31).expect("a date"),
        dates,
    }
});

/// Days scanned for the next allowed instant: a week of hours, plus room for
/// runs of holidays and DST changes.
const SCAN_DAYS: i64 = 21;

pub fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a time of day")
}

impl Hours {
    /// The same intervals every day.
    pub fn every_day(intervals: &[(NaiveTime, NaiveTime)]) -> Hours {
        Hours {
            days: std::array::from_fn(|_| intervals.to_vec()),
            holidays: None,
        }
    }

    /// `weekdays` Monday to Friday, `weekend` Saturday and Sunday.
    pub fn weekdays_and_weekend(
        weekdays: &[(NaiveTime, NaiveTime)],
        weekend: &[(NaiveTime, NaiveTime)],
    ) -> Hours {
        Hours {
            days: std::array::from_fn(|i| {
                if i < 5 {
                    weekdays.to_vec()
                } else {
                    weekend.to_vec()
                }
            }),
            holidays: None,
        }
    }

    /// The openings on local date `date`, as instants.
    fn openings_on(&self, tz: Tz, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.holidays.is_some_and(|h| h.dates.contains(&date)) {
            return Vec::new();
        }
        self.days[date.weekday().num_days_from_monday() as usize]
            .iter()
            .map(|(s, e)| {
                (
                    resolve_local(tz, date.and_time(*s)),
                    resolve_local(tz, date.and_time(*e)),
                )
            })
            .filter(|(s, e)| s < e)
            .collect()
    }

    /// Whether calling is allowed at `now` in `tz`, else from when.
    pub fn allowed(&self, tz: Tz, now: DateTime<Utc>) -> Allowed {
        let today = now.with_timezone(&tz).date_naive();
        let closed = if self.holidays.is_some_and(|h| h.dates.contains(&today)) {
            Closed::Holiday
        } else {
            Closed::OutsideHours
        };
        for offset in 0..SCAN_DAYS {
            let Some(date) = today.checked_add_signed(Duration::days(offset)) else {
                break;
            };
            if self.holidays.is_some_and(|h| date > h.covers_until) {
                return Allowed::Unknown;
            }
            for (open, close) in self.openings_on(tz, date) {
                if open <= now && now < close {
                    return Allowed::Now;
                }
                if open > now {
                    return Allowed::From(open, closed);
                }
            }
        }
        Allowed::Unknown
    }
}
