//! `media_stream` agents: a WebSocket bot speaking the Twilio Media Streams
//! protocol, herald playing Twilio's side.
//!
//! The socket is opened while the phone rings ([`Agent::prepare`]) and
//! greeted with `connected`. On answer the session sends `start`, then a
//! `media` message every 20 ms until `stop`, as Twilio does: the callee's
//! frames as they arrive, μ-law silence for 20 ms slots in which the callee
//! sent nothing (silence suppression, lost packets, no RTP at all; the RTP
//! session's continuous feed). Also `dtmf` per key press and `mark` echoes
//! once the bot's audio before a mark has played; `stop` when the call
//! ends, then the socket is closed.
//!
//! The bot's `media` is queued for playout (any length, any speed: the RTP
//! session paces it), up to five minutes of queued audio per call
//! ([`crate::media::playout::MAX_QUEUED_BYTES`]; beyond it the excess is
//! dropped, logged once and counted in `herald_playout_dropped_bytes_total`).
//! Its `mark`s are placed in the playout queue; `clear` drops queued audio
//! and echoes the pending marks. A mark named `herald.result:<value>` sets
//! the result when it plays; one dropped by `clear` is echoed but sets
//! nothing (its audio never played). The bot closing the socket hangs up.
//!
//! One task per session: it selects over the socket and the call's media
//! events, and writes from the same loop.
//!
//! Must not: panic on anything the bot sends, or log the URL's credentials.

mod protocol;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Agent, AgentConfig, AgentUnavailable, Session, SessionContext, SessionControl};
use crate::media::MediaEvent;
use crate::sip::CallMedia;
use protocol::{Inbound, Outbound, CONNECTED, RESULT_MARK_PREFIX};

/// How long opening the socket (TCP, TLS, upgrade) may take; well under
/// [`super::PREPARE_TIMEOUT`] so an unreachable bot is reported as such.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the close handshake may take once `stop` was sent (the session
/// has [`super::SESSION_END_GRACE`] in all).
const CLOSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// The largest message accepted from a bot (about 3 minutes of audio).
const MAX_MESSAGE: usize = 2 << 20;
/// Socket buffers: messages are small (a 20 ms frame is ~300 bytes), and
/// there may be thousands of sessions.
const READ_BUFFER: usize = 4 << 10;
const WRITE_BUFFER: usize = 0;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct MediaStreamAgent {
    url: String,
    config: AgentConfig,
}

impl MediaStreamAgent {
    pub fn new(url: String, config: AgentConfig) -> MediaStreamAgent {
        MediaStreamAgent { url, config }
    }
}

/// The URL without credentials or query (for logs and reasons).
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

#[async_trait]
impl Agent for MediaStreamAgent {
    fn prepares_at_ringing(&self) -> bool {
        matches!(
            self.config.kind,
            super::AgentKind::MediaStream {
                at_ringing: true,
                ..
            }
        )
    }

    async fn prepare(&self, ctx: &SessionContext) -> Result<Box<dyn Session>, AgentUnavailable> {
        let unavailable = |why: String| {
            AgentUnavailable(format!(
                "media_stream agent {:?} at {}: {why}",
                self.config.name,
                redacted(&self.url)
            ))
        };
        let connect =
            tokio_tungstenite::connect_async_with_config(&self.url, Some(socket_config()), true);
        let mut ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "not connected within {} ms",
                    CONNECT_TIMEOUT.as_millis()
                )))
            }
            Ok(Err(e)) => return Err(unavailable(format!("cannot connect: {e}"))),
            Ok(Ok((ws, _response))) => ws,
        };
        if let Err(e) = ws
            .send(Message::Text(Utf8Bytes::from_static(CONNECTED)))
            .await
        {
            return Err(unavailable(format!("socket failed: {e}")));
        }
        tracing::debug!(call = %ctx.attempt_id, url = %redacted(&self.url), "media stream connected");
        Ok(Box::new(MediaStreamSession {
            ws,
            out: Outbound::new(&ctx.stream_sid),
            account_sid: ctx.account_sid.clone(),
            call_sid: ctx.call_sid.clone(),
            attempt_id: ctx.attempt_id.clone(),
            parameters: ctx.parameters(&self.config),
        }))
    }
}

struct MediaStreamSession {
    ws: Socket,
    out: Outbound,
    account_sid: String,
    call_sid: String,
    attempt_id: String,
    parameters: Map<String, Value>,
}

/// Why a session loop ended.
enum End {
    /// The call ended: `stop`, then close the socket.
    CallOver,
    /// The bot closed the socket or it failed: hang up.
    BotGone,
}

