//! The last check right before an INVITE (first tries and retries alike):
//! the do-not-call list, the target's expiry and `not_before`, and the
//! calling window in the target's own zone (ignored by emergency campaigns).
//!
//! [`claim_decision`] applies it to a campaign's due target (which
//! destination, in which zone); one-off calls go through
//! [`check_before_dial`] with [`DialGate::one_off`].
//!
//! Must not look anything up: the caller passes whether the number is on the
//! DNC list, the resolved zone and `now`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::pacing::Priority;
use super::timezone::resolve_timezone;
use super::window::Window;
use crate::domain::{Destination, DestinationKind};

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

impl DialGate<'_> {
    /// A one-off call: dialed when asked, so only the DNC list applies.
    pub fn one_off(on_dnc: bool) -> DialGate<'static> {
        DialGate {
            not_before: None,
            expires_at: None,
            window: None,
            priority: Priority::Normal,
            on_dnc,
        }
    }
}

/// A campaign's due target, as the claim sees it.
#[derive(Debug, Clone, Copy)]
pub struct DueTarget<'a> {
    /// The destination its next try goes to.
    pub destination_index: usize,
    pub destinations: &'a [Destination],
    /// The target's own zone, if it has one.
    pub timezone: Option<&'a str>,
    pub not_before: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the claim does with a due target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Dial {
        destination_index: usize,
    },
    /// Put back until this instant.
    Defer {
        until: DateTime<Utc>,
    },
    /// Never dial it: `tries_exhausted`, `dnc` or `expired`.
    Fail {
        reason: &'static str,
    },
}

/// Whether a campaign's due target is dialed now: a target with no
/// destination left fails as `tries_exhausted`; otherwise the campaign's
/// window applies in the target's zone (its own, else the one its first
/// `tel` number implies, else the window's), then [`check_before_dial`].
pub fn claim_decision(
    t: &DueTarget,
    window: Option<(&Window, Tz)>,
    priority: Priority,
    on_dnc: bool,
    now: DateTime<Utc>,
) -> Claim {
    if t.destination_index >= t.destinations.len() {
        return Claim::Fail {
            reason: "tries_exhausted",
        };
    }
    let first_tel = t
        .destinations
        .iter()
        .find(|d| d.kind == DestinationKind::Tel)
        .map(|d| d.target.as_str());
    let gate = DialGate {
        not_before: t.not_before,
        expires_at: t.expires_at,
        window: window
            .map(|(w, campaign_tz)| (w, resolve_timezone(t.timezone, first_tel, campaign_tz))),
        priority,
        on_dnc,
    };
    match check_before_dial(&gate, now) {
        DialCheck::Dial => Claim::Dial {
            destination_index: t.destination_index,
        },
        DialCheck::WaitUntil(until) => Claim::Defer { until },
        DialCheck::Fail { reason } => Claim::Fail { reason },
    }
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
    fn one_off_calls_are_refused_only_for_the_dnc_list() {
        let now = friday_morning();
        assert_eq!(
            check_before_dial(&DialGate::one_off(false), now),
            DialCheck::Dial
        );
        assert_eq!(
            check_before_dial(&DialGate::one_off(true), now),
            DialCheck::Fail { reason: "dnc" }
        );
    }

    fn dest(kind: DestinationKind, target: &str) -> Destination {
        Destination {
            kind,
            target: target.into(),
            try_count_max: None,
            try_count: 0,
        }
    }

    #[test]
    fn the_claim_decides_per_target_in_its_own_zone() {
        use DestinationKind::{Sip, Tel};
        let w = weekdays_9_to_17();
        // Friday 2026-11-20 08:30 in Los Angeles is 11:30 in New York.
        let now = utc("2026-11-20T16:30:00Z");
        let la_number = [dest(Tel, "+12135550100")];
        let ny_number = [dest(Tel, "+12125550100")];
        let sip_then_la = [dest(Sip, "sip:a@example.com"), dest(Tel, "+12135550100")];
        let due = |destinations, index, timezone| DueTarget {
            destination_index: index,
            destinations,
            timezone,
            not_before: None,
            expires_at: None,
        };
        let la_opening = utc("2026-11-20T17:00:00Z");
        let table: Vec<(DueTarget, Priority, bool, Claim)> = vec![
            (
                due(&ny_number, 0, None),
                Priority::Normal,
                false,
                Claim::Dial {
                    destination_index: 0,
                },
            ),
            (
                due(&la_number, 0, None),
                Priority::Normal,
                false,
                Claim::Defer { until: la_opening },
            ),
            // The zone comes from the first tel number, even when a SIP one is dialed first.
            (
                due(&sip_then_la, 0, None),
                Priority::Normal,
                false,
                Claim::Defer { until: la_opening },
            ),
            (
                due(&sip_then_la, 1, None),
                Priority::Normal,
                false,
                Claim::Defer { until: la_opening },
            ),
            // The target's own zone wins over its number's.
            (
                due(&la_number, 0, Some("America/New_York")),
                Priority::Normal,
                false,
                Claim::Dial {
                    destination_index: 0,
                },
            ),
            (
                due(&la_number, 0, None),
                Priority::Emergency,
                false,
                Claim::Dial {
                    destination_index: 0,
                },
            ),
            (
                due(&ny_number, 0, None),
                Priority::Normal,
                true,
                Claim::Fail { reason: "dnc" },
            ),
            (
                due(&ny_number, 1, None),
                Priority::Normal,
                false,
                Claim::Fail {
                    reason: "tries_exhausted",
                },
            ),
            (
                due(&[], 0, None),
                Priority::Emergency,
                false,
                Claim::Fail {
                    reason: "tries_exhausted",
                },
            ),
        ];
        for (t, priority, on_dnc, want) in table {
            assert_eq!(
                claim_decision(&t, Some((&w, New_York)), priority, on_dnc, now),
                want,
                "{t:?} {priority:?} dnc={on_dnc}"
            );
        }
        let expiring = DueTarget {
            expires_at: Some(utc("2026-11-20T16:45:00Z")),
            ..due(&la_number, 0, None)
        };
        assert_eq!(
            claim_decision(
                &expiring,
                Some((&w, New_York)),
                Priority::Normal,
                false,
                now
            ),
            Claim::Fail { reason: "expired" }
        );
        assert_eq!(
            claim_decision(
                &due(&la_number, 0, None),
                None,
                Priority::Normal,
                false,
                now
            ),
            Claim::Dial {
                destination_index: 0
            }
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
