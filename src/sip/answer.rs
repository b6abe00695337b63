//! Taking calls: the UAS side of herald's SIP code, used by the callee
//! simulator (`crate::sim`).
//!
//! Owns: a SIP stack of its own (separate from call control's, which keeps
//! declining INVITEs with 603) that hands each new INVITE to its user as an
//! [`IncomingCall`]; ringing; rejecting with a Q.850 `Reason` and
//! `Retry-After`; ringing until the caller's CANCEL (answered 487);
//! answering with an SDP answer and an RTP session, or with a shared sink
//! socket for calls without media; BYE either way; and removing every dialog
//! it created. Must not: decide how a call is answered (the simulator's
//! population does that) or leak rsipstack types.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, SipMessage, StatusCode, Uri};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::sdp::{self, AudioCodec, SdpAnswer};
use super::stack;
use crate::media::{Codec, PortPool, RtpConfig, RtpControl, RtpHandle, RtpSession};

/// How long a hang-up waits for the caller's ACK before sending BYE anyway.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Where and how the answering stack runs.
#[derive(Debug, Clone)]
pub struct AnswererConfig {
    /// UDP address of the SIP socket (port 0 picks one).
    pub listen: SocketAddr,
    pub user_agent: String,
    /// RTP ports of answered calls with media, `[min, max)`.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
}

/// A running answering stack. Cheap to clone.
#[derive(Clone)]
pub struct Answerer {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    dialogs: Arc<DialogLayer>,
    contact: Uri,
    pool: Arc<PortPool>,
    ip: IpAddr,
    /// Where calls answered without media send their RTP (read and dropped).
    sink: SocketAddr,
    tasks: TaskTracker,
}

/// The stream of new calls.
pub struct IncomingCalls {
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<Transaction>,
}

impl Answerer {
    /// Binds the SIP socket and a media sink; stops on `cancel`.
    pub async fn start(
        cfg: &AnswererConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Answerer, IncomingCalls)> {
        let tasks = TaskTracker::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let st = stack::Stack::start(
            cfg.listen,
            None,
            &cfg.user_agent,
            &tasks,
            cancel.clone(),
            Some(tx),
            Default::default(),
            None,
        )
        .await?;
        let mut local_addr = st.local_addr;
        if local_addr.ip().is_unspecified() {
            local_addr.set_ip(IpAddr::from([127, 0, 0, 1]));
        }
        let ip = local_addr.ip();
        let sink = tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .context("binding the media sink")?;
        let sink_addr = sink.local_addr()?;
        {
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let mut buf = [0u8; 2048];
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        r = sink.recv_from(&mut buf) => if r.is_err() { continue },
                    }
                }
            });
        }
        tasks.close();
        let contact = format!("sip:callee@{local_addr}")
            .as_str()
            .try_into()
            .map_err(|e| anyhow::anyhow!("contact URI: {e}"))?;
        let inner = Arc::new(Inner {
            local_addr,
            dialogs: st.dialogs,
            contact,
            pool: PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max),
            ip,
            sink: sink_addr,
            tasks,
        });
        Ok((
            Answerer {
                inner: inner.clone(),
            },
            IncomingCalls { inner, rx },
        ))
    }

    /// The SIP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Dialogs still tracked (0 once every call has ended).
    pub fn dialogs(&self) -> usize {
        self.inner.dialogs.len()
    }

    /// Waits for the stack's tasks after the cancellation token was cancelled.
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }
}

impl IncomingCalls {
    /// The next new call; `None` once the stack has stopped.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        let tx = self.rx.recv().await?;
        let call_id = tx
            .original
            .call_id_header()
            .map(|h| h.value().to_string())
            .unwrap_or_default();
        let number = tx.original.uri.user().unwrap_or_default().to_string();
        let offer = sdp::parse_offer(&tx.original.body).ok();
        Some(IncomingCall {
            tx,
            inner: self.inner.clone(),
            call_id,
            number,
            offer,
        })
    }
}

/// Why a call was not answered or rejected as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The caller sent CANCEL (answered 487).
    Cancelled,
    /// The INVITE had no usable SDP offer (answered 488).
    NoOffer,
    /// The transaction ended otherwise (shutdown, or the stack refused it).
    Gone,
}

/// A new INVITE, not yet answered. Dropping it leaves the INVITE unanswered.
pub struct IncomingCall {
    tx: Transaction,
    inner: Arc<Inner>,
    call_id: String,
    number: String,
    offer: Option<SdpAnswer>,
}

/// What an answered call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMedia {
    /// An RTP session of its own (audio, DTMF).
    Rtp,
    /// No session: the SDP points at a shared socket that drops what it gets.
    Sink,
}

impl IncomingCall {
    /// The SIP Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The Request-URI's user part (the dialed number).
    pub fn number(&self) -> &str {
        &self.number
    }

