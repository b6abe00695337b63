//! The compliance gate: one pure, fail-closed check right before a call is
//! placed, from a compliance profile's rules (`us_tcpa`, `uk_ofcom`,
//! `fr_consumer`, `ca_crtc`, `emergency`) and a campaign's own stricter
//! settings. It answers `Allow` (perhaps `cautious`: no over-dialing, one
//! call per free agent session) or `Refuse` with a named reason and, when
//! the refusal is only "not now", the first instant at which every rule
//! allows the call (the target is rescheduled to it, not failed).
//!
//! Must not look anything up or read the clock: the caller passes the
//! recipient's zone, their contact history across campaigns, the consent on
//! record and the campaign's abandonment counts.

pub mod hours;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use self::hours::{hm, Allowed, Closed, Hours, FR_HOLIDAYS};

/// A compliance profile's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    UsTcpa,
    UkOfcom,
    FrConsumer,
    CaCrtc,
    Emergency,
}

impl Profile {
    pub const ALL: [Profile; 5] = [
        Profile::UsTcpa,
        Profile::UkOfcom,
        Profile::FrConsumer,
        Profile::CaCrtc,
        Profile::Emergency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::UsTcpa => "us_tcpa",
            Profile::UkOfcom => "uk_ofcom",
            Profile::FrConsumer => "fr_consumer",
            Profile::CaCrtc => "ca_crtc",
            Profile::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The profile's rules.
    pub fn rules(self) -> Rules {
        let none = Rules {
            profile: Some(self),
            hours: None,
            caps: Vec::new(),
            quiet_after_refusal: None,
            redial_after_machine: None,
            redial_after_abandon: None,
            artificial_voice_needs: None,
            max_abandon_rate: None,
            abandon_window: Duration::days(30),
            abandon_margin: 0.005,
            min_ring_s: None,
            abandon_prompt_required: false,
            amd_false_positives_count: false,
        };
        match self {
            Profile::UsTcpa => Rules {
                hours: Some(Hours::every_day(&[(hm(8, 0), hm(21, 0))])),
                artificial_voice_needs: Some(Consent::ExpressWritten),
                max_abandon_rate: Some(0.03),
                min_ring_s: Some(15),
                abandon_prompt_required: true,
                ..none
            },
            Profile::UkOfcom => Rules {
                max_abandon_rate: Some(0.03),
                abandon_window: Duration::hours(24),
                min_ring_s: Some(15),
                abandon_prompt_required: true,
                amd_false_positives_count: true,
                redial_after_machine: Some(Duration::hours(72)),
                redial_after_abandon: Some(Duration::hours(72)),
                ..none
            },
            Profile::FrConsumer => Rules {
                hours: Some(Hours {
                    holidays: Some(&FR_HOLIDAYS),
                    ..Hours::weekdays_and_weekend(
                        &[(hm(10, 0), hm(13, 0)), (hm(14, 0), hm(20, 0))],
                        &[],
                    )
                }),
                caps: vec![Cap {
                    max: 4,
                    per: Duration::days(30),
                    scope: CapScope::Attempts,
                }],
                quiet_after_refusal: Some(Duration::days(60)),
                ..none
            },
            Profile::CaCrtc => Rules {
                hours: Some(Hours::weekdays_and_weekend(
                    &[(hm(9, 0), hm(21, 30))],
                    &[(hm(10, 0), hm(18, 0))],
                )),
                max_abandon_rate: Some(0.05),
                ..none
            },
            Profile::Emergency => none,
        }
    }
}

/// The consent on record for a recipient, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consent {
    None,
    Express,
    ExpressWritten,
}

/// At most `max` contacts of `scope` per `per`, per recipient number,
/// counted across every campaign and one-off call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub max: u32,
    pub per: Duration,
    pub scope: CapScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    /// Every call placed.
    Attempts,
    /// Calls that reached a person (and conversations).
    Conversations,
}

/// One earlier contact with the recipient (any campaign or one-off call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    pub at: DateTime<Utc>,
    pub kind: ContactKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    /// A call that reached nobody (busy, unanswered, failed).
    Attempt,
    /// A call or a conversation with the person.
    Conversation,
    /// The person asked not to be called.
    Refusal,
    /// Answered by a machine and hung up on.
    MachineHangup,
    /// Answered by a person nobody was connected to.
    Abandoned,
}

/// A campaign's answered calls over its profile's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Abandonment {
    pub live_answered: u64,
    pub abandoned: u64,
    /// Humans taken for machines (and hung up on), estimated.
    pub machine_false_positives: u64,
}

