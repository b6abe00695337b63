//! The last check right before an INVITE (first tries and retries alike):
//! the do-not-call list, the target's expiry and `not_before`, and the
//! calling window in the target's own zone (ignored by emergency campaigns).
//!
//! Must not look anything up: the caller passes whether the number is on the
//! DNC list, the resolved zone and `now`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::pacing::Priority;
use super::window::Window;

/// What the scheduler may do with a claimed target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialCheck {
    /// Send the INVITE.
    Dial,
    /// Put it back; it is due at this instant (`not_before` or the window's
    /// next opening), which is before its expiry.
    WaitUntil(DateTime<Utc>),
    /// Never dial it: `dnc` or `expired`.
    Fail { reason: &'static str },
}

/// The facts about one target the check needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DialGate<'a> {
    pub not_before: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The campaign's calling window and the target's zone (see
    /// `timezone::resolve_timezone`); `None` when the campaign has none.
    pub window: Option<(&'a Window, Tz)>,
    pub priority: Priority,
    /// Whether the number about to be dialed is on the DNC list.
    pub on_dnc: bool,
}

/// Decides whether the target may be dialed at `now`. A number on the DNC
/// list fails as `dnc`; a target whose earliest allowed instant is at or
/// after `expires_at` fails as `expired`; otherwise it waits for `not_before`
/// and then for the calling window (unless the campaign is an emergency one).
pub fn check_before_dial(gate: &DialGate, now: DateTime<Utc>) -> DialCheck {
    if gate.on_dnc {
        return DialCheck::Fail { reason: "dnc" };
    }
    let mut at = gate.not_before.map_or(now, |nb| nb.max(now));
    if gate.priority != Priority::Emergency {
        if let Some((window, tz)) = gate.window {
            at = window.next_opening(tz, at);
        }
    }
    if gate.expires_at.is_some_and(|e| at >= e) {
        return DialCheck::Fail { reason: "expired" };
    }
    if at <= now {
        DialCheck::Dial
    } else {
        DialCheck::WaitUntil(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use chrono_tz::America::New_York;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays_9_to_17() -> Window {
        Window {
            days: [true, true, true, true, true, false, false],
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
        }
    }

    fn open_gate(w: &Window) -> DialGate<'_> {
        DialGate {
            not_before: None,
            expires_at: None,
            window: Some((w, New_York)),
            priority: Priority::Normal,
            on_dnc: false,
        }
    }

    // Friday 2026-11-20 10:00 EST.
    fn friday_morning() -> DateTime<Utc> {
        utc("2026-11-20T15:00:00Z")
    }

    #[test]
    fn target_inside_its_window_is_dialed() {
        let w = weekdays_9_to_17();
        assert_eq!(
            check_before_dial(&open_gate(&w), friday_morning()),
            DialCheck::Dial
        );
    }

    #[test]
    fn number_on_the_dnc_list_fails_as_dnc() {
        let w = weekdays_9_to_17();
        let g = DialGate {
            on_dnc: true,
            ..open_gate(&w)
        };
        assert_eq!(
            check_before_dial(&g, friday_morning()),
            DialCheck::Fail { reason: "dnc" }
        );
    }

    #[test]
    fn target_past_its_expiry_fails_as_expired() {
        let w = weekdays_9_to_17();
        let g = DialGate {
            expires_at: Some(friday_morning()),
            ..open_gate(&w)
        };
        assert_eq!(
            check_before_dial(&g, friday_morning()),
            DialCheck::Fail { reason: "expired" }
        );
    }

    #[test]
    fn target_before_not_before_waits_for_it() {
        let w = weekdays_9_to_17();
        let later = utc("2026-11-20T18:00:00Z");
        let g = DialGate {
            not_before: Some(later),
            ..open_gate(&w)
        };
        assert_eq!(
            check_before_dial(&g, friday_morning()),
            DialCheck::WaitUntil(later)
        );
    }

    #[test]
    fn target_outside_its_window_waits_for_the_opening() {
        let w = weekdays_9_to_17();
        let saturday = utc("2026-11-21T15:00:00Z");
        assert_eq!(
            check_before_dial(&open_gate(&w), saturday),
            DialCheck::WaitUntil(utc("2026-11-23T14:00:00Z"))
        );
        // not_before after Friday's close also lands on Monday's opening.
        let g = DialGate {
            not_before: Some(utc("2026-11-20T22:30:00Z")),
            ..open_gate(&w)
        };
        assert_eq!(
            check_before_dial(&g, friday_morning()),
            DialCheck::WaitUntil(utc("2026-11-23T14:00:00Z"))
        );
    }

    #[test]
    fn target_whose_window_opens_only_after_expiry_fails_as_expired() {
        let w = weekdays_9_to_17();
        let g = DialGate {
            expires_at: Some(utc("2026-11-22T00:00:00Z")),
            ..open_gate(&w)
        };
        assert_eq!(
            check_before_dial(&g, utc("2026-11-21T15:00:00Z")),
            DialCheck::Fail { reason: "expired" }
        );
    }

    #[test]
    fn emergency_campaign_ignores_the_window_but_not_dnc_or_expiry() {
        let w = weekdays_9_to_17();
        let g = DialGate {
            priority: Priority::Emergency,
            ..open_gate(&w)
        };
        let saturday = utc("2026-11-21T15:00:00Z");
        assert_eq!(check_before_dial(&g, saturday), DialCheck::Dial);
        let dnc = DialGate { on_dnc: true, ..g };
        assert_eq!(
            check_before_dial(&dnc, saturday),
            DialCheck::Fail { reason: "dnc" }
        );
        let expired = DialGate {
            expires_at: Some(saturday),
            ..g
        };
        assert_eq!(
            check_before_dial(&expired, saturday),
            DialCheck::Fail { reason: "expired" }
        );
    }

    #[test]
    fn campaign_without_a_window_dials_any_time() {
        let g = DialGate {
            window: None,
            ..open_gate(&weekdays_9_to_17())
        };
        assert_eq!(
            check_before_dial(&g, utc("2026-11-22T04:00:00Z")),
            DialCheck::Dial
        );
    }
}
