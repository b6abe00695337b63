//! The receiving side of an RTP session: which packets are taken (payload
//! type, symmetric RTP latching, the source's SSRC), the jitter buffer,
//! DTMF decoding, and the continuous feed of received audio.

use std::net::SocketAddr;

use super::*;

impl Driver {
    fn kind_of(&self, pt: u8) -> Option<Kind> {
        if self.cfg.dtmf_payload_type == Some(pt) {
            return Some(Kind::Dtmf);
        }
        if pt == COMFORT_NOISE_PAYLOAD_TYPE {
            return Some(Kind::ComfortNoise);
        }
        Codec::from_payload_type(pt).map(Kind::Audio)
    }

    /// Decides whether a valid packet from `src` is ours, and latches: the
    /// first packet latches; later packets from another address are accepted
    /// (and move the latch) only if they carry the latched SSRC, or come from
    /// the signalled address (so a stray early packet cannot lock the real
    /// peer out).
    fn accept_source(&mut self, src: SocketAddr, ssrc: u32) -> bool {
        if src == self.signalled {
            self.latch = Latch::Latched { addr: src, ssrc };
            self.remote = src;
            return true;
        }
        // After a re-INVITE moved the media, a source on the signalled
        // host is heard but does not move where herald sends: the peer said
        // which port it listens on. Another host (a NAT) still latches.
        let keep_port = self.pinned && src.ip() == self.signalled.ip();
        match self.latch {
            Latch::Open => {
                if src != self.remote && !keep_port {
                    tracing::debug!(from = %self.remote, to = %src, "rtp latched to the real source");
                    self.remote = src;
                }
                self.latch = Latch::Latched { addr: src, ssrc };
                true
            }
            Latch::Latched { addr, .. } if addr == src => {
                // Same source, maybe a new stream (SSRC change): follow it.
                self.latch = Latch::Latched { addr, ssrc };
                true
            }
            Latch::Latched { ssrc: latched, .. } if latched == ssrc => {
                // The same stream moved (NAT rebinding): follow it.
                tracing::debug!(to = %src, "rtp source moved, relatched");
                self.latch = Latch::Latched { addr: src, ssrc };
                if !keep_port {
                    self.remote = src;
                }
                true
            }
            Latch::Latched { .. } => false,
        }
    }

    pub(super) fn on_datagram(&mut self, data: &[u8], src: SocketAddr) {
        let plain;
        let data = match self.srtp.as_mut() {
            None => data,
            Some(Ok(srtp)) => match srtp.unprotect(data) {
                Some(p) => {
                    plain = p;
                    &plain[..]
                }
                None => {
                    self.stats.srtp_rejected += 1;
                    return;
                }
            },
            Some(Err(_)) => {
                self.stats.srtp_rejected += 1;
                return;
            }
        };
        let Ok(rtp) = RtpReader::new(data) else {
            self.stats.invalid_packets += 1;
            return;
        };
        let Some(kind) = self.kind_of(rtp.payload_type()) else {
            self.stats.foreign_packets += 1;
            return;
        };
        let ssrc = rtp.ssrc();
        if !self.accept_source(src, ssrc) {
            self.stats.foreign_packets += 1;
            return;
        }
        let payload = rtp.payload();
        let timestamp = rtp.timestamp();
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;
        self.last_rx = Instant::now();
        self.inactive_reported = false;
        match kind {
            Kind::ComfortNoise => {}
            Kind::Dtmf => {
                if let Some(d) = self.dtmf_rx.on_packet(ssrc, timestamp, rtp.mark(), payload) {
                    self.stats.dtmf_received += 1;
                    self.events.push(MediaEvent::Dtmf(d));
                }
            }
            Kind::Audio(codec) => {
                let arrival = (self.started.elapsed().as_micros() / 125) as u32;
                self.arrival_jitter.on_packet(ssrc, timestamp, arrival);
                if self.audio_ssrc != Some(ssrc) {
                    if self.audio_ssrc.is_some() {
                        for f in self.jitter.drain_all() {
                            self.emit_audio(f.payload, f.seq, f.timestamp);
                        }
                        self.jitter.reset();
                    }
                    self.audio_ssrc = Some(ssrc);
                }
                let ulaw = match codec {
                    Codec::Pcmu => Bytes::copy_from_slice(payload),
                    Codec::Pcma => Bytes::from_iter(payload.iter().map(|&a| g711::alaw_to_ulaw(a))),
                };
                let now_ms = self.now_ms();
                let seq: u16 = rtp.sequence_number().into();
                let pushed = self.jitter.push(seq, timestamp, ulaw, now_ms);
                if pushed == Pushed::Queued {
                    self.restart_feed_after_silence();
                }
                self.drain_jitter();
            }
        }
    }