#[async_trait]
impl Session for MediaStreamSession {
    async fn run(self: Box<Self>, mut media: CallMedia, ctl: Arc<SessionControl>) {
        let mut s = *self;
        let end = s.drive(&mut media, &ctl).await;
        match end {
            End::CallOver => {
                let stop = s.out.stop(&s.account_sid, &s.call_sid);
                let ws = &mut s.ws;
                let close = async {
                    ws.send(Message::Text(stop)).await?;
                    ws.close(None).await?;
                    // Wait for the bot's close frame.
                    while let Some(m) = ws.next().await {
                        m?;
                    }
                    Ok::<_, tokio_tungstenite::tungstenite::Error>(())
                };
                match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(call = %s.attempt_id, "closing the media stream: {e}")
                    }
                    Err(_) => {
                        tracing::debug!(call = %s.attempt_id, "the bot did not close the media stream in time")
                    }
                }
            }
            End::BotGone => {
                tracing::debug!(call = %s.attempt_id, "media stream closed by the bot: hanging up");
                ctl.hang_up();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.ws.close(None)).await;
            }
        }
    }
}

impl MediaStreamSession {
    /// Relays between the call and the socket until one of them ends.
    async fn drive(&mut self, media: &mut CallMedia, ctl: &SessionControl) -> End {
        let start = self
            .out
            .start(&self.account_sid, &self.call_sid, &self.parameters);
        if self.ws.send(Message::Text(start)).await.is_err() {
            return End::BotGone;
        }
        tracing::debug!(call = %self.attempt_id, "start sent");
        media.continuous_audio();
        let mut audio = BytesMut::new();
        loop {
            let msg = tokio::select! {
                biased;
                ev = media.next_event() => {
                    let Some(ev) = ev else { return End::CallOver };
                    let msg = match ev {
                        MediaEvent::Audio { ulaw, .. } => self.out.media(&ulaw),
                        MediaEvent::Dtmf(d) => self.out.dtmf(d),
                        MediaEvent::MarkPlayed(name) => {
                            if let Some(value) = name.strip_prefix(RESULT_MARK_PREFIX) {
                                match ctl.set_result(value) {
                                    Ok(()) => tracing::debug!(call = %self.attempt_id, result = value, "result set by the bot's mark"),
                                    Err(e) => tracing::debug!(call = %self.attempt_id, "result mark ignored: result {e}"),
                                }
                            }
                            self.out.mark(&name)
                        }
                        MediaEvent::MarkCleared(name) => self.out.mark(&name),
                        MediaEvent::Inactive => continue,
                    };
                    if self.ws.send(Message::Text(msg)).await.is_err() {
                        return End::BotGone;
                    }
                    continue;
                }
                msg = self.ws.next() => msg,
            };
            let data = match msg {
                Some(Ok(Message::Text(t))) => Utf8Bytes::into(t),
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Close(_))) | None => return End::BotGone,
                Some(Err(e)) => {
                    tracing::debug!(call = %self.attempt_id, "media stream failed: {e}");
                    return End::BotGone;
                }
                Some(Ok(_)) => continue,
            };
            match protocol::parse_inbound(&data, &mut audio) {
                Ok(Inbound::Media(ulaw)) => media.play(ulaw),
                Ok(Inbound::Mark(name)) => media.mark(name),
                Ok(Inbound::Clear) => media.clear(),
                Ok(Inbound::Other(event)) => {
                    tracing::trace!(call = %self.attempt_id, %event, "bot event ignored")
                }
                Err(e) => tracing::debug!(call = %self.attempt_id, "bot message ignored: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(url: &str) -> MediaStreamAgent {
        let config = AgentConfig {
            id: "a".into(),
            name: "bot".into(),
            kind: super::super::AgentKind::MediaStream {
                url: url.into(),
                at_ringing: true,
            },
            parameters: Map::new(),
            max_concurrent_sessions: 1,
        };
        MediaStreamAgent::new(url.into(), config)
    }

    fn ctx() -> SessionContext {
        SessionContext {
            attempt_id: "0".into(),
            call_sid: "CA0".into(),
            stream_sid: "MZ0".into(),
            account_sid: "AC0".into(),
            campaign_id: None,
            target_id: None,
            to: "+15550001111".into(),
            from: None,
            variables: Map::new(),
        }
    }

    #[tokio::test]
    async fn a_peer_that_is_not_a_websocket_server_is_unavailable_with_the_reason() {
        // A TCP peer that closes at once: neither the TLS nor the upgrade succeeds.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                drop(s);
            }
        });
        for scheme in ["wss", "ws"] {
            let url = format!("{scheme}://user:pw@{addr}/s?token=secret");
            let Err(e) = agent(&url).prepare(&ctx()).await else {
                panic!("{scheme}: connected to a closed socket");
            };
            let reason = e.to_string();
            assert!(reason.contains("cannot connect"), "{reason}");
            assert!(reason.contains(&format!("{scheme}://{addr}/s")), "{reason}");
            assert!(
                !reason.contains("secret") && !reason.contains("pw"),
                "{reason}"
            );
        }
        server.await.unwrap();
    }

    #[test]
    fn urls_in_reasons_lose_credentials_and_query() {
        assert_eq!(
            redacted("wss://user:secret@bot.example.com:8443/stream?token=abc"),
            "wss://bot.example.com:8443/stream"
        );
        assert_eq!(redacted("ws://127.0.0.1:9"), "ws://127.0.0.1:9");
        assert_eq!(redacted("ws://h/s#frag"), "ws://h/s");
    }
}
