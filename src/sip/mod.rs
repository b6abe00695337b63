//! Call control: herald's SIP user agent over rsipstack.
//!
//! Owns: originating calls (INVITE, ring timeout → CANCEL, max duration → BYE),
//! out-of-dialog MESSAGEs through a trunk (RFC 3428), digest auth, the incoming-request loop (BYE, OPTIONS, 481 for strangers),
//! SDP offer/answer, trunk limits, and the pure classification of SIP
//! responses into [`crate::domain::Outcome`]s. Nothing outside this module
//! names rsipstack types: callers see [`CallControl`], [`Call`],
//! [`CallEvent`] and [`MessageResult`]. Must not: touch the database or decide retries.

pub mod answer;
mod auth;
mod call;
pub mod classify;
pub mod digest;
mod guard;
mod in_dialog;
pub mod inbound_message;
mod links;
mod media;
mod message;
pub mod register;
pub mod sdp;
mod stack;
mod target;
mod telephony;
mod timers;
mod trunk;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::{MediaConfig, SipConfig, TrunkConfig};
use crate::domain::Outcome;

pub use media::CallMedia;
pub use telephony::{PlacedCall, Telephony};
pub use trunk::TrunkStats;

/// How long a shutting-down call control waits for live calls to send their
/// CANCEL/BYE before the transport closes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// herald's SIP user agent. Cheap to clone; every clone drives the same stack.
#[derive(Clone)]
pub struct CallControl {
    inner: Arc<Inner>,
}

struct Inner {
    stack: stack::Stack,
    /// Address put in Contact, From (SIP destinations) and SDP.
    advertised: SocketAddr,
    trunks: BTreeMap<String, Arc<trunk::Trunk>>,
    media: media::MediaFactory,
    /// Per-call tasks.
    calls: TaskTracker,
    /// Stack tasks (endpoint, incoming loop, request handlers, CANCEL/BYE helpers).
    tasks: TaskTracker,
    shutdown: CancellationToken,
    timers: timers::TimerConfig,
}

/// One call to place.
#[derive(Debug, Clone)]
pub struct OriginateRequest {
    /// The attempt id; also sent as header `X-Herald-Attempt`.
    pub attempt_id: String,
    pub destination: DialDestination,
    /// E.164 caller ID; else the trunk's `caller_id`.
    pub caller_id: Option<String>,
    /// No answer by then → CANCEL, outcome `no_answer`.
    pub ring_timeout: Duration,
    /// Answered calls are hung up (BYE) after this long.
    pub max_duration: Duration,
    /// Extra headers, e.g. `X-Herald-*` for SIP agents.
    pub headers: Vec<(String, String)>,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialDestination {
    /// An E.164 number, dialed through the named trunk's proxy.
    Tel { number: String, trunk: String },
    /// A SIP URI, dialed directly at its host.
    Sip { uri: String },
}

/// Why a call could not be started at all (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    #[error("no trunk named {0:?}")]
    UnknownTrunk(String),
    #[error("trunk {trunk:?} is at its limit of {limit} concurrent calls")]
    TrunkBusy { trunk: String, limit: u32 },
    #[error("invalid destination: {0}")]
    InvalidDestination(String),
    #[error("invalid caller id {0:?}")]
    InvalidCallerId(String),
    #[error("cannot set up media: {0}")]
    Media(#[from] std::io::Error),
    #[error("call control is shutting down")]
    ShuttingDown,
}

/// What became of one MESSAGE that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// The final response: its status, its reason phrase (the peer's own
    /// when it sent one) and its `Retry-After`, if any.
    Replied {
        status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// No final response before Timer F (64*T1).
    TimedOut,
    /// The request could not be sent (no transport, no Via).
    NotSent(String),
}

/// Why a MESSAGE was not sent at all.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("no trunk named {0:?}")]
    UnknownTrunk(String),
    #[error("trunk {trunk:?} uses transport {transport:?}; MESSAGEs go over UDP trunks only")]
    UnsupportedTransport { trunk: String, transport: String },
    #[error("invalid destination: {0}")]
    InvalidDestination(String),
    #[error("invalid sender {0:?}")]
    InvalidSender(String),
    #[error("call control is shutting down")]
    ShuttingDown,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    /// The callee or the network: a final error response, or the callee's BYE.
    Callee,
    /// herald, on request ([`Call::hangup`]) or at shutdown.
    Herald,
    /// herald, because the ring timeout, the max duration or the RTP
    /// inactivity timeout elapsed.
    Timeout,
    /// Nobody: the call failed (transport error, no response, bad SDP).
    Error,
}

/// What happens to a call, in order. `Ended` is always last.
#[derive(Debug)]
pub enum CallEvent {
    InviteSent {
        at: DateTime<Utc>,
    },
    Trying,
    Ringing {
        at: DateTime<Utc>,
        early_media: bool,
    },
    Answered {
        at: DateTime<Utc>,
        media: CallMedia,
    },
    Ended(CallEnded),
}

