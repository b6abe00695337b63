//! The RTP session task: one tokio task per call.
//!
//! Owns: the socket and port lease of a running session; paced sending (one
//! packet per 20 ms slot: DTMF if a key press is in progress, else queued
//! audio, else silence); symmetric RTP latching; receiving (parse, drop
//! garbage, jitter buffer, DTMF decode, RFC 3550 jitter); the continuous
//! feed of received audio when asked for; the inactivity check; and
//! publishing counters (at each tick).
//!
//! Wake-ups: the task wakes for its tick, for each received datagram, and for
//! the rare urgent command (stop, a new remote address). Play, mark, clear
//! and DTMF wait in the [`Mailbox`] and are taken at the next tick.
//!
//! Continuous feed: once asked for, the consumer gets one frame per 20 ms
//! slot. Received frames go out as the jitter buffer releases them; at each
//! tick the feed's position is compared with real time, counting frames
//! still in the jitter buffer as on their way, and once it is more than
//! [`CONTINUOUS_SLACK`] behind, slots are filled with μ-law silence (after
//! reading whatever is already waiting on the socket). Frames a sequence gap
//! skipped are filled in place. The first packet after a silent spell
//! starts the count afresh, so a new talk spurt has the whole slack to
//! absorb its jitter.
//!
//! Pacing: `tokio::time::interval` with `MissedTickBehavior::Burst`, so slots
//! stay on the grid fixed at start and the stream never drifts from real time.
//! When the task falls behind by a little, the missed slots are sent at once
//! (the receiver's jitter buffer absorbs that); slots more than
//! [`MAX_SLOT_LATENESS`] late are skipped (their timestamps are still used up,
//! as with silence suppression) rather than flooding the peer after a stall.
//!
//! Must not: block, sleep, or panic on anything received.

use super::dtmf::{self, DtmfPacket, DtmfReceiver};
use super::events::EventQueue;
use super::g711;
use super::jitter::JitterBuffer;
use super::jitter::Pushed;
use super::playout::{PlayoutQueue, FRAME_BYTES, MAX_QUEUED_BYTES};
use super::ports::PortLease;
use super::srtp::Srtp;
use super::stats::{InterarrivalJitter, RtpStats};
use super::types::{Codec, MediaEvent, RtpConfig, COMFORT_NOISE_PAYLOAD_TYPE, CONTINUOUS_SLACK};
use bytes::Bytes;
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

/// One packet every 20 ms.
pub const PTIME: Duration = Duration::from_millis(20);
/// RTP timestamp units per packet (8 kHz × 20 ms).
const SAMPLES_PER_FRAME: u32 = FRAME_BYTES as u32;
/// A send slot later than this is skipped instead of sent in a burst.
pub const MAX_SLOT_LATENESS: Duration = Duration::from_millis(200);
/// Audio slots between two queued key presses.
const DTMF_GAP_SLOTS: u8 = 3;
/// Packets the jitter buffer holds at most (2 s of 20 ms frames).
const JITTER_CAPACITY: usize = 100;
/// Largest datagram read; bigger ones are truncated by the kernel and then
/// fail to parse or carry a clipped payload.
const RECV_BUFFER: usize = 2048;
/// One 20 ms frame of μ-law silence (fills a continuous feed).
static SILENCE_FRAME: [u8; FRAME_BYTES] = [g711::ULAW_SILENCE; FRAME_BYTES];
/// [`CONTINUOUS_SLACK`] in samples (μ-law bytes).
const FEED_SLACK: i64 = CONTINUOUS_SLACK.as_millis() as i64 * 8;
/// At most this many frames skipped by one sequence gap are filled in place
/// (1 s); the tick fills the rest if the feed falls behind.
const MAX_GAP_FILL: u64 = 50;

mod receive;

#[derive(Debug)]
pub(crate) enum Command {
    Play(Bytes),
    Mark(String),
    Clear,
    Dtmf(char),
    Continuous,
    SetRemote(SocketAddr),
    /// As `SetRemote`, from a re-INVITE: the port is the peer's word.
    MoveTo(SocketAddr),
    /// The codec and telephone-event payload type a re-INVITE settled on.
    SetCodec(Codec, Option<u8>),
    /// On hold (`sendonly`/`inactive` from the peer): nothing sent, no
    /// inactivity; or off hold.
    Hold(bool),
    /// New SRTP keys (a re-INVITE re-keyed the call).
    Rekey(Box<super::srtp::SrtpKeys>),
    Stop,
}

