//! The gate, table by table: every reason, DST edges, French holidays,
//! caps across campaigns and one-off calls, consent, abandonment.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn call(now: &str, tz: Tz) -> Call<'static> {
    Call {
        now: utc(now),
        tz,
        on_dnc: false,
        artificial_voice: false,
        consent: Consent::None,
        history: &[],
        abandonment: None,
    }
}

fn contact(at: &str, kind: ContactKind) -> Contact {
    Contact { at: utc(at), kind }
}

fn refused(reason: Reason, next: &str) -> Verdict {
    Verdict::Refuse {
        reason,
        next: Some(utc(next)),
    }
}

const ALLOW: Verdict = Verdict::Allow { cautious: false };

#[test]
fn calling_hours_in_the_recipients_zone_across_dst_changes() {
    use chrono_tz::America::{Chicago, New_York};
    use chrono_tz::Europe::Paris;
    let us = Profile::UsTcpa.rules();
    let ca = Profile::CaCrtc.rules();
    // (rules, now, zone, verdict)
    let cases: Vec<(&Rules, &str, Tz, Verdict)> = vec![
        (&us, "2026-12-04T14:00:00Z", New_York, ALLOW),
        // 07:59 local: a minute early.
        (
            &us,
            "2026-12-04T12:59:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-12-04T13:00:00Z"),
        ),
        // 21:00 local is closed (the end is excluded): tomorrow 08:00.
        (
            &us,
            "2026-12-05T02:00:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-12-05T13:00:00Z"),
        ),
        // The night before clocks spring forward: 08:00 EDT is 12:00Z, not 13:00Z.
        (
            &us,
            "2026-03-08T03:00:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-03-08T12:00:00Z"),
        ),
        // The night before they fall back: 08:00 EST is 13:00Z.
        (
            &us,
            "2026-11-01T02:30:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-11-01T13:00:00Z"),
        ),
        // The same instant is allowed in Chicago's afternoon and not in Paris's night.
        (&us, "2026-12-04T22:00:00Z", Chicago, ALLOW),
        (
            &us,
            "2026-12-04T22:00:00Z",
            Paris,
            refused(Reason::OutsideCallingHours, "2026-12-05T07:00:00Z"),
        ),
        // Canada: Saturday 18:00 closes; Sunday from 10:00; weekdays to 21:30.
        (
            &ca,
            "2026-12-05T23:30:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-12-06T15:00:00Z"),
        ),
        (&ca, "2026-12-08T02:15:00Z", New_York, ALLOW),
        (
            &ca,
            "2026-12-08T02:30:00Z",
            New_York,
            refused(Reason::OutsideCallingHours, "2026-12-08T14:00:00Z"),
        ),
    ];
    for (i, (rules, now, tz, want)) in cases.into_iter().enumerate() {
        assert_eq!(check(rules, &call(now, tz)), want, "case {i}: {now} {tz}");
    }
}

#[test]
fn french_hours_lunch_weekends_and_public_holidays() {
    use chrono_tz::Europe::Paris;
    let fr = Profile::FrConsumer.rules();
    let cases = [
        // Friday 11:00 CET.
        ("2026-12-04T10:00:00Z", ALLOW),
        // Lunch: 13:30 → 14:00.
        (
            "2026-12-04T12:30:00Z",
            refused(Reason::OutsideCallingHours, "2026-12-04T13:00:00Z"),
        ),
        // Saturday → Monday 10:00.
        (
            "2026-12-05T10:00:00Z",
            refused(Reason::OutsideCallingHours, "2026-12-07T09:00:00Z"),
        ),
        // Ascension Thursday 2026-05-14 (CEST) → Friday 10:00.
        (
            "2026-05-14T09:00:00Z",
            refused(Reason::PublicHoliday, "2026-05-15T08:00:00Z"),
        ),
        // Friday 1 May → Monday 4 May.
        (
            "2026-05-01T09:00:00Z",
            refused(Reason::PublicHoliday, "2026-05-04T08:00:00Z"),
        ),
        // Thursday evening before Ascension: closed, and the next day is a
        // holiday too → Friday.
        (
            "2026-05-13T18:30:00Z",
            refused(Reason::OutsideCallingHours, "2026-05-15T08:00:00Z"),
        ),
        // 31 December 2030, 20:30: the next opening would be in 2031, past
        // the table; the gate does not guess.
        (
            "2030-12-31T19:30:00Z",
            Verdict::Refuse {
                reason: Reason::HolidayTableExpired,
                next: None,
            },
        ),
    ];
    for (now, want) in cases {
        assert_eq!(check(&fr, &call(now, Paris)), want, "{now}");
    }
}