/// How a call ended, with everything the attempt row records.
#[derive(Debug, Clone)]
pub struct CallEnded {
    pub outcome: Outcome,
    /// The final SIP status of the INVITE, if one arrived.
    pub sip_code: Option<u16>,
    /// From `Reason: Q.850;cause=NN` on the final response or the callee's BYE.
    pub q850_cause: Option<u16>,
    /// From `Retry-After` on the final response.
    pub retry_after: Option<Duration>,
    pub hangup_by: HangupBy,
    /// Human-readable detail, e.g. "486 Busy Here" or "ring timeout".
    pub reason: String,
    pub invite_sent_at: Option<DateTime<Utc>>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    /// RTP counters of an answered call.
    pub media_stats: Option<crate::media::RtpStats>,
}

/// A call in progress: its events, and a way to end it. Dropping it hangs up.
pub struct Call {
    call_id: String,
    events: mpsc::UnboundedReceiver<CallEvent>,
    hangup: CancellationToken,
    ended: bool,
}

impl Call {
    /// The SIP Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The next event; `None` once `Ended` has been returned.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        if self.ended {
            return None;
        }
        let ev = self.events.recv().await;
        if matches!(ev, Some(CallEvent::Ended(_)) | None) {
            self.ended = true;
        }
        ev
    }

    /// CANCEL while ringing, BYE once answered. Idempotent.
    pub fn hangup(&self) {
        self.hangup.cancel();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.hangup.cancel();
    }
}

impl CallControl {
    /// Binds the UDP transport on `sip.listen` and starts the incoming-request
    /// loop; stops on `cancel` (live calls are hung up first).
    pub async fn start(
        sip: &SipConfig,
        media: &MediaConfig,
        trunks: &BTreeMap<String, TrunkConfig>,
        cancel: CancellationToken,
    ) -> anyhow::Result<CallControl> {
        Self::start_with_metrics(sip, media, trunks, cancel, Default::default()).await
    }