/// What a profile (and a campaign's stricter settings) requires.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `None`: a campaign's own rules without a profile.
    pub profile: Option<Profile>,
    /// In the recipient's zone; `None`: any hour.
    pub hours: Option<Hours>,
    pub caps: Vec<Cap>,
    pub quiet_after_refusal: Option<Duration>,
    pub redial_after_machine: Option<Duration>,
    pub redial_after_abandon: Option<Duration>,
    /// The consent an artificial or prerecorded voice needs.
    pub artificial_voice_needs: Option<Consent>,
    /// A share of live-answered calls, e.g. 0.03.
    pub max_abandon_rate: Option<f64>,
    pub abandon_window: Duration,
    /// Below the ceiling by this much, dialing turns cautious.
    pub abandon_margin: f64,
    pub min_ring_s: Option<u32>,
    pub abandon_prompt_required: bool,
    pub amd_false_positives_count: bool,
}

impl Rules {
    /// No rule at all (a campaign without a profile adds its own).
    pub fn none() -> Rules {
        Rules {
            profile: None,
            ..Profile::Emergency.rules()
        }
    }

    /// Whether any rule reads the recipient's contact history.
    pub fn reads_history(&self) -> bool {
        !self.caps.is_empty()
            || self.quiet_after_refusal.is_some()
            || self.redial_after_machine.is_some()
            || self.redial_after_abandon.is_some()
    }

    /// How far back the contact history must go.
    pub fn history_span(&self) -> Duration {
        let mut span = Duration::zero();
        for d in [
            self.quiet_after_refusal,
            self.redial_after_machine,
            self.redial_after_abandon,
        ]
        .into_iter()
        .flatten()
        .chain(self.caps.iter().map(|c| c.per))
        {
            span = span.max(d);
        }
        span
    }
}

/// Why a call may not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Dnc,
    ConsentRequired,
    AbandonLimit,
    OutsideCallingHours,
    PublicHoliday,
    HolidayTableExpired,
    FrequencyCap,
    QuietAfterRefusal,
    RedialAfterMachine,
    RedialAfterAbandon,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dnc => "dnc",
            Reason::ConsentRequired => "consent_required",
            Reason::AbandonLimit => "abandon_limit",
            Reason::OutsideCallingHours => "outside_calling_hours",
            Reason::PublicHoliday => "public_holiday",
            Reason::HolidayTableExpired => "holiday_table_expired",
            Reason::FrequencyCap => "frequency_cap",
            Reason::QuietAfterRefusal => "quiet_after_refusal",
            Reason::RedialAfterMachine => "redial_after_machine",
            Reason::RedialAfterAbandon => "redial_after_abandon",
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Place the call; `cautious`: the abandonment rate is near its ceiling,
    /// so no more calls than free agent sessions.
    Allow { cautious: bool },
    /// Not this call. `next`: when every rule allows it (None: not by waiting).
    Refuse {
        reason: Reason,
        next: Option<DateTime<Utc>>,
    },
}

/// The facts about one call about to be placed.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub now: DateTime<Utc>,
    /// The recipient's zone.
    pub tz: Tz,
    pub on_dnc: bool,
    /// A `media_stream` or `script` agent (not a person on a SIP agent).
    pub artificial_voice: bool,
    pub consent: Consent,
    /// The recipient's contacts, any order.
    pub history: &'a [Contact],
    /// The campaign's counts over the profile's window; `None` for a
    /// one-off call.
    pub abandonment: Option<Abandonment>,
}

/// When a message may go under `caps`, given the times earlier messages on
/// its channel were sent to the same recipient: `None` now, else the first
/// moment every cap allows.
pub fn message_cap_wait(
    caps: &[Cap],
    sent: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let rules = Rules {
        caps: caps.to_vec(),
        ..Rules::none()
    };
    let history: Vec<Contact> = sent
        .iter()
        .map(|&at| Contact {
            at,
            kind: ContactKind::Attempt,
        })
        .collect();
    let mut at = now;
    // Each pass moves to the end of what blocks; caps only move forward.
    for _ in 0..64 {
        let Some(until) = waits(&rules, &history, at)
            .into_iter()
            .map(|(_, until)| until)
            .filter(|u| *u > at)
            .max()
        else {
            return (at > now).then_some(at);
        };
        at = until;
    }
    Some(at)
}

