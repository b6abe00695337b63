//! The media side of a call as call control sees it: an RTP session bound
//! before the offer is built, started by the first SDP answer (a 183's early
//! media or the 200), and handed to the user as a [`CallMedia`] once answered.
//!
//! Owns: turning SDP answers into a running [`crate::media::RtpSession`],
//! relaying the user's commands to it and its events to the user, and noticing
//! RTP inactivity (the call task hangs up on it). Must not: packetise audio
//! itself (that is `crate::media`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::MediaConfig;
use crate::media::{Codec, MediaEvent, PortPool, RtpConfig, RtpHandle, RtpSession, RtpStats};

use super::sdp::{AudioCodec, SdpAnswer};

/// Received audio frames held for a slow [`CallMedia`] reader before new ones
/// are dropped (2 s).
const AUDIO_BACKLOG: usize = 100;

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
}

impl PreparedMedia {
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
        let Some(session) = self.session.take() else {
            return;
        };
        let cfg = RtpConfig {
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

/// What the user asks of the media.
#[derive(Debug)]
pub(super) enum MediaCommand {
    Play(Bytes),
    Mark(String),
    Clear,
    Dtmf(char),
}

/// The media of an answered call: μ-law 8 kHz in and out, whatever codec was
/// negotiated. Dropping it does not end the call (hang up with
/// [`super::Call::hangup`]); the session stops when the call ends.
#[derive(Debug)]
pub struct CallMedia {
    local: SocketAddr,
    remote: SocketAddr,
    codec: Codec,
    commands: mpsc::UnboundedSender<MediaCommand>,
    audio: mpsc::Receiver<MediaEvent>,
    control: mpsc::UnboundedReceiver<MediaEvent>,
    stats: Arc<Mutex<RtpStats>>,
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

    /// Queues μ-law audio of any length; played out at 20 ms per 160 bytes.
    pub fn play(&self, ulaw: Bytes) {
        self.commands.send(MediaCommand::Play(ulaw)).ok();
    }

    /// [`MediaEvent::MarkPlayed`]`(name)` once the audio queued before it has played.
    pub fn mark(&self, name: String) {
        self.commands.send(MediaCommand::Mark(name)).ok();
    }

    /// Drops queued audio; pending marks are reported played.
    pub fn clear(&self) {
        self.commands.send(MediaCommand::Clear).ok();
    }

    /// Sends a key press as RFC 4733 events (when telephone-event was negotiated).
    pub fn send_dtmf(&self, digit: char) {
        self.commands.send(MediaCommand::Dtmf(digit)).ok();
    }

    /// The next received frame, key press or mark; `None` once the call has
    /// ended. Key presses and marks are never dropped; audio frames are when
    /// the reader falls more than 2 s behind.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        tokio::select! {
            biased;
            Some(ev) = self.control.recv() => Some(ev),
            Some(ev) = self.audio.recv() => Some(ev),
            else => None,
        }
    }

    /// Counters as of the last second (final ones are in `CallEnded`).
    pub fn stats(&self) -> RtpStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The call task's end of a [`CallMedia`]: relays events and commands.
pub(super) struct MediaRelay {
    pub(super) handle: RtpHandle,
    pub(super) commands: mpsc::UnboundedReceiver<MediaCommand>,
    audio: mpsc::Sender<MediaEvent>,
    control: mpsc::UnboundedSender<MediaEvent>,
    stats: Arc<Mutex<RtpStats>>,
    events_since_stats: u32,
    pub(super) audio_dropped: u64,
}

/// Builds the user's [`CallMedia`] and the call task's relay for `handle`.
pub(super) fn relay(handle: RtpHandle, answer: &SdpAnswer) -> (CallMedia, MediaRelay) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_BACKLOG);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(handle.stats()));
    let media = CallMedia {
        local: handle.local_addr(),
        remote: answer.remote,
        codec: match answer.codec {
            AudioCodec::Pcmu => Codec::Pcmu,
            AudioCodec::Pcma => Codec::Pcma,
        },
        commands: cmd_tx,
        audio: audio_rx,
        control: ctl_rx,
        stats: stats.clone(),
    };
    let relay = MediaRelay {
        handle,
        commands: cmd_rx,
        audio: audio_tx,
        control: ctl_tx,
        stats,
        events_since_stats: 0,
        audio_dropped: 0,
    };
    (media, relay)
}

impl MediaRelay {
    /// Passes one session event to the user. Returns `true` for
    /// [`MediaEvent::Inactive`], which the call task acts on.
    pub(super) fn forward(&mut self, ev: MediaEvent) -> bool {
        self.events_since_stats += 1;
        if self.events_since_stats >= 50 {
            self.events_since_stats = 0;
            if let Ok(mut s) = self.stats.lock() {
                *s = self.handle.stats();
            }
        }
        match ev {
            MediaEvent::Audio { .. } => {
                if self.audio.try_send(ev).is_err() {
                    self.audio_dropped += 1;
                }
                false
            }
            MediaEvent::Inactive => {
                self.control.send(MediaEvent::Inactive).ok();
                true
            }
            other => {
                self.control.send(other).ok();
                false
            }
        }
    }

    pub(super) fn apply(&self, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Play(b) => self.handle.play(b),
            MediaCommand::Mark(m) => self.handle.mark(m),
            MediaCommand::Clear => self.handle.clear(),
            MediaCommand::Dtmf(d) => self.handle.send_dtmf(d),
        }
    }

    /// Stops the session; its final counters.
    pub(super) async fn stop(self) -> RtpStats {
        let mut stats = self.handle.stop().await;
        stats.audio_frames_dropped += self.audio_dropped;
        if let Ok(mut s) = self.stats.lock() {
            *s = stats.clone();
        }
        stats
    }
}