    /// As [`CallControl::start`], counting malformed datagrams on the SIP
    /// port in `metrics`.
    pub async fn start_with_metrics(
        sip: &SipConfig,
        media: &MediaConfig,
        trunks: &BTreeMap<String, TrunkConfig>,
        cancel: CancellationToken,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<CallControl> {
        let listen: SocketAddr = sip
            .listen
            .parse()
            .with_context(|| format!("sip.listen {:?} is not an ip:port", sip.listen))?;
        let public: Option<SocketAddr> = if sip.public_addr.is_empty() {
            None
        } else {
            Some(parse_public(&sip.public_addr, listen.port())?)
        };
        let trunks: BTreeMap<String, Arc<trunk::Trunk>> = trunks
            .iter()
            .map(|(name, cfg)| Ok((name.clone(), trunk::Trunk::new(name, cfg)?)))
            .collect::<anyhow::Result<_>>()?;
        let tasks = TaskTracker::new();
        let calls = TaskTracker::new();
        let stack_stop = CancellationToken::new();
        let stack = stack::Stack::start(
            listen,
            public,
            &sip.user_agent,
            &tasks,
            stack_stop.clone(),
            None,
            metrics,
            stack::TlsListen::from_config(sip)?,
        )
        .await?;
        let mut advertised = public.unwrap_or(stack.local_addr);
        if advertised.ip().is_unspecified() {
            advertised.set_ip(IpAddr::from([127, 0, 0, 1]));
        }
        // Shutdown: stop taking calls, let live ones hang up, then close the stack.
        {
            let calls = calls.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                cancel.cancelled().await;
                calls.close();
                tokio::time::timeout(SHUTDOWN_GRACE, calls.wait())
                    .await
                    .ok();
                stack_stop.cancel();
            });
        }
        tasks.close();
        // Trunks that register: kept registered until shutdown, unregistered
        // before the stack closes (the tasks count as calls for that).
        for t in trunks.values().filter(|t| t.cfg.register) {
            calls.spawn(
                register::keep_registered(
                    stack.dialogs.endpoint.clone(),
                    t.clone(),
                    advertised,
                    cancel.clone(),
                )
                .instrument(tracing::info_span!("register", trunk = %t.name)),
            );
        }
        let inner = Inner {
            stack,
            advertised,
            trunks,
            media: media::MediaFactory::new(media, advertised.ip()),
            calls,
            tasks,
            shutdown: cancel,
            timers: timers::TimerConfig {
                session_expires_s: sip.session_expires_s,
                min_se_s: sip.min_se_s,
            },
        };
        Ok(CallControl {
            inner: Arc::new(inner),
        })
    }

    /// The SIP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.stack.local_addr
    }

    /// Calls between their INVITE and their end.
    /// Takes the MESSAGEs phones send to herald from now on (once; a
    /// second call gets `None`). Until then they are answered 405.
    pub fn receive_messages(
        &self,
    ) -> Option<tokio::sync::mpsc::Receiver<inbound_message::SipInbound>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        self.inner.stack.messages.set(tx).ok().map(|()| rx)
    }

    pub fn live_calls(&self) -> usize {
        self.inner.stack.registry.len()
    }

    /// Dialogs the SIP stack still tracks; 0 once every call has ended
    /// (a dialog left behind would be a leak).
    pub fn sip_dialogs(&self) -> usize {
        self.inner.stack.dialogs.len()
    }

    /// Counters and limits of a trunk.
    pub fn trunk_stats(&self, trunk: &str) -> Option<TrunkStats> {
        self.inner.trunks.get(trunk).map(|t| t.stats())
    }

    /// Every trunk's counters, limits and registration, by name.
    pub fn all_trunk_stats(&self) -> Vec<TrunkStats> {
        self.inner.trunks.values().map(|t| t.stats()).collect()
    }

    /// Why calls on `trunk` cannot go now (registering and not registered).
    pub fn trunk_unready(&self, trunk: &str) -> Option<String> {
        self.inner.trunks.get(trunk).and_then(|t| t.unready())
    }

    /// Waits until every task of this call control has finished (after the
    /// cancellation token given to [`CallControl::start`] was cancelled).
    pub async fn stopped(&self) {
        self.inner.calls.wait().await;
        self.inner.tasks.wait().await;
    }

    /// Places a call. Returns once the call is set up locally (media socket
    /// bound, task started); its progress comes as [`CallEvent`]s.
    pub async fn originate(&self, req: OriginateRequest) -> Result<Call, OriginateError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() || inner.calls.is_closed() {
            return Err(OriginateError::ShuttingDown);
        }
        let target = target::resolve(req, &inner.trunks, inner.advertised)?;
        let mut media = inner.media.prepare().await?;
        if let Some(t) = target.trunk.as_ref() {
            match t.cfg.media_encryption.as_str() {
                "sdes" => media.encrypt(false),
                "required" => media.encrypt(true),
                _ => {}
            }
        }
        let call_id = format!("{}@herald", uuid::Uuid::new_v4().simple());
        let notes = inner.stack.registry.insert(&call_id);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let hangup = CancellationToken::new();
        let span = tracing::info_span!("call", attempt = %target.attempt_id, call_id = %call_id);
        let run = call::CallRun {
            call_id: call_id.clone(),
            target,
            media,
            dialogs: inner.stack.dialogs.clone(),
            registry: inner.stack.registry.clone(),
            tasks: inner.tasks.clone(),
            events: events_tx,
            notes,
            hangup: hangup.clone(),
            shutdown: inner.shutdown.clone(),
            timers: inner.timers,
        };
        inner.calls.spawn(run.run().instrument(span));
        Ok(Call {
            call_id,
            events: events_rx,
            hangup,
            ended: false,
        })
    }
}

impl CallControl {
    /// Sends `body` as one out-of-dialog MESSAGE (RFC 3428) to `to` (E.164,
    /// through trunk `trunk`; or a SIP URI, straight to its host), from
    /// `sender` or else the trunk's `from_user`, and waits for its final
    /// response. A 401/407 is answered with the trunk's credentials, as for
    /// INVITEs. A MESSAGE in flight holds shutdown back like a live call
    /// (at most Timer F, twice with a challenge).
    pub async fn send_message(
        &self,
        trunk: &str,
        sender: Option<&str>,
        to: &str,
        body: &str,
    ) -> Result<MessageResult, MessageError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() || inner.calls.is_closed() {
            return Err(MessageError::ShuttingDown);
        }
        let target = message::resolve(trunk, sender, to, &inner.trunks, inner.advertised)?;
        let endpoint = inner.stack.dialogs.endpoint.clone();
        let body = body.to_string();
        // A bound on the whole exchange, in case the stack stops under it.
        let limit = stack::TRANSACTION_TIMEOUT * 2 + Duration::from_secs(2);
        let run = inner.calls.spawn(
            async move {
                tokio::time::timeout(limit, message::send(endpoint, target, &body))
                    .await
                    .unwrap_or(MessageResult::TimedOut)
            }
            .instrument(tracing::info_span!("message")),
        );
        Ok(run
            .await
            .unwrap_or_else(|e| MessageResult::NotSent(format!("MESSAGE task failed: {e}"))))
    }
}

fn parse_public(public: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = public.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = public
        .parse()
        .with_context(|| format!("sip.public_addr {public:?} is not an ip or ip:port"))?;
    Ok(SocketAddr::new(ip, port))
}
