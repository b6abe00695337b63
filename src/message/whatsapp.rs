//! WhatsApp through the Business Cloud API: a message is one `POST
//! {base_url}/{phone_number_id}/messages` (a template with its body
//! parameters, or free text), a 200 with the message's `wamid` meaning sent.
//! Statuses and the contacts' own messages come back later on the signed
//! webhook (`X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the app
//! secret), read here by [`parse_webhook`] (pure) and applied by the API.
//!
//! Must not: log a token, an app secret or a message body.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::transport::{Outbound, PeerReply, SendResult, Transport, Whatsapp, WhatsappContent};

/// How a Cloud API account is reached.
#[derive(Clone)]
pub struct WhatsappSettings {
    pub base_url: String,
    pub phone_number_id: String,
    pub token: String,
    pub timeout: Duration,
}

pub struct WhatsappTransport {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl WhatsappTransport {
    pub fn new(s: &WhatsappSettings) -> anyhow::Result<WhatsappTransport> {
        let client = reqwest::Client::builder().timeout(s.timeout).build()?;
        Ok(WhatsappTransport {
            client,
            url: format!(
                "{}/{}/messages",
                s.base_url.trim_end_matches('/'),
                s.phone_number_id
            ),
            token: s.token.clone(),
        })
    }
}

/// The request body of one message.
pub fn request_body(m: &Whatsapp) -> Value {
    let to = m.to.trim_start_matches('+');
    match &m.content {
        WhatsappContent::Template {
            name,
            language,
            parameters,
        } => {
            let mut template = json!({"name": name, "language": {"code": language}});
            if !parameters.is_empty() {
                let ps: Vec<Value> = parameters
                    .iter()
                    .map(|p| json!({"type": "text", "text": p}))
                    .collect();
                template["components"] = json!([{"type": "body", "parameters": ps}]);
            }
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                   "type": "template", "template": template})
        }
        WhatsappContent::Text { body } => {
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                   "type": "text", "text": {"preview_url": false, "body": body}})
        }
    }
}

/// What an answer of the messages endpoint comes to.
pub fn send_result(status: u16, retry_after: Option<Duration>, body: &Value) -> SendResult {
    let error = &body["error"];
    let reply = PeerReply {
        code: Some(
            error["code"]
                .as_i64()
                .map_or_else(|| status.to_string(), |c| c.to_string()),
        ),
        text: error["message"]
            .as_str()
            .map(|m| m.chars().take(300).collect()),
    };
    match status {
        200..=299 => match body["messages"][0]["id"].as_str() {
            Some(id) => SendResult::Accepted {
                provider_id: Some(id.to_string()),
                reply: PeerReply {
                    code: Some(status.to_string()),
                    text: None,
                },
            },
            None => SendResult::Retry {
                reply: PeerReply {
                    code: Some(status.to_string()),
                    text: Some("the answer carried no message id".into()),
                },
                after: None,
            },
        },
        429 | 500..=599 => SendResult::Retry {
            reply,
            after: retry_after,
        },
        // Throttling the API reports inside a 400: rate and spam limits.
        _ if matches!(
            error["code"].as_i64(),
            Some(4 | 80007 | 130429 | 131048 | 131056)
        ) =>
        {
            SendResult::Retry {
                reply,
                after: retry_after,
            }
        }
        _ => SendResult::Failed { reply },
    }
}