    /// Puts a To tag on the INVITE so every response carries the same one.
    fn tag(&mut self) {
        if let Ok(to) = self.tx.original.to_header() {
            if matches!(to.tag(), Ok(None)) {
                let tagged = to.clone().with_tag(rsipstack::transaction::make_tag());
                self.tx.original.headers.unique_push(tagged.into());
            }
        }
    }

    /// Rings for `ring` (180; nothing when zero), then answers `code` with
    /// `Reason: Q.850;cause=…` and `Retry-After` when given.
    pub async fn reject(
        mut self,
        ring: Duration,
        code: u16,
        q850: Option<u16>,
        retry_after: Option<Duration>,
    ) -> Result<(), Unanswered> {
        self.tag();
        if !ring.is_zero() {
            self.tx
                .reply_with(StatusCode::Ringing, vec![], None)
                .await
                .ok();
            let deadline = tokio::time::sleep(ring);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    m = self.tx.receive() => match m {
                        Some(SipMessage::Request(r)) if r.method == Method::Cancel => {
                            self.tx.reply(StatusCode::RequestTerminated).await.ok();
                            return Err(Unanswered::Cancelled);
                        }
                        Some(_) => {}
                        None => return Err(Unanswered::Gone),
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        let mut headers = Vec::new();
        if let Some(cause) = q850 {
            headers.push(Header::Reason(format!("Q.850;cause={cause}").into()));
        }
        if let Some(after) = retry_after {
            headers.push(Header::RetryAfter(after.as_secs().to_string().into()));
        }
        self.tx
            .reply_with(StatusCode::from(code), headers, None)
            .await
            .map_err(|e| {
                debug!(error = %e, "final response not sent");
                Unanswered::Gone
            })
    }

    /// Rings (180) until the caller gives up: CANCEL, answered 487. A
    /// caller that never does gets 480 Temporarily Unavailable after
    /// `give_up`, as a network would answer.
    pub async fn ring_until_cancel(mut self, give_up: Duration) -> Unanswered {
        self.tag();
        self.tx
            .reply_with(StatusCode::Ringing, vec![], None)
            .await
            .ok();
        let deadline = tokio::time::sleep(give_up);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                m = self.tx.receive() => match m {
                    Some(SipMessage::Request(r)) if r.method == Method::Cancel => {
                        self.tx.reply(StatusCode::RequestTerminated).await.ok();
                        return Unanswered::Cancelled;
                    }
                    Some(_) => {}
                    None => return Unanswered::Gone,
                },
                _ = &mut deadline => {
                    self.tx.reply(StatusCode::TemporarilyUnavailable).await.ok();
                    return Unanswered::Gone;
                }
            }
        }
    }

    /// Rings for `ring` (180; nothing when zero), then answers 200 with SDP.
    pub async fn answer(
        mut self,
        ring: Duration,
        media: AnswerMedia,
    ) -> Result<AnsweredCall, Unanswered> {
        let Some(offer) = self.offer.clone() else {
            self.tx
                .reply(StatusCode::NotAcceptableHere)
                .await
                .map_err(|_| Unanswered::Gone)?;
            return Err(Unanswered::NoOffer);
        };
        let inner = self.inner.clone();
        // Media first: a call that cannot get a port is refused before ringing.
        let session = match media {
            AnswerMedia::Rtp => match RtpSession::bind(&inner.pool, inner.ip).await {
                Ok(s) => Some(s),
                Err(e) => {
                    debug!(error = %e, "no RTP port for an answered call");
                    self.tx
                        .reply(StatusCode::ServiceUnavailable)
                        .await
                        .map_err(|_| Unanswered::Gone)?;
                    return Err(Unanswered::Gone);
                }
            },
            AnswerMedia::Sink => None,
        };
        let (state_tx, states) = inner.dialogs.new_dialog_state_channel();
        let dialog = match inner.dialogs.get_or_create_server_invite(
            &self.tx,
            state_tx,
            None,
            Some(inner.contact.clone()),
        ) {
            Ok(d) => d,
            Err(e) => {
                debug!(error = %e, "no server dialog");
                self.tx.reply(StatusCode::ServerInternalError).await.ok();
                return Err(Unanswered::Gone);
            }
        };
        let id = dialog.id();
        let mut handler = dialog.clone();
        let mut tx = self.tx;
        // Drives the INVITE transaction (responses, ACK, CANCEL). Started
        // before ringing; for an immediate answer, after `accept` queued the
        // 200, which then goes out without a 100 Trying before it.
        let mut drive = Some(async move {
            if let Err(e) = handler.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction ended with an error");
            }
        });
        let mut call = AnsweredCall {
            dialog,
            states_open: true,
            states,
            inner: inner.clone(),
            media: None,
            confirmed: false,
            ended: None,
        };
        if !ring.is_zero() {
            if let Some(d) = drive.take() {
                inner.tasks.spawn(d);
            }
            call.dialog.ringing(None, None).ok();
            tokio::select! {
                end = call.next_end() => {
                    return Err(match end {
                        CallEnd::Cancelled => Unanswered::Cancelled,
                        _ => Unanswered::Gone,
                    });
                }
                _ = tokio::time::sleep(ring) => {}
            }
        }
        let local = session
            .as_ref()
            .map(|s| s.local_addr())
            .unwrap_or(inner.sink);
        let body = sdp::build_answer(
            local.ip(),
            local.port(),
            rand::random::<u32>().into(),
            &offer,
        );
        let headers = vec![Header::ContentType("application/sdp".into())];
        if call
            .dialog
            .accept(Some(headers), Some(body.into_bytes()))
            .is_err()
        {
            inner.dialogs.remove_dialog(&id);
            return Err(Unanswered::Gone);
        }
        if let Some(d) = drive.take() {
            inner.tasks.spawn(d);
        }
        call.media = session.map(|s| {
            s.start(
                offer.remote,
                RtpConfig {
                    codec: match offer.codec {
                        AudioCodec::Pcmu => Codec::Pcmu,
                        AudioCodec::Pcma => Codec::Pcma,
                    },
                    dtmf_payload_type: offer.telephone_event_pt,
                    // The simulator never hangs up on silence.
                    inactivity_timeout: Duration::from_secs(3600),
                    jitter_ms: 40,
                    srtp: None,
                },
            )
        });
        Ok(call)
    }
}

