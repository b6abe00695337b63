//! `sip` agents: a second call leg to the agent's SIP URI, RTP relayed
//! between the legs.
//!
//! The agent leg is dialed while the callee's phone rings, so the agent is
//! there when the callee answers; it carries the call's id and the target's
//! variables as `X-Herald-*` headers (the agent may set a result through
//! `POST /v1/calls/{id}/result`). Audio and key presses are relayed both
//! ways; either side hanging up ends both. An agent leg that is not answered
//! makes the attempt `agent_unavailable`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{Agent, AgentConfig, AgentUnavailable, Session, SessionContext, SessionControl};
use crate::media::MediaEvent;
use crate::sip::{CallEvent, CallMedia, DialDestination, OriginateRequest};
use crate::sip::{PlacedCall, Telephony};

/// The longest header value passed to the agent.
const MAX_HEADER_VALUE: usize = 256;
/// How long the agent leg may ring.
const AGENT_RING_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SipAgent {
    uri: String,
    config: AgentConfig,
    telephony: Arc<dyn Telephony>,
}

impl SipAgent {
    pub fn new(uri: String, config: AgentConfig, telephony: Arc<dyn Telephony>) -> SipAgent {
        SipAgent {
            uri,
            config,
            telephony,
        }
    }
}

/// `X-Herald-*` headers: the call, campaign and target ids, then the
/// target's variables and the agent's parameters. Names keep letters, digits
/// and dashes (`appointment_time` → `X-Herald-Appointment-Time`); values
/// lose line breaks and are cut to 256 bytes.
pub fn agent_headers(ctx: &SessionContext, config: &AgentConfig) -> Vec<(String, String)> {
    let mut h = vec![
        ("X-Herald-Call-Id".to_string(), ctx.attempt_id.clone()),
        ("X-Herald-Call-Sid".to_string(), ctx.call_sid.clone()),
    ];
    for (k, v) in ctx.parameters(config) {
        let name: String = k
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut cs = p.chars();
                let first = cs.next().map(|c| c.to_ascii_uppercase());
                first.into_iter().chain(cs).collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("-");
        if name.is_empty() {
            continue;
        }
        let raw = match v {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        let mut value: String = raw
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if value.len() > MAX_HEADER_VALUE {
            let mut cut = MAX_HEADER_VALUE;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
        }
        h.push((format!("X-Herald-{name}"), value.trim().to_string()));
    }
    h
}

#[async_trait]
impl Agent for SipAgent {
    async fn prepare(&self, ctx: &SessionContext) -> Result<Box<dyn Session>, AgentUnavailable> {
        let req = OriginateRequest {
            attempt_id: format!("{}/agent", ctx.attempt_id),
            destination: DialDestination::Sip {
                uri: self.uri.clone(),
            },
            caller_id: None,
            ring_timeout: AGENT_RING_TIMEOUT,
            max_duration: Duration::from_secs(4 * 3600),
            headers: agent_headers(ctx, &self.config),
        };
        let mut call = self
            .telephony
            .originate(req)
            .await
            .map_err(|e| AgentUnavailable(format!("sip agent {}: {e}", self.uri)))?;
        loop {
            match call.next_event().await {
                Some(CallEvent::Answered { media, .. }) => {
                    return Ok(Box::new(Bridge { call, media }));
                }
                Some(CallEvent::Ended(e)) => {
                    return Err(AgentUnavailable(format!(
                        "sip agent {} did not answer: {}",
                        self.uri, e.reason
                    )))
                }
                Some(_) => {}
                None => {
                    return Err(AgentUnavailable(format!(
                        "sip agent {}: call control stopped",
                        self.uri
                    )))
                }
            }
        }
    }
}

/// The answered agent leg, waiting for the callee.
struct Bridge {
    call: Box<dyn PlacedCall>,
    media: CallMedia,
}

#[async_trait]
impl Session for Bridge {
    async fn run(self: Box<Self>, mut callee: CallMedia, ctl: Arc<SessionControl>) {
        let Bridge {
            mut call,
            media: mut agent,
        } = *self;
        let mut agent_media_open = true;
        loop {
            tokio::select! {
                ev = callee.next_event() => match ev {
                    Some(MediaEvent::Audio { ulaw, .. }) => agent.play(ulaw),
                    Some(MediaEvent::Dtmf(d)) => agent.send_dtmf(d),
                    Some(_) => {}
                    // The callee is gone: so is the agent leg.
                    None => break,
                },
                ev = agent.next_event(), if agent_media_open => match ev {
                    Some(MediaEvent::Audio { ulaw, .. }) => callee.play(ulaw),
                    Some(MediaEvent::Dtmf(d)) => callee.send_dtmf(d),
                    Some(_) => {}
                    None => agent_media_open = false,
                },
                ev = call.next_event() => match ev {
                    Some(CallEvent::Ended(_)) | None => {
                        // The agent hung up: end the callee's call too.
                        ctl.hang_up();
                        return;
                    }
                    Some(_) => {}
                },
            }
        }
        call.hangup();
        // Let the BYE go out before the leg is dropped.
        while let Some(ev) = call.next_event().await {
            if matches!(ev, CallEvent::Ended(_)) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_become_x_herald_headers() {
        let ctx = SessionContext {
            attempt_id: "0190-a".into(),
            call_sid: "CAx".into(),
            stream_sid: "MZx".into(),
            account_sid: "ACx".into(),
            campaign_id: Some("c1".into()),
            target_id: Some("t1".into()),
            to: "+15550001111".into(),
            from: None,
            variables:
                json!({"appointment_time": "9:30\r\nVia: evil", "n": 3, "__": "x", "gone": null})
                    .as_object()
                    .cloned()
                    .unwrap(),
        };
        let config = AgentConfig {
            id: "a".into(),
            name: "a".into(),
            kind: super::super::AgentKind::Sip {
                uri: "sip:a@b".into(),
            },
            parameters: json!({"voice": "x".repeat(300)})
                .as_object()
                .cloned()
                .unwrap(),
            max_concurrent_sessions: 1,
        };
        let h = agent_headers(&ctx, &config);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("X-Herald-Call-Id"), Some("0190-a"));
        assert_eq!(get("X-Herald-Appointment-Time"), Some("9:30  Via: evil"));
        assert_eq!(get("X-Herald-N"), Some("3"));
        assert_eq!(get("X-Herald-Campaign-Id"), Some("c1"));
        assert_eq!(get("X-Herald-Target-Id"), Some("t1"));
        assert_eq!(get("X-Herald-Voice").map(str::len), Some(256));
        assert!(h
            .iter()
            .all(|(k, _)| k != "X-Herald-" && !k.contains("gone")));
    }
}