#[test]
fn caps_count_every_campaign_and_one_off_call_for_the_number() {
    use chrono_tz::Europe::Paris;
    let fr = Profile::FrConsumer.rules();
    // Four calls in 30 days, from two campaigns and a one-off call (the
    // history is the number's, whoever placed them).
    let history = [
        contact("2026-11-05T10:00:00Z", ContactKind::Attempt),
        contact("2026-11-12T10:00:00Z", ContactKind::Attempt),
        contact("2026-11-20T10:00:00Z", ContactKind::Attempt),
        contact("2026-12-03T10:00:00Z", ContactKind::Attempt),
    ];
    let mut c = call("2026-12-04T10:00:00Z", Paris);
    c.history = &history;
    // Allowed again once the oldest leaves the 30 days: 2026-12-05 10:00Z,
    // a Saturday → Monday 10:00 CET.
    assert_eq!(
        check(&fr, &c),
        refused(Reason::FrequencyCap, "2026-12-07T09:00:00Z")
    );
    // Three in the window: allowed.
    c.history = &history[1..];
    assert_eq!(check(&fr, &c), ALLOW);
    // A campaign's own cap on top (stricter): 2 per 7 days.
    let mut strict = fr.clone();
    strict.caps.push(Cap {
        max: 2,
        per: Duration::days(7),
        scope: CapScope::Attempts,
    });
    let recent = [
        contact("2026-11-30T10:00:00Z", ContactKind::Attempt),
        contact("2026-12-03T10:00:00Z", ContactKind::Attempt),
    ];
    c.history = &recent;
    assert_eq!(
        check(&strict, &c),
        refused(Reason::FrequencyCap, "2026-12-07T10:00:00Z")
    );
    // Conversations-scoped caps count only calls that reached the person.
    let mut talks = Profile::Emergency.rules();
    talks.caps.push(Cap {
        max: 1,
        per: Duration::days(7),
        scope: CapScope::Conversations,
    });
    c.history = &recent;
    assert_eq!(check(&talks, &c), ALLOW);
    let talked = [contact("2026-12-01T10:00:00Z", ContactKind::Conversation)];
    c.history = &talked;
    assert_eq!(
        check(&talks, &c),
        refused(Reason::FrequencyCap, "2026-12-08T10:00:00Z")
    );
}

#[test]
fn quiet_periods_after_a_refusal_a_machine_and_an_abandoned_call() {
    use chrono_tz::Europe::London;
    let uk = Profile::UkOfcom.rules();
    let fr = Profile::FrConsumer.rules();
    let cases: Vec<(&Rules, Contact, Verdict)> = vec![
        (
            &uk,
            contact("2026-12-03T10:00:00Z", ContactKind::Abandoned),
            refused(Reason::RedialAfterAbandon, "2026-12-06T10:00:00Z"),
        ),
        (
            &uk,
            contact("2026-12-02T09:00:00Z", ContactKind::MachineHangup),
            refused(Reason::RedialAfterMachine, "2026-12-05T09:00:00Z"),
        ),
        (
            &uk,
            contact("2026-12-01T09:00:00Z", ContactKind::MachineHangup),
            ALLOW,
        ),
        // 60 days after a refusal is Saturday 2027-01-02 → Monday 10:00 in
        // the recipient's zone (London here).
        (
            &fr,
            contact("2026-11-03T10:00:00Z", ContactKind::Refusal),
            refused(Reason::QuietAfterRefusal, "2027-01-04T10:00:00Z"),
        ),
    ];
    for (i, (rules, last, want)) in cases.into_iter().enumerate() {
        let history = [last];
        let mut c = call("2026-12-04T10:00:00Z", London);
        c.history = &history;
        assert_eq!(check(rules, &c), want, "case {i}");
    }
}

#[test]
fn consent_is_needed_for_artificial_voices_only() {
    use chrono_tz::America::New_York;
    let us = Profile::UsTcpa.rules();
    // (artificial voice, consent, verdict)
    let consent_required = Verdict::Refuse {
        reason: Reason::ConsentRequired,
        next: None,
    };
    let cases = [
        (true, Consent::None, consent_required),
        (true, Consent::Express, consent_required),
        (true, Consent::ExpressWritten, ALLOW),
        (false, Consent::None, ALLOW),
    ];
    for (artificial, consent, want) in cases {
        let mut c = call("2026-12-04T15:00:00Z", New_York);
        c.artificial_voice = artificial;
        c.consent = consent;
        assert_eq!(check(&us, &c), want, "{artificial} {consent:?}");
        // The UK profile asks for none.
        assert_eq!(check(&Profile::UkOfcom.rules(), &c), ALLOW);
    }
}

