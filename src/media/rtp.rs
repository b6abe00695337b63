//! The per-call RTP session: its public face.
//!
//! Owns: binding the call's RTP socket from the port pool ([`RtpSession`]),
//! starting the session task, and the handle the call uses to play audio,
//! place marks, send DTMF, follow SDP changes and read [`MediaEvent`]s
//! ([`RtpHandle`], [`MediaEvents`]). The task itself lives in `session/`
//! (its receiving side in `session/receive.rs`).
//!
//! Playing, marks, `clear` and DTMF are posted to the session's mailbox
//! without waking its task: they take effect at its next 20 ms tick, which
//! is when they matter. Stopping and remote changes wake it at once.
//!
//! Users always speak μ-law 8 kHz, whatever codec was negotiated: PCMA is
//! transcoded inside the session.
//!
//! Must not: know about SIP or SDP text (the caller passes the negotiated
//! codec, payload type and address), or outlive its handle.

use super::events::EventQueue;
use super::ports::{PortLease, PortPool};
use super::session::{Command, Driver, Mailbox};
pub use super::stats::RtpStats;
pub use super::types::{
    Codec, MediaEvent, RtpConfig, AUDIO_EVENT_CAPACITY, COMFORT_NOISE_PAYLOAD_TYPE,
    CONTINUOUS_SLACK, DEFAULT_DTMF_PAYLOAD_TYPE,
};
use bytes::Bytes;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A bound, not yet started RTP socket (bind before building the SDP offer).
#[derive(Debug)]
pub struct RtpSession {
    socket: UdpSocket,
    lease: PortLease,
    local: SocketAddr,
}

impl RtpSession {
    /// Binds an RTP socket on `ip` with a port from the pool (before the SDP
    /// offer is built).
    pub async fn bind(pool: &Arc<PortPool>, ip: IpAddr) -> io::Result<RtpSession> {
        let (lease, std_socket) = pool.bind_udp(ip)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let local = socket.local_addr()?;
        Ok(RtpSession {
            socket,
            lease,
            local,
        })
    }

    /// The address to put in the SDP (`c=` and `m=audio`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts sending/receiving; owns its tasks (stopped when the handle is
    /// stopped or dropped). Must be called inside a tokio runtime.
    pub fn start(self, remote: SocketAddr, cfg: RtpConfig) -> RtpHandle {
        let mailbox = Arc::new(Mailbox::default());
        let events = Arc::new(EventQueue::new(AUDIO_EVENT_CAPACITY));
        let inactive = Arc::new(Notify::new());
        let shared = Arc::new(Mutex::new(RtpStats {
            remote: Some(remote),
            ..RtpStats::default()
        }));
        let driver = Driver::new(
            self.socket,
            self.lease,
            remote,
            cfg,
            Arc::clone(&mailbox),
            Arc::clone(&events),
            Arc::clone(&inactive),
            Arc::clone(&shared),
        );
        let task = tokio::spawn(driver.run());
        RtpHandle {
            local: self.local,
            control: RtpControl { mailbox, shared },
            events: MediaEvents(events),
            inactive,
            task: Some(task),
        }
    }
}

/// The session's events, for their one reader (see [`RtpHandle::events`]).
#[derive(Debug, Clone)]
pub struct MediaEvents(Arc<EventQueue>);

impl MediaEvents {
    /// The next event; `None` once the session has stopped and every event
    /// has been read.
    pub async fn next(&self) -> Option<MediaEvent> {
        self.0.next().await
    }

    /// Puts `watch` between the session and its reader: a task reads every
    /// event, shows it to `watch` (and `None` once the session has ended),
    /// and passes it on, followed by the event `watch` returns, if any. Its
    /// reader sees the same backpressure as a direct one.
    pub fn tap<F>(self, mut watch: F) -> MediaEvents
    where
        F: FnMut(Option<&MediaEvent>) -> Option<MediaEvent> + Send + 'static,
    {
        let out = Arc::new(EventQueue::new(AUDIO_EVENT_CAPACITY));
        let sink = Arc::clone(&out);
        tokio::spawn(async move {
            while let Some(ev) = self.next().await {
                let extra = watch(Some(&ev));
                sink.push(ev);
                if let Some(x) = extra {
                    sink.push(x);
                }
            }
            if let Some(x) = watch(None) {
                sink.push(x);
            }
            sink.close();
        });
        MediaEvents(out)
    }
}

/// Controls a running session. Dropping it stops the session and frees its port.
#[derive(Debug)]
pub struct RtpHandle {
    local: SocketAddr,
    control: RtpControl,
    events: MediaEvents,
    inactive: Arc<Notify>,
    task: Option<JoinHandle<RtpStats>>,
}

/// A cloneable remote control of a session (for a task that feeds audio
/// while another reads events). It does not keep the session alive.
#[derive(Debug, Clone)]
pub struct RtpControl {
    mailbox: Arc<Mailbox>,
    shared: Arc<Mutex<RtpStats>>,
}

