//! The `sip` SMS transport: each SMS goes as one out-of-dialog SIP MESSAGE
//! (RFC 3428, `text/plain;charset=UTF-8`) through a configured trunk, sent
//! by call control; a 2xx means sent. SIP has no 160-character limit, so a
//! long text is one MESSAGE, up to [`MAX_BODY_BYTES`] (under a UDP
//! datagram's MTU with the headers).
//!
//! Owns: what the MESSAGE's answer means for the SMS ([`classify`], pure).
//! Must not: name SIP stack types (call control does the SIP), log the body,
//! or retry by itself. There are no delivery reports on this path.

use super::transport::{Outbound, PeerReply, SendResult, Transport};
use crate::sip::{CallControl, MessageError, MessageResult};

/// The largest body sent, in bytes: with ~400 bytes of headers the datagram
/// stays under a 1,500-byte Ethernet MTU, so it is never fragmented.
pub const MAX_BODY_BYTES: usize = 1300;

/// Sends SMS as SIP MESSAGEs through one trunk.
pub struct SipMessageTransport {
    sip: CallControl,
    trunk: String,
}

impl SipMessageTransport {
    pub fn new(sip: CallControl, trunk: &str) -> Self {
        SipMessageTransport {
            sip,
            trunk: trunk.to_string(),
        }
    }
}

fn reply(code: Option<String>, text: impl Into<String>) -> PeerReply {
    PeerReply {
        code,
        text: Some(text.into()),
    }
}

/// What a MESSAGE's answer means for the SMS.
///
/// | call control said | result |
/// |---|---|
/// | 2xx | accepted (no provider id) |
/// | 408, 480, 486, 500, 503 | retry (503 after its `Retry-After`) |
/// | other 3xx–6xx | failed |
/// | no final response (Timer F), not sent | retry |
pub fn classify(result: &MessageResult) -> SendResult {
    match result {
        MessageResult::Replied {
            status,
            reason,
            retry_after,
        } => {
            let reply = reply(Some(status.to_string()), reason.clone());
            match status {
                200..=299 => SendResult::Accepted {
                    provider_id: None,
                    reply,
                },
                408 | 480 | 486 | 500 | 503 => SendResult::Retry {
                    reply,
                    after: if *status == 503 { *retry_after } else { None },
                },
                _ => SendResult::Failed { reply },
            }
        }
        MessageResult::TimedOut => SendResult::Retry {
            reply: reply(None, "no final response to the MESSAGE (timeout)"),
            after: None,
        },
        MessageResult::NotSent(why) => SendResult::Retry {
            reply: reply(None, format!("MESSAGE not sent: {why}")),
            after: None,
        },
    }
}

/// A MESSAGE that call control refused to send.
fn refused(e: &MessageError) -> SendResult {
    let reply = reply(None, e.to_string());
    match e {
        MessageError::ShuttingDown => SendResult::Retry { reply, after: None },
        MessageError::UnknownTrunk(_)
        | MessageError::UnsupportedTransport { .. }
        | MessageError::InvalidDestination(_)
        | MessageError::InvalidSender(_) => SendResult::Failed { reply },
    }
}

/// Refuses a body larger than [`MAX_BODY_BYTES`].
fn check_size(body: &str) -> Option<SendResult> {
    (body.len() > MAX_BODY_BYTES).then(|| SendResult::Failed {
        reply: reply(
            None,
            format!(
                "the text is {} bytes in UTF-8; one SIP MESSAGE carries at most {MAX_BODY_BYTES}",
                body.len()
            ),
        ),
    })
}

#[async_trait::async_trait]
impl Transport for SipMessageTransport {
    fn name(&self) -> &'static str {
        "sip"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        let Outbound::Sms(sms) = message else {
            return SendResult::Failed {
                reply: reply(None, "the sip transport carries SMS only"),
            };
        };
        if let Some(too_long) = check_size(&sms.body) {
            return too_long;
        }
        let sender = Some(sms.from.as_str()).filter(|s| !s.is_empty());
        match self
            .sip
            .send_message(&self.trunk, sender, &sms.to, &sms.body)
            .await
        {
            Ok(result) => classify(&result),
            Err(e) => refused(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    fn replied(status: u16, retry_after: Option<Duration>) -> MessageResult {
        MessageResult::Replied {
            status,
            reason: "Because".into(),
            retry_after,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Accepted,
        Retry(Option<Duration>),
        Failed,
    }

    fn kind(r: &SendResult) -> Kind {
        match r {
            SendResult::Accepted { provider_id, .. } => {
                assert!(provider_id.is_none());
                Kind::Accepted
            }
            SendResult::Retry { after, .. } | SendResult::Unavailable { after, .. } => {
                Kind::Retry(*after)
            }
            SendResult::Failed { .. } => Kind::Failed,
            SendResult::Bounced { .. } => panic!("SIP never bounces"),
        }
    }

    #[test]
    fn answers_map_to_send_results() {
        let table: &[(MessageResult, Kind)] = &[
            (replied(200, None), Kind::Accepted),
            (replied(202, None), Kind::Accepted),
            (replied(408, None), Kind::Retry(None)),
            (replied(480, secs(60)), Kind::Retry(None)),
            (replied(486, None), Kind::Retry(None)),
            (replied(500, None), Kind::Retry(None)),
            (replied(503, secs(120)), Kind::Retry(secs(120))),
            (replied(503, None), Kind::Retry(None)),
            (replied(302, None), Kind::Failed),
            (replied(403, None), Kind::Failed),
            (replied(404, None), Kind::Failed),
            (replied(415, None), Kind::Failed),
            (replied(488, None), Kind::Failed),
            (replied(603, None), Kind::Failed),
            (MessageResult::TimedOut, Kind::Retry(None)),
            (MessageResult::NotSent("x".into()), Kind::Retry(None)),
        ];
        for (result, want) in table {
            assert_eq!(&kind(&classify(result)), want, "{result:?}");
        }
    }

    #[test]
    fn the_reply_keeps_the_sip_code_and_reason() {
        let SendResult::Failed { reply } = classify(&replied(404, None)) else {
            panic!("404 is a failure");
        };
        assert_eq!(reply.code.as_deref(), Some("404"));
        assert_eq!(reply.text.as_deref(), Some("Because"));
    }

    #[test]
    fn refusals_before_sending_fail_except_at_shutdown() {
        assert_eq!(
            kind(&refused(&MessageError::ShuttingDown)),
            Kind::Retry(None)
        );
        assert_eq!(
            kind(&refused(&MessageError::UnknownTrunk("x".into()))),
            Kind::Failed
        );
    }

    #[test]
    fn texts_over_the_cap_fail_with_their_size() {
        assert!(check_size(&"x".repeat(MAX_BODY_BYTES)).is_none());
        // 'é' is two bytes in UTF-8: 651 of them are 1,302 bytes.
        let Some(SendResult::Failed { reply }) = check_size(&"é".repeat(651)) else {
            panic!("over the cap");
        };
        let text = reply.text.unwrap_or_default();
        assert!(
            text.contains("1302 bytes") && text.contains("1300"),
            "{text}"
        );
    }
}