#[test]
fn abandonment_turns_cautious_near_the_ceiling_and_stops_at_it() {
    use chrono_tz::America::New_York;
    let us = Profile::UsTcpa.rules();
    let uk = Profile::UkOfcom.rules();
    let limit = Verdict::Refuse {
        reason: Reason::AbandonLimit,
        next: None,
    };
    // (rules, live answered, abandoned, machine false positives, verdict)
    let cases = [
        (&us, 0, 0, 0, ALLOW),
        (&us, 1000, 20, 0, ALLOW),
        (&us, 1000, 25, 0, Verdict::Allow { cautious: true }),
        (&us, 1000, 30, 0, limit),
        // The US profile does not count machine false positives...
        (&us, 1000, 20, 30, ALLOW),
        // ...the UK's does: (20 + 15) / (1000 + 15) = 3.4%.
        (&uk, 1000, 20, 15, limit),
        (&uk, 1000, 20, 6, Verdict::Allow { cautious: true }),
    ];
    for (i, (rules, live, abandoned, fp, want)) in cases.into_iter().enumerate() {
        let mut c = call("2026-12-04T15:00:00Z", New_York);
        c.abandonment = Some(Abandonment {
            live_answered: live,
            abandoned,
            machine_false_positives: fp,
        });
        assert_eq!(check(rules, &c), want, "case {i}");
    }
}

#[test]
fn dnc_refuses_under_every_profile_and_emergency_ignores_the_rest() {
    use chrono_tz::Europe::Paris;
    let history = [
        contact("2026-12-04T01:00:00Z", ContactKind::Refusal),
        contact("2026-12-04T01:30:00Z", ContactKind::Abandoned),
    ];
    let dnc = Verdict::Refuse {
        reason: Reason::Dnc,
        next: None,
    };
    for p in Profile::ALL {
        assert_eq!(Profile::parse(p.as_str()), Some(p));
        // Sunday 03:00 in Paris, an artificial voice with no consent, after
        // a refusal and an abandoned call: only `emergency` calls.
        let mut c = call("2026-12-06T02:00:00Z", Paris);
        c.history = &history;
        c.artificial_voice = true;
        let v = check(&p.rules(), &c);
        if p == Profile::Emergency {
            assert_eq!(v, ALLOW);
        } else {
            assert!(matches!(v, Verdict::Refuse { .. }), "{p:?}: {v:?}");
        }
        c.on_dnc = true;
        assert_eq!(check(&p.rules(), &c), dnc, "{p:?}");
    }
}

#[test]
fn the_holiday_table_reads_and_covers_its_years() {
    let t = &*hours::FR_HOLIDAYS;
    assert_eq!(t.dates.len(), 55, "11 a year, 2026 to 2030");
    assert_eq!(t.covers_until.to_string(), "2030-12-31");
    for d in ["2026-07-14", "2028-06-05", "2030-05-30"] {
        assert!(t.dates.contains(&d.parse().unwrap()), "{d}");
    }
}

#[test]
fn a_message_over_its_channels_cap_waits_for_the_oldest_to_leave_the_window() {
    let caps = [
        Cap {
            max: 2,
            per: Duration::days(7),
            scope: CapScope::Attempts,
        },
        Cap {
            max: 1,
            per: Duration::hours(1),
            scope: CapScope::Attempts,
        },
    ];
    let now = utc("2026-03-10T12:00:00Z");
    let sent = |s: &[&str]| s.iter().map(|t| utc(t)).collect::<Vec<_>>();
    // Nothing sent, or one long ago: now.
    assert_eq!(message_cap_wait(&caps, &[], now), None);
    assert_eq!(
        message_cap_wait(&caps, &sent(&["2026-03-01T00:00:00Z"]), now),
        None
    );
    // One 10 minutes ago: the hourly cap, 50 minutes from now.
    assert_eq!(
        message_cap_wait(&caps, &sent(&["2026-03-10T11:50:00Z"]), now),
        Some(utc("2026-03-10T12:50:00Z"))
    );
    // Two this week: when the older leaves the 7 days.
    assert_eq!(
        message_cap_wait(
            &caps,
            &sent(&["2026-03-05T09:00:00Z", "2026-03-09T08:00:00Z"]),
            now
        ),
        Some(utc("2026-03-12T09:00:00Z"))
    );
    // Both caps at once: the later of the two moments that satisfy both.
    assert_eq!(
        message_cap_wait(
            &caps,
            &sent(&["2026-03-03T12:30:00Z", "2026-03-10T11:59:00Z"]),
            now
        ),
        Some(utc("2026-03-10T12:59:00Z"))
    );
}
