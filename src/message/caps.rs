//! Frequency caps on marketing messages (`[messages.frequency_caps]`): at
//! most `max` messages to one address per `per_days` on a channel, counted
//! over every message sent on it. A message over its cap is held back, not
//! tried, until the first moment every cap allows (the arithmetic is the
//! compliance gate's, `compliance::message_cap_wait`). Transactional and
//! emergency messages are never capped.

use crate::clock::Clock;
use crate::compliance::{Cap, CapScope};
use crate::config::MessagesConfig;
use crate::store::messages::MessageRow;
use crate::store::{Store, StoreError};

use super::outcome::Decision;
use super::status::MessageChannel;

/// The priority rank of marketing messages (0 emergency, 1 transactional).
const MARKETING: i64 = 2;

/// The result of a claim that was held back, not tried (it does not count
/// against `max_retries`).
pub(crate) const DEFERRED: &str = "deferred";

/// Checks `[messages.frequency_caps]`; the error names the key.
pub(super) fn validate(m: &MessagesConfig) -> Result<(), (String, String)> {
    let bad = |k: String, why: &str| Err((k, why.to_string()));
    for (channel, caps) in &m.frequency_caps {
        if MessageChannel::parse(channel).is_none() {
            return bad(
                format!("messages.frequency_caps.{channel}"),
                "is not a channel (email, sms, whatsapp, slack)",
            );
        }
        for (i, cap) in caps.iter().enumerate() {
            let key = format!("messages.frequency_caps.{channel}[{i}]");
            if cap.max == 0 {
                return bad(format!("{key}.max"), "must be at least 1");
            }
            if !(1..=365).contains(&cap.per_days) {
                return bad(format!("{key}.per_days"), "must be 1 to 365");
            }
        }
    }
    Ok(())
}

/// The caps of `channel`.
pub(super) fn for_channel(m: &MessagesConfig, channel: &str) -> Vec<Cap> {
    m.frequency_caps
        .get(channel)
        .into_iter()
        .flatten()
        .map(|cap| Cap {
            max: cap.max,
            per: chrono::Duration::days(cap.per_days.into()),
            scope: CapScope::Attempts,
        })
        .collect()
}

/// The hold for `row` when it is a marketing message over `caps`: queued,
/// reason `frequency_cap`, due when the caps allow; `None` when it may go.
pub(super) async fn held(
    store: &Store,
    clock: &Clock,
    caps: &[Cap],
    row: &MessageRow,
) -> Result<Option<Decision>, StoreError> {
    if caps.is_empty() || row.priority < MARKETING {
        return Ok(None);
    }
    let now = clock.now();
    let span = caps.iter().map(|c| c.per).max().unwrap_or_default();
    let sent: Vec<_> = store
        .message_sends_to(
            &row.channel,
            &row.recipient,
            (now - span).timestamp_millis(),
        )
        .await?
        .into_iter()
        .map(crate::store::from_ms)
        .collect();
    Ok(
        crate::compliance::message_cap_wait(caps, &sent, now).map(|until| Decision {
            status: "queued",
            result: DEFERRED,
            reason: Some("frequency_cap".into()),
            reply: super::transport::PeerReply {
                code: None,
                text: Some(format!(
                    "frequency cap: may be sent from {}",
                    until.to_rfc3339()
                )),
            },
            provider_id: None,
            due_at: Some(until.timestamp_millis()),
            suppress: false,
        }),
    )
}