impl Command {
    /// Commands that wake the task; the others wait for its next tick.
    fn is_urgent(&self) -> bool {
        matches!(
            self,
            Command::SetRemote(_)
                | Command::MoveTo(_)
                | Command::SetCodec(..)
                | Command::Hold(_)
                | Command::Rekey(_)
                | Command::Stop
        )
    }
}

/// Commands for the session task, in order.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    queue: Mutex<Vec<Command>>,
    wake: Notify,
}

impl Mailbox {
    pub(crate) fn post(&self, c: Command) {
        let urgent = c.is_urgent();
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        if urgent {
            self.wake.notify_one();
        }
    }

    /// Moves the waiting commands into `into` (empty), keeping both buffers.
    fn take(&self, into: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, into);
    }
}

/// The continuous feed of received audio, counted in samples (μ-law bytes).
#[derive(Debug, Default)]
struct Feed {
    /// Samples due by now: one frame per tick since the feed started.
    due: i64,
    /// Samples handed to the consumer since, received or silence.
    delivered: i64,
    /// The last frame handed out was silence.
    filling: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latch {
    /// Sending to the signalled address; the first valid packet latches.
    Open,
    Latched {
        addr: SocketAddr,
        ssrc: u32,
    },
}

/// What kind of packet a payload type means in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio(Codec),
    Dtmf,
    ComfortNoise,
}

pub(crate) struct Driver {
    socket: UdpSocket,
    _lease: PortLease,
    cfg: RtpConfig,
    mailbox: Arc<Mailbox>,
    /// The commands being handled (swapped with the mailbox's buffer).
    commands: Vec<Command>,
    events: Arc<EventQueue>,
    inactive: Arc<Notify>,
    shared: Arc<Mutex<RtpStats>>,
    stats: RtpStats,
    started: Instant,
    /// The span the session was started in (the call's), for its warnings.
    span: tracing::Span,

    /// Where the signalling said the peer is.
    signalled: SocketAddr,
    /// Where packets go now (the signalled or the latched address).
    remote: SocketAddr,
    latch: Latch,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    sent_audio: bool,
    playout: PlayoutQueue,
    dtmf_queue: VecDeque<char>,
    dtmf_current: Option<(VecDeque<DtmfPacket>, u32)>,
    dtmf_gap: u8,