    pub(super) fn drain_jitter(&mut self) {
        let now_ms = self.now_ms();
        while let Some(f) = self.jitter.pop(now_ms) {
            if self.feed.is_some() {
                for _ in 0..f.lost_before.min(MAX_GAP_FILL) {
                    self.emit_silence();
                }
            }
            self.emit_audio(f.payload, f.seq, f.timestamp);
        }
    }

    /// The continuous feed at a tick: one more frame is due; fill with
    /// silence if the feed is too far behind.
    pub(super) fn feed_tick(&mut self) {
        let pending = self.jitter.len() as i64 * FRAME_BYTES as i64;
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        feed.due += FRAME_BYTES as i64;
        if feed.due - feed.delivered - pending > FEED_SLACK {
            // Count what already waits on the socket before calling it missing.
            self.read_waiting();
        }
        loop {
            let pending = self.jitter.len() as i64 * FRAME_BYTES as i64;
            let Some(feed) = self.feed.as_mut() else {
                return;
            };
            let lag = feed.due - feed.delivered - pending;
            if lag <= FEED_SLACK {
                // Credit for audio that came early is bounded too, so a
                // silent spell is noticed as soon after a long call as at its start.
                if lag < -FEED_SLACK {
                    feed.due = feed.delivered + pending - FEED_SLACK;
                }
                return;
            }
            self.emit_silence();
        }
    }

    /// Reads the datagrams already waiting on the socket, without waiting.
    fn read_waiting(&mut self) {
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            match self.socket.try_recv_from(&mut buf) {
                Ok((n, src)) => self.on_datagram(buf.get(..n).unwrap_or_default(), src),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "rtp receive error");
                    self.stats.recv_errors += 1;
                    break;
                }
            }
        }
        self.drain_jitter();
    }

    /// One frame of silence for the continuous feed.
    fn emit_silence(&mut self) {
        let (seq, ts) = self.last_out;
        self.stats.silence_frames_filled += 1;
        self.emit_audio(
            Bytes::from_static(&SILENCE_FRAME),
            seq,
            ts.wrapping_add(SAMPLES_PER_FRAME),
        );
        if let Some(feed) = self.feed.as_mut() {
            feed.filling = true;
        }
    }

    fn emit_audio(&mut self, ulaw: Bytes, seq: u16, timestamp: u32) {
        if let Some(feed) = self.feed.as_mut() {
            feed.delivered += ulaw.len() as i64;
            feed.filling = false;
        }
        self.last_out = (seq, timestamp);
        let ev = MediaEvent::Audio {
            ulaw,
            seq,
            timestamp,
        };
        if !self.events.push(ev) {
            self.stats.audio_frames_dropped += 1;
        }
    }

    /// A frame arrived after the feed was filled with silence: the feed is
    /// on time from here (a new talk spurt gets the whole slack).
    fn restart_feed_after_silence(&mut self) {
        let pending = self.jitter.len() as i64 * FRAME_BYTES as i64;
        if let Some(feed) = self.feed.as_mut().filter(|f| f.filling) {
            feed.due = feed.delivered + pending;
            feed.filling = false;
        }
    }
}