#[async_trait::async_trait]
impl Transport for WhatsappTransport {
    fn name(&self) -> &'static str {
        "cloud_api"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        let Outbound::Whatsapp(m) = message else {
            return SendResult::Failed {
                reply: PeerReply {
                    code: None,
                    text: Some("the cloud_api transport sends WhatsApp messages only".into()),
                },
            };
        };
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&request_body(m))
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                return SendResult::Retry {
                    reply: PeerReply {
                        code: None,
                        text: Some(format!(
                            "the Cloud API could not be reached: {}",
                            e.without_url()
                        )),
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
        let body: Value = r.json().await.unwrap_or(Value::Null);
        send_result(status, retry_after, &body)
    }
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` with `secret`.
pub fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// A message's status as the webhook reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The `wamid` the send was answered with.
    pub id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    pub recipient: Option<String>,
    pub error_code: Option<String>,
    pub error_title: Option<String>,
    /// Epoch milliseconds (the status's `timestamp`).
    pub at: Option<i64>,
}

/// A contact's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub id: String,
    /// The contact's number, E.164 with `+`.
    pub from: String,
    /// Our number's id (`metadata.phone_number_id`).
    pub to: String,
    /// The text (a text message's body, a button's text), or the type of a
    /// message without text (`[image]`).
    pub body: String,
    /// Epoch milliseconds.
    pub at: Option<i64>,
}

/// What one webhook delivery carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub statuses: Vec<StatusUpdate>,
    pub messages: Vec<InboundMessage>,
}

/// A webhook timestamp (epoch seconds as a string) in milliseconds.
fn epoch_ms(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|s| s.checked_mul(1000))
}

/// Reads a webhook body (`{"object": "whatsapp_business_account",
/// "entry": [{"changes": [{"value": {...}}]}]}`); parts it does not know
/// are skipped, so a new kind of change is acknowledged, not refused.
pub fn parse_webhook(body: &Value) -> Webhook {
    let mut w = Webhook::default();
    let str_of = |v: &Value| v.as_str().map(str::to_string);
    for entry in body["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let ours = str_of(&value["metadata"]["phone_number_id"]).unwrap_or_default();
            for s in value["statuses"].as_array().into_iter().flatten() {
                let (Some(id), Some(status)) = (str_of(&s["id"]), str_of(&s["status"])) else {
                    continue;
                };
                let e = &s["errors"][0];
                w.statuses.push(StatusUpdate {
                    id,
                    status,
                    recipient: str_of(&s["recipient_id"]),
                    error_code: e["code"].as_i64().map(|c| c.to_string()),
                    error_title: str_of(&e["title"]).or_else(|| str_of(&e["message"])),
                    at: epoch_ms(&s["timestamp"]),
                });
            }
            for m in value["messages"].as_array().into_iter().flatten() {
                let (Some(id), Some(from)) = (str_of(&m["id"]), str_of(&m["from"])) else {
                    continue;
                };
                let kind = m["type"].as_str().unwrap_or("unknown");
                let body = str_of(&m["text"]["body"])
                    .or_else(|| str_of(&m["button"]["text"]))
                    .or_else(|| str_of(&m["interactive"]["button_reply"]["title"]))
                    .unwrap_or_else(|| format!("[{kind}]"));
                let at = epoch_ms(&m["timestamp"]);
                w.messages.push(InboundMessage {
                    id,
                    from: format!("+{}", from.trim_start_matches('+')),
                    to: ours.clone(),
                    body,
                    at,
                });
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_carry_their_parameters_in_order() {
        let m = Whatsapp {
            id: uuid::Uuid::nil(),
            to: "+15551230001".into(),
            content: WhatsappContent::Template {
                name: "visit_reminder".into(),
                language: "en_US".into(),
                parameters: vec!["Ann".into(), "9:30".into()],
            },
        };
        let b = request_body(&m);
        assert_eq!(b["to"], "15551230001");
        assert_eq!(b["template"]["language"]["code"], "en_US");
        assert_eq!(
            b["template"]["components"][0]["parameters"][1]["text"],
            "9:30"
        );
    }

    #[test]
    fn answers_map_to_send_results() {
        let ok = json!({"messages": [{"id": "wamid.X"}]});
        assert!(
            matches!(send_result(200, None, &ok), SendResult::Accepted { provider_id: Some(id), .. } if id == "wamid.X")
        );
        let err = |code: i64| json!({"error": {"code": code, "message": "m"}});
        assert!(matches!(
            send_result(400, None, &err(131026)),
            SendResult::Failed { .. }
        ));
        assert!(matches!(
            send_result(400, None, &err(130429)),
            SendResult::Retry { .. }
        ));
        assert!(matches!(
            send_result(503, None, &Value::Null),
            SendResult::Retry { .. }
        ));
        assert!(
            matches!(send_result(429, Some(Duration::from_secs(3)), &Value::Null), SendResult::Retry { after: Some(a), .. } if a.as_secs() == 3)
        );
        match send_result(401, None, &err(190)) {
            SendResult::Failed { reply } => assert_eq!(reply.code.as_deref(), Some("190")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"entry":[]}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_ok("s3cret", body, Some(&good)));
        assert!(!signature_ok("other", body, Some(&good)));
        assert!(!signature_ok("s3cret", b"{}", Some(&good)));
        assert!(!signature_ok("s3cret", body, None));
        assert!(!signature_ok("s3cret", body, Some("sha256=zz")));
    }

    #[test]
    fn webhooks_give_statuses_and_messages() {
        let w = parse_webhook(
            &json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
                "metadata": {"phone_number_id": "1065"},
                "statuses": [{"id": "wamid.A", "status": "failed", "recipient_id": "15551230001",
                              "errors": [{"code": 131026, "title": "Message undeliverable"}]},
                             {"status": "read"}],
                "messages": [{"id": "wamid.B", "from": "15551230001", "timestamp": "1700000000", "type": "text", "text": {"body": "STOP"}},
                             {"id": "wamid.C", "from": "15551230001", "type": "image"}]
            }}]}]}),
        );
        assert_eq!(w.statuses.len(), 1);
        assert_eq!(w.statuses[0].error_code.as_deref(), Some("131026"));
        assert_eq!(w.messages[0].from, "+15551230001");
        assert_eq!(w.messages[0].body, "STOP");
        assert_eq!(w.messages[0].at, Some(1_700_000_000_000));
        assert_eq!(w.messages[1].body, "[image]");
        assert_eq!(parse_webhook(&json!({"entry": "x"})), Webhook::default());
    }
}