    jitter: JitterBuffer,
    arrival_jitter: InterarrivalJitter,
    audio_ssrc: Option<u32>,
    dtmf_rx: DtmfReceiver,
    last_rx: Instant,
    inactive_reported: bool,
    /// On hold: nothing is sent, and silence is not inactivity.
    held: bool,
    /// A re-INVITE set the address: sources on its host do not move it.
    pinned: bool,
    feed: Option<Feed>,
    /// Sequence number and timestamp of the last frame handed out.
    last_out: (u16, u32),
    /// On an SRTP call: the contexts (an error sends and accepts nothing).
    srtp: Option<Result<Srtp, String>>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        socket: UdpSocket,
        lease: PortLease,
        remote: SocketAddr,
        cfg: RtpConfig,
        mailbox: Arc<Mailbox>,
        events: Arc<EventQueue>,
        inactive: Arc<Notify>,
        shared: Arc<Mutex<RtpStats>>,
    ) -> Driver {
        let now = Instant::now();
        let jitter = JitterBuffer::new(cfg.jitter_ms, JITTER_CAPACITY);
        let srtp = cfg.srtp.as_ref().map(Srtp::new);
        Driver {
            srtp,
            socket,
            _lease: lease,
            cfg,
            mailbox,
            commands: Vec::new(),
            events,
            inactive,
            shared,
            stats: RtpStats {
                remote: Some(remote),
                ..RtpStats::default()
            },
            started: now,
            span: tracing::Span::current(),
            signalled: remote,
            remote,
            latch: Latch::Open,
            ssrc: rand::random(),
            seq: rand::random(),
            timestamp: rand::random(),
            sent_audio: false,
            playout: PlayoutQueue::new(),
            dtmf_queue: VecDeque::new(),
            dtmf_current: None,
            dtmf_gap: 0,
            jitter,
            arrival_jitter: InterarrivalJitter::default(),
            audio_ssrc: None,
            dtmf_rx: DtmfReceiver::new(),
            last_rx: now,
            inactive_reported: false,
            held: false,
            pinned: false,
            feed: None,
            last_out: (0, 0),
        }
    }

    pub(crate) async fn run(mut self) -> RtpStats {
        let mut ticks = tokio::time::interval_at(self.started, PTIME);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut buf = vec![0u8; RECV_BUFFER];
        let mailbox = Arc::clone(&self.mailbox);
        // One waiter on the mailbox for the whole run, renewed when it fires
        // (not one per loop).
        let wake = mailbox.wake.notified();
        tokio::pin!(wake);
        loop {
            tokio::select! {
                biased;
                _ = &mut wake => {
                    wake.set(mailbox.wake.notified());
                    if self.take_commands() {
                        break;
                    }
                    self.publish();
                }
                slot = ticks.tick() => {
                    if self.take_commands() {
                        break;
                    }
                    self.on_tick(slot).await;
                    self.publish();
                }
                // Polled in place: no readiness future per datagram.
                res = std::future::poll_fn(|cx| {
                    let mut rb = tokio::io::ReadBuf::new(&mut buf);
                    self.socket
                        .poll_recv_from(cx, &mut rb)
                        .map(|r| r.map(|src| (rb.filled().len(), src)))
                }) => match res {
                    Ok((n, src)) => self.on_datagram(buf.get(..n).unwrap_or_default(), src),
                    Err(e) => {
                        tracing::debug!(error = %e, "rtp receive error");
                        self.stats.recv_errors += 1;
                    }
                },
            }
        }
        self.publish();
        self.stats.clone()
    }

    /// Handles the commands in the mailbox; `true` once told to stop.
    fn take_commands(&mut self) -> bool {
        let mut commands = std::mem::take(&mut self.commands);
        self.mailbox.take(&mut commands);
        let mut stop = false;
        for c in commands.drain(..) {
            if matches!(c, Command::Stop) {
                stop = true;
                break;
            }
            self.on_command(c);
        }
        commands.clear();
        self.commands = commands;
        stop
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn publish(&mut self) {
        let c = self.jitter.counters();
        self.stats.lost = c.lost;
        self.stats.sequence_gaps = c.gaps;
        self.stats.late = c.late;
        self.stats.duplicates = c.duplicates;
        self.stats.jitter = self.arrival_jitter.jitter();
        self.stats.remote = Some(self.remote);
        self.stats.latched = matches!(self.latch, Latch::Latched { .. });
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.clone_from(&self.stats);
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Play(b) => {
                let dropped = self.playout.push_audio(b);
                if dropped > 0 {
                    if self.stats.playout_bytes_dropped == 0 {
                        self.span.in_scope(|| {
                            tracing::warn!(
                                limit_s = MAX_QUEUED_BYTES / 8000,
                                "more audio queued to play than the limit: dropping the excess"
                            )
                        });
                    }
                    self.stats.playout_bytes_dropped += dropped as u64;
                }
            }
            Command::Mark(m) => self.playout.push_mark(m),
            Command::Clear => {
                let (played, cleared) = self.playout.clear();
                for m in played {
                    self.events.push(MediaEvent::MarkPlayed(m));
                }
                for m in cleared {
                    self.events.push(MediaEvent::MarkCleared(m));
                }
            }
            Command::Continuous => {
                if self.feed.is_none() {
                    self.feed = Some(Feed::default());
                }
            }
            Command::Dtmf(d) => {
                if self.cfg.dtmf_payload_type.is_some() && dtmf::digit_to_event(d).is_some() {
                    self.dtmf_queue.push_back(d);
                } else {
                    tracing::debug!(digit = %d, "DTMF not sent: no telephone-event or not a key");
                }
            }
            Command::SetRemote(addr) => {
                self.signalled = addr;
                self.remote = addr;
                self.latch = Latch::Open;
                self.stats.remote = Some(addr);
            }
            Command::MoveTo(addr) => {
                self.signalled = addr;
                self.remote = addr;
                self.latch = Latch::Open;
                self.stats.remote = Some(addr);
                self.pinned = true;
            }
            Command::SetCodec(codec, dtmf) => {
                self.cfg.codec = codec;
                self.cfg.dtmf_payload_type = dtmf;
            }
            Command::Rekey(keys) => {
                if self.srtp.is_some() {
                    self.srtp = Some(Srtp::new(&keys));
                }
            }
            Command::Hold(held) => {
                if self.held && !held {
                    // Off hold: the inactivity count starts again.
                    self.last_rx = Instant::now();
                    self.inactive_reported = false;
                }
                self.held = held;
            }
            Command::Stop => {}
        }
    }

    async fn on_tick(&mut self, slot: Instant) {
        let slot_ts = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_FRAME);
        let now = Instant::now();
        self.drain_jitter();
        if self.feed.is_some() {
            self.feed_tick();
        }
        if self.held {
            // The playout waits too: what was queued plays after the hold.
            return;
        }
        if !self.inactive_reported
            && now.duration_since(self.last_rx) >= self.cfg.inactivity_timeout
        {
            self.inactive_reported = true;
            self.events.push(MediaEvent::Inactive);
            self.inactive.notify_one();
        }
        if now.duration_since(slot) > MAX_SLOT_LATENESS {
            self.stats.skipped_slots += 1;
            return;
        }
        if let Some((pkt, event_ts)) = self.next_dtmf_packet(slot_ts) {
            if let Some(pt) = self.cfg.dtmf_payload_type {
                if self.send(pt, pkt.marker, event_ts, &pkt.payload).await {
                    self.stats.dtmf_packets_sent += 1;
                }
            }
            return;
        }
        let frame = self.playout.next_frame();
        let mut payload = frame.ulaw;
        if self.cfg.codec == Codec::Pcma {
            g711::ulaw_frame_to_alaw(&mut payload);
        }
        let marker = !self.sent_audio;
        if self
            .send(self.cfg.codec.payload_type(), marker, slot_ts, &payload)
            .await
        {
            self.sent_audio = true;
            if frame.audio_bytes == 0 {
                self.stats.silence_frames_sent += 1;
            }
        }
        for m in frame.marks {
            self.events.push(MediaEvent::MarkPlayed(m));
        }
    }

    /// The telephone-event packet for this slot, with the event's timestamp.
    fn next_dtmf_packet(&mut self, slot_ts: u32) -> Option<(DtmfPacket, u32)> {
        if self.dtmf_current.is_none() {
            if self.dtmf_gap > 0 {
                self.dtmf_gap -= 1;
                return None;
            }
            let digit = self.dtmf_queue.pop_front()?;
            let pkts = dtmf::digit_packets(digit, dtmf::DEFAULT_DURATION_MS, dtmf::DEFAULT_VOLUME)?;
            self.dtmf_current = Some((pkts.into(), slot_ts));
        }
        let (pkts, event_ts) = self.dtmf_current.as_mut()?;
        let event_ts = *event_ts;
        let pkt = pkts.pop_front();
        if pkts.is_empty() {
            self.dtmf_current = None;
            self.dtmf_gap = DTMF_GAP_SLOTS;
        }
        pkt.map(|p| (p, event_ts))
    }

    /// Builds and sends one packet; `false` if it could not be sent.
    async fn send(&mut self, pt: u8, marker: bool, timestamp: u32, payload: &[u8]) -> bool {
        let mut buf = [0u8; 12 + FRAME_BYTES];
        let built = RtpPacketBuilder::new()
            .payload_type(pt)
            .marked(marker)
            .sequence(Seq::from(self.seq))
            .ssrc(self.ssrc)
            .timestamp(timestamp)
            .payload(payload)
            .build_into(&mut buf);
        let n = match built {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(?e, "rtp packet not built");
                self.stats.send_errors += 1;
                return false;
            }
        };
        self.seq = self.seq.wrapping_add(1);
        let protected;
        let datagram = match self.srtp.as_mut() {
            None => &buf[..n],
            Some(Ok(srtp)) => match srtp.protect(&buf[..n]) {
                Some(p) => {
                    protected = p;
                    &protected[..]
                }
                None => {
                    self.stats.send_errors += 1;
                    return false;
                }
            },
            Some(Err(_)) => {
                self.stats.send_errors += 1;
                return false;
            }
        };
        // UDP sends complete at once unless the socket buffer is full.
        match self.socket.send_to(datagram, self.remote).await {
            Ok(_) => {
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += payload.len() as u64;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, remote = %self.remote, "rtp send failed");
                self.stats.send_errors += 1;
                false
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Runs on stop, on abort and on panic: the consumer sees the end.
        self.events.close();
    }
}
