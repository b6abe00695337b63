//! The media side of a call as call control sees it: an RTP session bound
//! before the offer is built, started by the first SDP answer (a 183's early
//! media or the 200), and handed to the user as a [`CallMedia`] once answered.
//!
//! Owns: turning SDP answers into a running [`crate::media::RtpSession`],
//! handing its events to the user (who reads them straight from the
//! session), and noticing RTP inactivity (the call task hangs up on it).
//! Must not: packetise audio itself (that is `crate::media`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::MediaConfig;
use crate::media::{
    Codec, MediaEvent, MediaEvents, PortPool, RtpConfig, RtpControl, RtpHandle, RtpSession,
    RtpStats,
};

use super::sdp::{AudioCodec, SdpAnswer};
use crate::media::srtp::{self, MasterKey, SrtpKeys};

/// Binds media sessions for new calls.
pub(super) struct MediaFactory {
    pool: Arc<PortPool>,
    ip: IpAddr,
    inactivity: Duration,
    jitter_ms: u32,
}

impl MediaFactory {
    pub(super) fn new(cfg: &MediaConfig, ip: IpAddr) -> MediaFactory {
        MediaFactory {
            pool: PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max),
            ip,
            inactivity: Duration::from_secs(cfg.rtp_inactivity_timeout_s.max(1)),
            jitter_ms: cfg.jitter_buffer_ms,
        }
    }

    /// Binds the call's RTP socket (before the offer is built).
    pub(super) async fn prepare(&self) -> std::io::Result<PreparedMedia> {
        let session = RtpSession::bind(&self.pool, self.ip).await?;
        Ok(PreparedMedia {
            srtp: None,
            local: session.local_addr(),
            session: Some(session),
            handle: None,
            remote: None,
            inactivity: self.inactivity,
            jitter_ms: self.jitter_ms,
        })
    }
}

/// A call's RTP session: bound, then started by the first usable answer.
pub(super) struct PreparedMedia {
    pub(super) local: SocketAddr,
    session: Option<RtpSession>,
    handle: Option<RtpHandle>,
    remote: Option<SocketAddr>,
    inactivity: Duration,
    jitter_ms: u32,
    /// On a trunk that encrypts: herald's master key, and whether a plain
    /// answer is refused.
    srtp: Option<(MasterKey, bool)>,
}

impl PreparedMedia {
    /// Offers SRTP with a fresh key; `required`: refuses plain RTP.
    pub(super) fn encrypt(&mut self, required: bool) {
        self.srtp = Some((srtp::new_master_key(), required));
    }

    /// herald's master key, on an encrypted call.
    pub(super) fn local_key(&self) -> Option<&MasterKey> {
        self.srtp.as_ref().map(|(k, _)| k)
    }

    /// The SRTP keys for `answer`: `Ok(None)` for plain RTP, `Err` when the
    /// trunk requires SRTP and the answer is plain (or SRTP without a key
    /// herald can use).
    pub(super) fn keys_for(&self, answer: &SdpAnswer) -> Result<Option<SrtpKeys>, String> {
        let Some((local, required)) = &self.srtp else {
            return if answer.secure {
                Err("srtp_unexpected: the answer is RTP/SAVP to a plain RTP offer".into())
            } else {
                Ok(None)
            };
        };
        match (&answer.crypto, answer.secure) {
            (Some(c), true) => Ok(Some(SrtpKeys {
                local: *local,
                remote: c.key,
            })),
            (_, true) => Err(
                "srtp_unusable: the answer is RTP/SAVP without an AES_CM_128_HMAC_SHA1_80 key"
                    .into(),
            ),
            (_, false) if *required => Err("srtp_required: the answer has plain RTP".into()),
            (_, false) => Ok(None),
        }
    }

    /// Starts sending to the answer's address, or redirects a session an
    /// earlier answer started.
    pub(super) fn apply(&mut self, answer: &SdpAnswer) {
        if let Some(h) = &self.handle {
            if self.remote != Some(answer.remote) {
                h.set_remote(answer.remote);
                self.remote = Some(answer.remote);
            }
            return;
        }
        // Media that would not be encrypted as the trunk requires is never started.
        let Ok(srtp) = self.keys_for(answer) else {
            return;
        };
        let Some(session) = self.session.take() else {
            return;
        };
        let cfg = RtpConfig {
            srtp,
            codec: match answer.codec {
                AudioCodec::Pcmu => Codec::Pcmu,
                AudioCodec::Pcma => Codec::Pcma,
            },
            dtmf_payload_type: answer.telephone_event_pt,
            inactivity_timeout: self.inactivity,
            jitter_ms: self.jitter_ms,
        };
        self.remote = Some(answer.remote);
        self.handle = Some(session.start(answer.remote, cfg));
    }

    pub(super) fn take_handle(&mut self) -> Option<RtpHandle> {
        self.handle.take()
    }
}

/// The media of an answered call: μ-law 8 kHz in and out, whatever codec was
/// negotiated. Dropping it does not end the call (hang up with
/// [`super::Call::hangup`]); the session stops when the call ends.
#[derive(Debug)]
pub struct CallMedia {
    local: SocketAddr,
    remote: SocketAddr,
    codec: Codec,
    control: RtpControl,
    events: MediaEvents,
}

