//! RTP session statistics and the RFC 3550 interarrival jitter estimate.
//!
//! Owns: the counters a session reports ([`RtpStats`]) and the pure jitter
//! estimator (RFC 3550 §6.4.1 / A.8). Must not read the clock: arrival times
//! are passed in, in RTP timestamp units.

use std::net::SocketAddr;

/// Counters of one RTP session. Byte counts are RTP payload octets (as in an
/// RTCP sender report), not UDP datagram sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Audio packets sent while nothing was queued (all silence).
    pub silence_frames_sent: u64,
    pub dtmf_packets_sent: u64,
    /// 20 ms slots not sent because the session ran more than 200 ms late
    /// (the timestamp still advanced for them).
    pub skipped_slots: u64,
    pub send_errors: u64,
    /// Socket receive errors (not counted as packets).
    pub recv_errors: u64,

    /// Valid RTP packets accepted (audio, telephone-event, comfort noise).
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Packets that never arrived (gaps skipped by the jitter buffer).
    pub lost: u64,
    /// Number of separate sequence gaps.
    pub sequence_gaps: u64,
    /// Packets that arrived after their playout slot had passed.
    pub late: u64,
    pub duplicates: u64,
    /// Interarrival jitter in timestamp units (1/8000 s), RFC 3550.
    pub jitter: u32,
    /// Datagrams that were not RTP at all (garbage, truncated, wrong version).
    pub invalid_packets: u64,
    /// RTP with an unexpected payload type, or from an unexpected source.
    pub foreign_packets: u64,
    /// Received audio frames dropped because the consumer was too slow.
    pub audio_frames_dropped: u64,
    /// Silence frames handed to the consumer of a continuous feed for slots
    /// in which nothing was received (silence suppression, loss, no RTP).
    pub silence_frames_filled: u64,
    /// Audio bytes given to play that were dropped because the playout
    /// queue was full ([`crate::media::playout::MAX_QUEUED_BYTES`]).
    pub playout_bytes_dropped: u64,
    pub dtmf_received: u64,
    /// SRTP packets that did not authenticate (wrong key, tampered, replayed,
    /// or plain RTP on an encrypted call): dropped.
    pub srtp_rejected: u64,

    /// Where audio is being sent now.
    pub remote: Option<SocketAddr>,
    /// Whether `remote` was learnt from received packets (symmetric RTP).
    pub latched: bool,
}

impl RtpStats {
    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter) / 8.0
    }
}

/// RFC 3550 interarrival jitter for one source, kept scaled by 16 as in the
/// RFC's integer reference code.
#[derive(Debug, Default, Clone)]
pub struct InterarrivalJitter {
    source: Option<u32>,
    last_transit: i32,
    jitter_x16: u32,
}

impl InterarrivalJitter {
    /// Feeds one packet: its SSRC, RTP timestamp, and its arrival time in the
    /// same units (8 kHz ticks from any fixed origin). A new SSRC restarts
    /// the estimate.
    pub fn on_packet(&mut self, ssrc: u32, rtp_timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_timestamp) as i32;
        if self.source != Some(ssrc) {
            self.source = Some(ssrc);
            self.last_transit = transit;
            self.jitter_x16 = 0;
            return;
        }
        let d = transit.wrapping_sub(self.last_transit).unsigned_abs();
        self.last_transit = transit;
        // J += (|D| - J) / 16, with J kept ×16.
        let j = i64::from(self.jitter_x16) + i64::from(d) - ((i64::from(self.jitter_x16) + 8) >> 4);
        self.jitter_x16 = u32::try_from(j.max(0)).unwrap_or(u32::MAX);
    }

    /// The current estimate in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_x16 >> 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfectly_paced_stream_has_no_jitter() {
        let mut j = InterarrivalJitter::default();
        for i in 0..100u32 {
            j.on_packet(1, 5000 + i * 160, 777 + i * 160);
        }
        assert_eq!(j.jitter(), 0);
    }

    #[test]
    fn constant_alternating_delay_converges_to_its_magnitude() {
        // Every other packet arrives 80 ticks (10 ms) late: |D| = 80 each time.
        let mut j = InterarrivalJitter::default();
        for i in 0..500u32 {
            let late = if i % 2 == 1 { 80 } else { 0 };
            j.on_packet(1, i * 160, i * 160 + late);
        }
        assert!((78..=80).contains(&j.jitter()), "{}", j.jitter());
    }

    #[test]
    fn one_spike_moves_the_estimate_by_a_sixteenth() {
        let mut j = InterarrivalJitter::default();
        j.on_packet(9, 0, 0);
        j.on_packet(9, 160, 160 + 1600);
        assert_eq!(j.jitter(), 100);
    }

    #[test]
    fn wrapping_timestamps_and_a_new_source_are_handled() {
        let mut j = InterarrivalJitter::default();
        j.on_packet(1, u32::MAX - 100, 10);
        j.on_packet(1, 59, 170);
        assert_eq!(j.jitter(), 0);
        j.on_packet(1, 219, 330 + 1600);
        assert!(j.jitter() > 0);
        j.on_packet(2, 0, 0);
        assert_eq!(j.jitter(), 0, "a new SSRC restarts the estimate");
    }

    #[test]
    fn jitter_in_milliseconds() {
        let s = RtpStats {
            jitter: 80,
            ..RtpStats::default()
        };
        assert_eq!(s.jitter_ms(), 10.0);
    }
}
