//! Contacts' own messages (SMPP mobile-originated `deliver_sm`, WhatsApp
//! webhook messages): each kept once, SMS keywords obeyed (STOP and its
//! synonyms suppress the number and get one confirmation, START lifts it,
//! HELP gets the help text), then routed: to the open conversation on the
//! same channel between the same addresses (its worker, or `unassigned`
//! when it routes replies to anyone), else to `unassigned`.
//!
//! Must not: log a message's text.

use serde_json::json;

use crate::config::ConversationsConfig;
use crate::message::service::Messaging;
use crate::message::sms_text;
use crate::message::status::MessageChannel;
use crate::store::conversations::{address_key, route_of, NewConversationMessage};
use crate::store::inbound::NewInbound;
use crate::store::messages::NewMessage;
use crate::store::{Store, StoreError};

/// A contact's message as a transport received it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: &'static str,
    /// The provider's id (a wamid); `None` when the protocol has none (an
    /// SMPP MO), then one is made from the time, addresses and text.
    pub provider_id: Option<String>,
    pub from: String,
    pub to: String,
    pub body: String,
    pub at: i64,
}

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
    Help,
}

/// The SMS keyword a whole message is (case-insensitive, spaces around
/// ignored), if any.
pub fn keyword(body: &str) -> Option<Keyword> {
    match body.trim().to_ascii_uppercase().as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Some(Keyword::Stop),
        "START" | "UNSTOP" => Some(Keyword::Start),
        "HELP" => Some(Keyword::Help),
        _ => None,
    }
}

#[derive(Clone)]
pub struct Inbox {
    pub store: Store,
    pub messaging: Messaging,
    pub settings: ConversationsConfig,
}

impl Inbox {
    /// Keeps and routes one received message. Returns once it is stored, so
    /// the transport may acknowledge it.
    pub async fn receive(&self, m: Inbound) -> Result<(), StoreError> {
        let provider_id = m.provider_id.clone().unwrap_or_else(|| {
            format!(
                "{}:{}:{}:{}",
                m.at,
                address_key(&m.from),
                address_key(&m.to),
                hex_hash(&m.body)
            )
        });
        let new = self
            .store
            .record_inbound(&[NewInbound {
                channel: m.channel.into(),
                provider_id: provider_id.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                body: m.body.clone(),
                received_at: m.at,
            }])
            .await?;
        if new == 0 {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_millis();
        if m.channel == "sms" {
            if let Some(k) = keyword(&m.body) {
                self.obey(k, &m, now).await?;
            }
        }
        let open = self
            .store
            .open_conversation_for(m.channel, &address_key(&m.to), &address_key(&m.from))
            .await?;
        match open {
            Some(c) => {
                let route = route_of(&c);
                let added = self
                    .store
                    .add_conversation_message(
                        &c,
                        &NewConversationMessage {
                            direction: "in",
                            message_id: &provider_id,
                            body: &m.body,
                        },
                        &route,
                        now,
                    )
                    .await;
                match added {
                    // Closed meanwhile: it goes to anyone.
                    Err(StoreError::Conflict(_)) => self.unassigned(&m, &provider_id, now).await,
                    other => other.map(|_| ()),
                }
            }
            None => self.unassigned(&m, &provider_id, now).await,
        }
    }

    async fn unassigned(&self, m: &Inbound, id: &str, now: i64) -> Result<(), StoreError> {
        self.store
            .log_global_event(
                "conversation.message",
                json!({"conversation_id": null, "channel": m.channel, "worker": null, "route": "unassigned",
                       "direction": "in", "message_id": id, "from": m.to, "to": m.from, "body": m.body}),
                now,
            )
            .await
    }

    /// Applies a keyword and sends its one reply.
    async fn obey(&self, k: Keyword, m: &Inbound, now: i64) -> Result<(), StoreError> {
        let reply = match k {
            Keyword::Stop => {
                self.store
                    .add_suppression("sms", &m.from, "stop_keyword", now)
                    .await?;
                if self.settings.stop_adds_dnc {
                    self.store.add_dnc(&m.from, "stop_keyword", now).await?;
                }
                &self.settings.stop_reply
            }
            Keyword::Start => {
                self.store.delete_suppression("sms", &m.from).await?;
                &self.settings.start_reply
            }
            Keyword::Help => &self.settings.help_reply,
        };
        if reply.trim().is_empty() || self.messaging.sms.is_none() {
            return Ok(());
        }
        // The confirmation goes even to a number just suppressed: it is the
        // one message STOP asks for.
        let info = sms_text::analyse(reply);
        let id = crate::store::new_id();
        let row = NewMessage {
            id: id.clone(),
            channel: "sms".into(),
            recipient: m.from.clone(),
            request: json!({"to": m.from, "from": m.to, "body": reply, "keyword_reply": true})
                .to_string(),
            rendered: json!({"from": m.to, "to": m.from, "body": reply, "encoding": info.encoding,
                             "segments": info.segments, "keyword_reply": true})
            .to_string(),
            template_id: None,
            template_version: None,
            idempotency_key: Some(format!("keyword-reply:{id}")),
            request_hash: String::new(),
            rfc_message_id: None,
            max_retries: 3,
            due_at: now,
            priority: 1,
        };
        self.store.accept_message(&row, now).await?;
        self.messaging.wake(MessageChannel::Sms);
        Ok(())
    }
}

/// Takes the SMSC's mobile-originated messages to the inbox, answering each
/// once it is kept (a store error answers "try again": the SMSC delivers it
/// again).
pub async fn receive_sms(
    inbox: Inbox,
    mut rx: tokio::sync::mpsc::Receiver<crate::message::smpp::InboundSms>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let sms = tokio::select! {
            _ = cancel.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let kept = inbox
            .receive(Inbound {
                channel: "sms",
                provider_id: None,
                from: sms.from,
                to: sms.to,
                body: sms.text,
                at: chrono::Utc::now().timestamp_millis(),
            })
            .await;
        if let Err(e) = &kept {
            tracing::warn!(error = %e, "keeping a received SMS failed; the SMSC is asked to deliver it again");
        }
        let _ = sms.kept.send(kept.is_ok());
    }
}

/// Takes the SIP MESSAGEs phones send to herald to the inbox (as SMS:
/// SIP MESSAGE is an SMS transport), answering each once it is kept.
pub async fn receive_sip(
    inbox: Inbox,
    mut rx: tokio::sync::mpsc::Receiver<crate::sip::inbound_message::SipInbound>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let m = tokio::select! {
            _ = cancel.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let plus = |n: String| {
            if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
                format!("+{n}")
            } else {
                n
            }
        };
        let kept = inbox
            .receive(Inbound {
                channel: "sms",
                provider_id: Some(format!("sip:{}", m.id)),
                from: plus(m.from),
                to: plus(m.to),
                body: m.body,
                at: chrono::Utc::now().timestamp_millis(),
            })
            .await;
        if let Err(e) = &kept {
            tracing::warn!(error = %e, "keeping a received SIP MESSAGE failed; it is answered 500");
        }
        let _ = m.kept.send(kept.is_ok());
    }
}

fn hex_hash(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_messages_in_any_case() {
        assert_eq!(keyword("stop"), Some(Keyword::Stop));
        assert_eq!(keyword(" Unsubscribe \n"), Some(Keyword::Stop));
        assert_eq!(keyword("QUIT"), Some(Keyword::Stop));
        assert_eq!(keyword("unstop"), Some(Keyword::Start));
        assert_eq!(keyword("help"), Some(Keyword::Help));
        assert_eq!(keyword("please stop"), None);
        assert_eq!(keyword("STOP!"), None);
    }
}