impl RtpControl {
    /// Queues μ-law audio of any length; played out at 20 ms per 160 bytes.
    /// Beyond [`super::playout::MAX_QUEUED_BYTES`] queued, the excess is
    /// dropped (counted in [`RtpStats::playout_bytes_dropped`], logged once).
    pub fn play(&self, ulaw: Bytes) {
        self.command(Command::Play(ulaw));
    }

    /// [`MediaEvent::MarkPlayed`]`(name)` once the audio queued before it has played.
    pub fn mark(&self, name: String) {
        self.command(Command::Mark(name));
    }

    /// Drops queued audio; pending marks are reported as
    /// [`MediaEvent::MarkCleared`], in order.
    pub fn clear(&self) {
        self.command(Command::Clear);
    }

    /// From now on, received audio is a continuous feed: one frame per 20 ms
    /// slot, μ-law silence for slots in which nothing was received (silence
    /// suppression, lost packets, no RTP at all). Received frames still come
    /// as soon as the jitter buffer releases them, never twice or reordered;
    /// a slot counts as empty once the feed is [`CONTINUOUS_SLACK`] behind
    /// real time with nothing waiting.
    pub fn continuous_audio(&self) {
        self.command(Command::Continuous);
    }

    /// Sends a key press as RFC 4733 events (ignored without a negotiated
    /// telephone-event payload type, or for a non-DTMF character).
    pub fn send_dtmf(&self, digit: char) {
        self.command(Command::Dtmf(digit));
    }

    /// Sends to `addr` from now on (e.g. after a re-INVITE or a 183→200 SDP
    /// change) and forgets the latched source, so it is learnt again.
    pub fn set_remote(&self, addr: SocketAddr) {
        self.command(Command::SetRemote(addr));
    }

    /// Sends to `addr` from now on, as a re-INVITE said: a source on the
    /// same host no longer moves it (another host, a NAT, still does).
    pub fn move_to(&self, addr: SocketAddr) {
        self.command(Command::MoveTo(addr));
    }

    /// Encodes with `codec` (and sends key presses with `dtmf_payload_type`)
    /// from now on, as a re-INVITE settled.
    pub fn set_codec(&self, codec: Codec, dtmf_payload_type: Option<u8>) {
        self.command(Command::SetCodec(codec, dtmf_payload_type));
    }

    /// Puts the session on hold (nothing sent, silence is not inactivity)
    /// or takes it off.
    pub fn hold(&self, held: bool) {
        self.command(Command::Hold(held));
    }

    /// Protects and checks packets with `keys` from now on (an SRTP re-key).
    pub fn rekey(&self, keys: super::srtp::SrtpKeys) {
        self.command(Command::Rekey(Box::new(keys)));
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RtpStats {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn command(&self, c: Command) {
        // The task only ends on stop/drop; a command after that has no effect.
        self.mailbox.post(c);
    }
}

impl RtpHandle {
    /// The local RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A cloneable control for other tasks.
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

    /// Drops queued audio; pending marks are reported played (cleared).
    pub fn clear(&self) {
        self.control.clear();
    }

    /// Sends a key press as RFC 4733 events (ignored without a negotiated
    /// telephone-event payload type, or for a non-DTMF character).
    pub fn send_dtmf(&self, digit: char) {
        self.control.send_dtmf(digit);
    }

    /// Makes received audio a continuous feed (see [`RtpControl::continuous_audio`]).
    pub fn continuous_audio(&self) {
        self.control.continuous_audio();
    }

    /// Sends to `addr` from now on (e.g. after a re-INVITE or a 183→200 SDP
    /// change) and forgets the latched source, so it is learnt again.
    pub fn set_remote(&self, addr: SocketAddr) {
        self.control.set_remote(addr);
    }

    /// The next event; `None` once the session has stopped and every event
    /// has been read.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.next().await
    }

    /// The events, for a reader elsewhere (e.g. the user of an answered
    /// call). There is one stream of events: read it here or there, not both.
    pub fn events(&self) -> MediaEvents {
        self.events.clone()
    }

    /// Resolves when the session reports [`MediaEvent::Inactive`] (also
    /// passed to the reader of the events); at once if it did since the
    /// last call.
    pub async fn inactive(&self) {
        self.inactive.notified().await;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RtpStats {
        self.control.stats()
    }

    /// Stops the task, frees the port, returns the final counters.
    pub async fn stop(mut self) -> RtpStats {
        self.control.command(Command::Stop);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(stats) => stats,
                Err(_) => self.stats(),
            },
            None => self.stats(),
        }
    }
}

impl Drop for RtpHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn codecs_map_to_their_static_payload_types() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(3), None);
        assert_eq!(Codec::Pcma.encoding_name(), "PCMA");
    }

    #[test]
    fn default_config_is_pcmu_with_telephone_events_and_thirty_seconds() {
        let c = RtpConfig::default();
        assert_eq!(c.codec, Codec::Pcmu);
        assert_eq!(c.dtmf_payload_type, Some(101));
        assert_eq!(c.inactivity_timeout, Duration::from_secs(30));
    }
}