/// Runs every rule: refusals that waiting cannot lift first (DNC, consent,
/// the abandonment ceiling), then the ones that only say "not now", moved
/// forward together until one instant satisfies them all.
pub fn check(rules: &Rules, call: &Call<'_>) -> Verdict {
    if call.on_dnc {
        return refuse(Reason::Dnc, None);
    }
    if let Some(needed) = rules.artificial_voice_needs {
        if call.artificial_voice && call.consent < needed {
            return refuse(Reason::ConsentRequired, None);
        }
    }
    let mut cautious = false;
    if let (Some(max), Some(a)) = (rules.max_abandon_rate, call.abandonment) {
        let rate = abandon_rate(rules, &a);
        if rate >= max {
            return refuse(Reason::AbandonLimit, None);
        }
        cautious = rate >= max - rules.abandon_margin;
    }
    if rules.caps.iter().any(|c| c.max == 0) {
        return refuse(Reason::FrequencyCap, None);
    }
    let mut at = call.now;
    let mut first: Option<Reason> = None;
    // Each pass moves `at` to the end of whatever blocks it; the rules only
    // move forward, so a pass that moves nothing is the answer.
    for _ in 0..64 {
        let mut moved = false;
        for (reason, until) in waits(rules, call.history, at) {
            if until > at {
                first.get_or_insert(reason);
                at = until;
                moved = true;
            }
        }
        if let Some(hours) = &rules.hours {
            match hours.allowed(call.tz, at) {
                Allowed::Now => {}
                Allowed::From(open, why) => {
                    first.get_or_insert(match why {
                        Closed::Holiday => Reason::PublicHoliday,
                        Closed::OutsideHours => Reason::OutsideCallingHours,
                    });
                    at = open;
                    moved = true;
                }
                Allowed::Unknown => return refuse(Reason::HolidayTableExpired, None),
            }
        }
        if !moved {
            break;
        }
    }
    match first {
        None => Verdict::Allow { cautious },
        Some(reason) => refuse(reason, Some(at)),
    }
}

fn refuse(reason: Reason, next: Option<DateTime<Utc>>) -> Verdict {
    Verdict::Refuse { reason, next }
}

/// Abandoned ÷ live-answered (with the machine false positives added to
/// both, where the profile counts them).
pub fn abandon_rate(rules: &Rules, a: &Abandonment) -> f64 {
    let (mut abandoned, mut live) = (a.abandoned, a.live_answered);
    if rules.amd_false_positives_count {
        abandoned += a.machine_false_positives;
        live += a.machine_false_positives;
    }
    if live == 0 {
        0.0
    } else {
        abandoned as f64 / live as f64
    }
}

/// For each history rule that blocks `at`, its reason and until when.
fn waits(rules: &Rules, history: &[Contact], at: DateTime<Utc>) -> Vec<(Reason, DateTime<Utc>)> {
    let mut out = Vec::new();
    let latest = |kinds: &[ContactKind]| {
        history
            .iter()
            .filter(|c| kinds.contains(&c.kind) && c.at <= at)
            .map(|c| c.at)
            .max()
    };
    let quiet = [
        (
            Reason::QuietAfterRefusal,
            rules.quiet_after_refusal,
            &[ContactKind::Refusal, ContactKind::Conversation][..],
        ),
        (
            Reason::RedialAfterMachine,
            rules.redial_after_machine,
            &[ContactKind::MachineHangup][..],
        ),
        (
            Reason::RedialAfterAbandon,
            rules.redial_after_abandon,
            &[ContactKind::Abandoned][..],
        ),
    ];
    for (reason, period, kinds) in quiet {
        if let (Some(period), Some(last)) = (period, latest(kinds)) {
            out.push((reason, last + period));
        }
    }
    for cap in &rules.caps {
        let mut counted: Vec<DateTime<Utc>> = history
            .iter()
            .filter(|c| c.at <= at && c.at > at - cap.per)
            .filter(|c| match cap.scope {
                CapScope::Attempts => true,
                CapScope::Conversations => {
                    matches!(c.kind, ContactKind::Conversation | ContactKind::Refusal)
                }
            })
            .map(|c| c.at)
            .collect();
        if counted.len() >= cap.max as usize {
            counted.sort();
            // Allowed once enough of the oldest have left the window.
            let leaving = counted.len() + 1 - cap.max as usize;
            out.push((Reason::FrequencyCap, counted[leaving - 1] + cap.per));
        }
    }
    out
}

#[cfg(test)]
mod tests;