impl CallMedia {
    /// herald's RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where the callee's SDP said to send RTP.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The negotiated codec (audio is μ-law to the user either way).
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// A cloneable control of the session (play, mark, clear, DTMF, stats),
    /// e.g. for a task that feeds audio while another reads events.
    pub fn control(&self) -> RtpControl {
        self.control.clone()
    }

    /// Queues μ-law audio of any length; played out at 20 ms per 160 bytes.
    pub fn play(&self, ulaw: Bytes) {
        self.control.play(ulaw);
    }

    /// [`MediaEvent::MarkPlayed`]`(name)` once the audio queued before it has played.
    pub fn mark(&self, name: String) {
        self.control.mark(name);
    }

    /// Drops queued audio; pending marks are reported as
    /// [`MediaEvent::MarkCleared`].
    pub fn clear(&self) {
        self.control.clear();
    }

    /// Makes received audio a continuous feed: one frame per 20 ms from now
    /// on, μ-law silence where the callee sent nothing (see
    /// [`RtpControl::continuous_audio`]).
    pub fn continuous_audio(&self) {
        self.control.continuous_audio();
    }

    /// Sends a key press as RFC 4733 events (when telephone-event was negotiated).
    pub fn send_dtmf(&self, digit: char) {
        self.control.send_dtmf(digit);
    }

    /// The same media, its events seen first by `watch` (see
    /// [`MediaEvents::tap`]): e.g. a detector listening while an agent talks.
    pub fn tap<F>(self, watch: F) -> CallMedia
    where
        F: FnMut(Option<&MediaEvent>) -> Option<MediaEvent> + Send + 'static,
    {
        CallMedia {
            events: self.events.tap(watch),
            ..self
        }
    }

    /// The next received frame, key press, mark or `Inactive`, in order;
    /// `None` once the call has ended. Key presses and marks are never
    /// dropped; audio frames are when the reader falls more than 2 s behind.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.next().await
    }

    /// The session's counters now (the final ones are in `CallEnded`).
    pub fn stats(&self) -> RtpStats {
        self.control.stats()
    }
}

/// The call task's end of a [`CallMedia`]: owns the session, and waits for
/// its inactivity to act on.
pub(super) struct MediaRelay {
    handle: RtpHandle,
    /// The call's SRTP keys, on an encrypted call.
    srtp: Option<SrtpKeys>,
}

/// Builds the user's [`CallMedia`] and the call task's end for `handle`.
pub(super) fn relay(
    handle: RtpHandle,
    answer: &SdpAnswer,
    srtp: Option<SrtpKeys>,
) -> (CallMedia, MediaRelay) {
    let media = CallMedia {
        local: handle.local_addr(),
        remote: answer.remote,
        codec: match answer.codec {
            AudioCodec::Pcmu => Codec::Pcmu,
            AudioCodec::Pcma => Codec::Pcma,
        },
        control: handle.control(),
        events: handle.events(),
    };
    (media, MediaRelay { handle, srtp })
}

impl MediaRelay {
    /// Follows a re-INVITE's (or UPDATE's) offer: its address, its codec,
    /// and hold (`held`: the peer's `sendonly` or `inactive`).
    pub(super) fn renegotiate(&mut self, offer: &SdpAnswer, held: bool) {
        let c = self.handle.control();
        if let (Some(keys), Some(crypto)) = (self.srtp.as_mut(), offer.crypto.as_ref()) {
            if keys.remote != crypto.key {
                keys.remote = crypto.key;
                c.rekey(keys.clone());
            }
        }
        c.move_to(offer.remote);
        c.set_codec(
            match offer.codec {
                AudioCodec::Pcmu => Codec::Pcmu,
                AudioCodec::Pcma => Codec::Pcma,
            },
            offer.telephone_event_pt,
        );
        c.hold(held);
    }

    /// What an offer in the dialog must carry, and herald's answer to it: on
    /// an SRTP call, an SDES key (`Err` without one: media is never moved to
    /// plain RTP); on a plain call, plain RTP. `Ok(Some((tag, key)))`: answer
    /// with herald's key under the offer's tag.
    pub(super) fn answer_crypto(&self, offer: &SdpAnswer) -> Result<Option<(u32, MasterKey)>, ()> {
        match (&self.srtp, &offer.crypto, offer.secure) {
            (Some(keys), Some(c), true) => Ok(Some((c.tag, keys.local))),
            (Some(_), _, _) => Err(()),
            (None, _, true) => Err(()),
            (None, _, false) => Ok(None),
        }
    }

    /// herald's master key, on an SRTP call.
    pub(super) fn local_key(&self) -> Option<&MasterKey> {
        self.srtp.as_ref().map(|k| &k.local)
    }

    /// Resolves when no RTP has been received for the inactivity timeout
    /// (the user sees [`MediaEvent::Inactive`] too).
    pub(super) async fn inactive(&self) {
        self.handle.inactive().await;
    }

    /// Stops the session; its final counters.
    pub(super) async fn stop(self) -> RtpStats {
        self.handle.stop().await
    }
}
