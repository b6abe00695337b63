//! Slack: a message is one `chat.postMessage` with the bot token (to a user
//! id, which opens the bot's direct message, or a channel id), or one POST
//! to an incoming-webhook URL. `ok: true` (a webhook's 200 `ok`) is sent;
//! `ok: false` fails with Slack's error, except the ones that mean "later"
//! (`ratelimited`, server errors); HTTP 429 is retried after `Retry-After`.
//! Slack has no delivery reports: `sent` is final.
//!
//! Must not: log the token, the webhook URL (it is a credential) or a body.

use std::time::Duration;

use serde_json::{json, Value};

use super::transport::{Outbound, PeerReply, SendResult, SlackMessage, Transport};

/// Where Slack messages go.
#[derive(Clone)]
pub enum SlackTarget {
    /// `chat.postMessage` at `{base_url}/chat.postMessage` with a bot token.
    Bot { base_url: String, token: String },
    /// An incoming webhook (its URL is the credential).
    Webhook { url: String },
}

pub struct SlackTransport {
    client: reqwest::Client,
    target: SlackTarget,
}

impl SlackTransport {
    pub fn new(target: SlackTarget, timeout: Duration) -> anyhow::Result<SlackTransport> {
        Ok(SlackTransport {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            target,
        })
    }
}

/// Slack errors that mean "try again later".
const TEMPORARY: [&str; 4] = [
    "ratelimited",
    "internal_error",
    "service_unavailable",
    "request_timeout",
];

/// What an answer comes to: `status`, `Retry-After`, and the body (JSON for
/// the Web API, text for a webhook).
pub fn send_result(status: u16, retry_after: Option<Duration>, body: &str) -> SendResult {
    let code = |c: &str| Some(c.to_string());
    if status == 429 || status >= 500 {
        return SendResult::Retry {
            reply: PeerReply {
                code: code(&status.to_string()),
                text: Some(body.chars().take(200).collect()),
            },
            after: retry_after,
        };
    }
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => SendResult::Accepted {
            provider_id: v["ts"].as_str().map(str::to_string),
            reply: PeerReply {
                code: code("ok"),
                text: None,
            },
        },
        Some(false) => {
            let error = v["error"].as_str().unwrap_or("unknown_error").to_string();
            let reply = PeerReply {
                code: Some(error.clone()),
                text: Some(format!("Slack answered ok: false ({error})")),
            };
            if TEMPORARY.contains(&error.as_str()) {
                SendResult::Retry {
                    reply,
                    after: retry_after,
                }
            } else {
                SendResult::Failed { reply }
            }
        }
        // An incoming webhook answers text: `ok`, or the error's name.
        None if (200..300).contains(&status) && body.trim() == "ok" => SendResult::Accepted {
            provider_id: None,
            reply: PeerReply {
                code: code("ok"),
                text: None,
            },
        },
        None => SendResult::Failed {
            reply: PeerReply {
                code: code(&status.to_string()),
                text: Some(body.chars().take(200).collect()),
            },
        },
    }
}

#[async_trait::async_trait]
impl Transport for SlackTransport {
    fn name(&self) -> &'static str {
        match self.target {
            SlackTarget::Bot { .. } => "bot",
            SlackTarget::Webhook { .. } => "webhook",
        }
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        let Outbound::Slack(SlackMessage { to, text, .. }) = message else {
            return SendResult::Failed {
                reply: PeerReply {
                    code: None,
                    text: Some("the slack transport sends Slack messages only".into()),
                },
            };
        };
        let request = match &self.target {
            SlackTarget::Bot { base_url, token } => self
                .client
                .post(format!(
                    "{}/chat.postMessage",
                    base_url.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .json(&json!({"channel": to, "text": text})),
            SlackTarget::Webhook { url } => self.client.post(url).json(&json!({"text": text})),
        };
        let r = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return SendResult::Retry {
                    reply: PeerReply {
                        code: None,
                        text: Some(format!("Slack could not be reached: {}", e.without_url())),
                    },
                    after: None,
                }
            }
        };
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = r.text().await.unwrap_or_default();
        send_result(status, retry_after, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_send_results() {
        assert!(matches!(
            send_result(200, None, r#"{"ok": true, "channel": "D1", "ts": "1700000000.0001"}"#),
            SendResult::Accepted { provider_id: Some(ts), .. } if ts == "1700000000.0001"
        ));
        match send_result(200, None, r#"{"ok": false, "error": "channel_not_found"}"#) {
            SendResult::Failed { reply } => {
                assert_eq!(reply.code.as_deref(), Some("channel_not_found"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            send_result(200, None, r#"{"ok": false, "error": "ratelimited"}"#),
            SendResult::Retry { .. }
        ));
        assert!(matches!(
            send_result(429, Some(Duration::from_secs(2)), ""),
            SendResult::Retry { after: Some(a), .. } if a.as_secs() == 2
        ));
        assert!(matches!(
            send_result(200, None, "ok"),
            SendResult::Accepted {
                provider_id: None,
                ..
            }
        ));
        assert!(matches!(
            send_result(404, None, "no_service"),
            SendResult::Failed { .. }
        ));
    }
}
