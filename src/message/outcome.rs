//! What a send came to, decided from the transport's answer (pure): the
//! message's next status, the attempt's result, and when a retry is due.
//!
//! | transport said | tries left | status | attempt result |
//! |---|---|---|---|
//! | accepted | – | sent | accepted |
//! | retry (4xx, throttled, connection) | yes | queued, due after the backoff (moved into the send window) | retry |
//! | retry | no | failed, `retries_exhausted` | retry |
//! | bounced (5xx at RCPT/DATA) | – | bounced, recipient suppressed | bounced |
//! | failed | – | failed, `rejected` | failed |
//! | (recipient suppressed before the send) | – | failed, `suppressed` | suppressed |

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::transport::{PeerReply, SendResult};
use crate::campaign::rules::window::Window;

/// Exponential backoff between retries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: i64,
    pub cap_ms: i64,
}

impl Backoff {
    /// The wait before the retry that follows try number `tries` (1-based).
    pub fn delay_ms(&self, tries: i64) -> i64 {
        let exp = (tries - 1).clamp(0, 30) as u32;
        self.base_ms.saturating_mul(1i64 << exp).min(self.cap_ms)
    }
}

/// The decision for one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: &'static str,
    pub result: &'static str,
    pub reason: Option<String>,
    pub reply: PeerReply,
    pub provider_id: Option<String>,
    pub due_at: Option<i64>,
    /// The recipient goes on the suppression list.
    pub suppress: bool,
}

/// Decides what a send's `result` means for a message that has now been
/// tried `tries` times and may be retried `max_retries` times.
pub fn decide(
    result: &SendResult,
    tries: i64,
    max_retries: i64,
    now: DateTime<Utc>,
    backoff: Backoff,
    window: Option<&(Window, Tz)>,
) -> Decision {
    let base = |status, result, reply: &PeerReply| Decision {
        status,
        result,
        reason: None,
        reply: reply.clone(),
        provider_id: None,
        due_at: None,
        suppress: false,
    };
    match result {
        SendResult::Accepted { provider_id, reply } => Decision {
            provider_id: provider_id.clone(),
            ..base("sent", "accepted", reply)
        },
        SendResult::Retry { reply, after } | SendResult::Unavailable { reply, after } => {
            if tries > max_retries {
                return Decision {
                    reason: Some("retries_exhausted".into()),
                    ..base("failed", "retry", reply)
                };
            }
            let wait = backoff
                .delay_ms(tries)
                .max(after.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64));
            let mut due = now + Duration::milliseconds(wait);
            if let Some((w, tz)) = window {
                due = w.dial_time(*tz, due);
            }
            Decision {
                due_at: Some(due.timestamp_millis()),
                ..base("queued", "retry", reply)
            }
        }
        SendResult::Bounced { reply } => Decision {
            reason: Some("bounced".into()),
            suppress: true,
            ..base("bounced", "bounced", reply)
        },
        SendResult::Failed { reply } => Decision {
            reason: Some("rejected".into()),
            ..base("failed", "failed", reply)
        },
    }
}

/// The decision for a recipient found on a suppression list (or, for SMS,
/// the DNC list) right before the send.
pub fn suppressed(list: &str) -> Decision {
    Decision {
        status: "failed",
        result: "suppressed",
        reason: Some("suppressed".into()),
        reply: PeerReply {
            code: None,
            text: Some(format!("the recipient is on the {list} list")),
        },
        provider_id: None,
        due_at: None,
        suppress: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::window::CallingWindow;

    fn reply(code: &str) -> PeerReply {
        PeerReply {
            code: Some(code.into()),
            text: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const B: Backoff = Backoff {
        base_ms: 1_000,
        cap_ms: 60_000,
    };

    #[test]
    fn each_answer_gives_its_status_result_and_retry_time() {
        let now = at("2026-12-02T10:00:00Z");
        let ms = now.timestamp_millis();
        // (answer, tries, max_retries) -> (status, result, reason, due_at, suppress)
        type Want<'a> = (&'a str, &'a str, Option<&'a str>, Option<i64>, bool);
        let cases: Vec<(SendResult, i64, i64, Want)> = vec![
            (
                SendResult::Accepted {
                    provider_id: Some("7".into()),
                    reply: reply("250"),
                },
                1,
                3,
                ("sent", "accepted", None, None, false),
            ),
            (
                SendResult::Retry {
                    reply: reply("451"),
                    after: None,
                },
                1,
                3,
                ("queued", "retry", None, Some(ms + 1_000), false),
            ),
            (
                SendResult::Retry {
                    reply: reply("451"),
                    after: None,
                },
                3,
                3,
                ("queued", "retry", None, Some(ms + 4_000), false),
            ),
            (
                SendResult::Retry {
                    reply: reply("0x00000058"),
                    after: Some(std::time::Duration::from_secs(5)),
                },
                1,
                3,
                ("queued", "retry", None, Some(ms + 5_000), false),
            ),
            (
                SendResult::Retry {
                    reply: reply("451"),
                    after: None,
                },
                4,
                3,
                ("failed", "retry", Some("retries_exhausted"), None, false),
            ),
            (
                SendResult::Retry {
                    reply: reply("451"),
                    after: None,
                },
                1,
                0,
                ("failed", "retry", Some("retries_exhausted"), None, false),
            ),
            (
                SendResult::Bounced {
                    reply: reply("550"),
                },
                1,
                3,
                ("bounced", "bounced", Some("bounced"), None, true),
            ),
            (
                SendResult::Failed {
                    reply: reply("535"),
                },
                1,
                3,
                ("failed", "failed", Some("rejected"), None, false),
            ),
        ];
        for (answer, tries, max, want) in cases {
            let d = decide(&answer, tries, max, now, B, None);
            let got = (
                d.status,
                d.result,
                d.reason.as_deref(),
                d.due_at,
                d.suppress,
            );
            assert_eq!(got, want, "{answer:?} at try {tries} of 1+{max}");
        }
    }

    #[test]
    fn a_retry_waits_for_the_send_window() {
        let (w, tz) = Window::from_spec(&CallingWindow {
            timezone: "America/New_York".into(),
            days: vec![
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ],
            start: "09:00".into(),
            end: "17:00".into(),
        })
        .unwrap();
        // 16:59:30 in New York on a Wednesday; the retry falls after the close.
        let now = at("2026-12-02T21:59:30Z");
        let d = decide(
            &SendResult::Retry {
                reply: reply("451"),
                after: None,
            },
            1,
            3,
            now,
            Backoff {
                base_ms: 60_000,
                cap_ms: 60_000,
            },
            Some(&(w, tz)),
        );
        assert_eq!(
            d.due_at,
            Some(at("2026-12-03T14:00:00Z").timestamp_millis())
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let got: Vec<i64> = (1..=8).map(|t| B.delay_ms(t)).collect();
        assert_eq!(
            got,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(B.delay_ms(1_000), 60_000);
    }
}
