//! The compliance gate at the claim: a campaign's rules (its profile's,
//! tightened by its own) applied to a target about to be dialed, from what
//! the claim read (its number's calls across every campaign and one-off
//! call, the DNC list) and the target's consent. A refusal that waiting
//! lifts defers the target to the first moment every rule allows, with the
//! reason kept on the target; one that waiting cannot lift fails it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::rules::resolve_timezone;
use crate::compliance::{self, Consent, Contact, ContactKind, Rules, Verdict};
use crate::domain::DestinationKind;
use crate::store::claims::{ClaimAction, Facts, PastCall};
use crate::store::targets::TargetRow;

/// Who is about to be called.
pub(crate) struct Recipient<'a> {
    /// A `tel` number (None: a SIP address, whose zone is not implied).
    pub number: Option<&'a str>,
    /// Its own zone, an IANA name.
    pub timezone: Option<&'a str>,
    pub consent: Option<&'a str>,
    /// Ms; past it the call is not placed at all.
    pub expires_at: Option<i64>,
}

/// What the gate says of dialing `t`'s destination `index` now: `None` to go
/// ahead, else what to do instead.
pub(crate) fn check_target(
    rules: &Rules,
    t: &TargetRow,
    index: usize,
    facts: &Facts<'_>,
    artificial_voice: bool,
    campaign_tz: Tz,
    now: DateTime<Utc>,
) -> Option<ClaimAction> {
    let dest = t.destinations.get(index)?;
    let who = Recipient {
        number: (dest.kind == DestinationKind::Tel).then_some(dest.target.as_str()),
        timezone: t.timezone.as_deref(),
        consent: t.consent.as_deref(),
        expires_at: t.expires_at,
    };
    check(rules, &who, facts, artificial_voice, campaign_tz, now)
}

/// What the gate says of calling `who` now: `None` to go ahead, else what to
/// do instead (a `Defer` carries the refusal's reason).
pub(crate) fn check(
    rules: &Rules,
    who: &Recipient<'_>,
    facts: &Facts<'_>,
    artificial_voice: bool,
    fallback_tz: Tz,
    now: DateTime<Utc>,
) -> Option<ClaimAction> {
    let tz = resolve_timezone(who.timezone, who.number, fallback_tz);
    let history: Vec<Contact> = facts.history.iter().map(contact).collect();
    let call = compliance::Call {
        now,
        tz,
        on_dnc: facts.on_dnc,
        artificial_voice,
        consent: consent(who.consent),
        history: &history,
        abandonment: None,
    };
    match compliance::check(rules, &call) {
        Verdict::Allow { .. } => None,
        Verdict::Refuse { reason, next } => Some(match next {
            Some(at) if who.expires_at.is_none_or(|e| at.timestamp_millis() < e) => {
                ClaimAction::Defer {
                    until: at.timestamp_millis(),
                    refusal: Some(reason.as_str()),
                }
            }
            Some(_) => ClaimAction::Fail {
                reason: "expired".into(),
            },
            None => ClaimAction::Fail {
                reason: reason.as_str().into(),
            },
        }),
    }
}

fn consent(level: Option<&str>) -> Consent {
    match level {
        Some("express_written") => Consent::ExpressWritten,
        Some("express") => Consent::Express,
        _ => Consent::None,
    }
}

/// The share of machine verdicts taken to be people hung up on, for
/// profiles that count them (uk_ofcom): the detector called none of the
/// corpus's 600 live answers a machine (`benches/amd_accuracy.rs`), whose
/// 95% upper bound is 0.5%; rounded up per campaign.
const AMD_FALSE_POSITIVE_RATE: f64 = 0.005;

/// How a campaign with an abandonment ceiling may dial.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AbandonPacing {
    Normal,
    /// Within the margin below the ceiling: no call is placed while another
    /// of the campaign's calls is still without its agent, so at most one
    /// call at a time can be abandoned.
    Cautious,
    /// At the ceiling: no calls; the status reason to wait with.
    Stopped(String),
}

impl AbandonPacing {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            AbandonPacing::Normal => "normal",
            AbandonPacing::Cautious => "cautious",
            AbandonPacing::Stopped(_) => "stopped",
        }
    }
}

/// A campaign's pacing under its abandonment ceiling (over its rules'
/// window), with the counts it rests on; `None` without a ceiling.
pub(crate) async fn abandon_pacing(
    store: &crate::store::Store,
    campaign_id: &str,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Option<(AbandonPacing, AbandonState)>, crate::store::StoreError> {
    let Some(a) = abandonment(store, campaign_id, rules, now).await? else {
        return Ok(None);
    };
    let pacing = if a.rate >= a.max_rate {
        AbandonPacing::Stopped(format!(
            "abandon_limit: {} of {} answered calls abandoned over the last {} h ({:.1}%, ceiling {:.1}%)",
            a.counts.abandoned,
            a.counts.live_answered,
            a.window_hours,
            a.rate * 100.0,
            a.max_rate * 100.0
        ))
    } else if a.rate >= a.max_rate - rules.abandon_margin {
        AbandonPacing::Cautious
    } else {
        AbandonPacing::Normal
    };
    Ok(Some((pacing, a)))
}

/// A campaign's abandonment over its rules' window.
pub(crate) struct AbandonState {
    pub counts: compliance::Abandonment,
    pub rate: f64,
    pub max_rate: f64,
    pub window_hours: i64,
}

/// The abandonment of a campaign with a ceiling (None: it has none).
pub(crate) async fn abandonment(
    store: &crate::store::Store,
    campaign_id: &str,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Option<AbandonState>, crate::store::StoreError> {
    let Some(max_rate) = rules.max_abandon_rate else {
        return Ok(None);
    };
    let since = (now - rules.abandon_window).timestamp_millis();
    let (live, abandoned, machines) = store.abandonment_counts(campaign_id, since).await?;
    let counts = compliance::Abandonment {
        live_answered: live.max(0) as u64,
        abandoned: abandoned.max(0) as u64,
        machine_false_positives: (machines.max(0) as f64 * AMD_FALSE_POSITIVE_RATE).ceil() as u64,
    };
    Ok(Some(AbandonState {
        rate: compliance::abandon_rate(rules, &counts),
        counts,
        max_rate,
        window_hours: rules.abandon_window.num_hours(),
    }))
}

/// An earlier call as the gate counts it.
fn contact(c: &PastCall) -> Contact {
    let kind = match (c.outcome.as_deref(), c.result.as_deref()) {
        (_, Some("opted_out")) => ContactKind::Refusal,
        (Some("abandoned"), _) => ContactKind::Abandoned,
        (Some("machine"), _) | (_, Some("machine")) => ContactKind::MachineHangup,
        _ if c.answered => ContactKind::Conversation,
        _ => ContactKind::Attempt,
    };
    Contact {
        at: crate::store::from_ms(c.at),
        kind,
    }
}