/// How an answered call ended from the callee's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// The caller sent BYE.
    CallerHungUp,
    /// The caller cancelled before the answer went out.
    Cancelled,
    /// Anything else (no ACK, shutdown), with rsipstack's reason.
    Other(String),
}

/// An answered (or answering) call. Dropping it stops its media and forgets
/// its dialog; [`AnsweredCall::hangup`] sends BYE first.
pub struct AnsweredCall {
    dialog: InviteDialog,
    states: DialogStateReceiver,
    states_open: bool,
    inner: Arc<Inner>,
    media: Option<RtpHandle>,
    confirmed: bool,
    ended: Option<CallEnd>,
}

impl AnsweredCall {
    /// The call's RTP session, when answered with [`AnswerMedia::Rtp`].
    pub fn media(&self) -> Option<RtpControl> {
        self.media.as_ref().map(|m| m.control())
    }

    /// Waits until the call ends from the other side. Cancel-safe.
    pub async fn next_end(&mut self) -> CallEnd {
        if let Some(end) = &self.ended {
            return end.clone();
        }
        loop {
            let st = if self.states_open {
                self.states.recv().await
            } else {
                std::future::pending().await
            };
            let end = match st {
                Some(DialogState::Confirmed(..)) => {
                    self.confirmed = true;
                    continue;
                }
                Some(DialogState::Terminated(_, TerminatedReason::UacBye)) => CallEnd::CallerHungUp,
                Some(DialogState::Terminated(_, TerminatedReason::UacCancel)) => CallEnd::Cancelled,
                Some(DialogState::Terminated(_, r)) => CallEnd::Other(format!("{r:?}")),
                Some(
                    DialogState::Updated(_, _, h)
                    | DialogState::Info(_, _, h)
                    | DialogState::Options(_, _, h)
                    | DialogState::Notify(_, _, h)
                    | DialogState::Message(_, _, h),
                ) => {
                    h.reply(StatusCode::OK).await.ok();
                    continue;
                }
                Some(DialogState::Refer(_, _, h) | DialogState::Publish(_, _, h)) => {
                    h.reply(StatusCode::NotImplemented).await.ok();
                    continue;
                }
                Some(_) => continue,
                None => {
                    self.states_open = false;
                    continue;
                }
            };
            self.ended = Some(end.clone());
            return end;
        }
    }

    /// Hangs up (BYE), after the caller's ACK when it has not come yet.
    pub async fn hangup(mut self) {
        if self.ended.is_some() {
            return;
        }
        if !self.confirmed {
            let wait = tokio::time::timeout(ACK_WAIT, async {
                while !self.confirmed && self.ended.is_none() {
                    match self.states.recv().await {
                        Some(DialogState::Confirmed(..)) => self.confirmed = true,
                        Some(DialogState::Terminated(..)) | None => {
                            self.ended = Some(CallEnd::Other("ended before the ACK".into()));
                        }
                        Some(_) => {}
                    }
                }
            });
            wait.await.ok();
            if self.ended.is_some() {
                return;
            }
        }
        if let Err(e) = self.dialog.bye().await {
            debug!(error = %e, "BYE failed");
        }
    }
}

impl Drop for AnsweredCall {
    fn drop(&mut self) {
        self.inner.dialogs.remove_dialog(&self.dialog.id());
    }
}
