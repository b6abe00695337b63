//! RFC 4733 telephone events (DTMF over RTP).
//!
//! Owns: the 4-byte event payload (event, E bit, volume, duration), the
//! digit ↔ event-code map, a receiver that reports each key press once, and
//! the packet sequence a sender emits for one digit. Pure code: the RTP
//! session decides when packets go out and stamps sequence numbers.
//!
//! Must not: touch sockets or clocks.

/// The RTP clock rate of telephone-event for G.711 calls (8000 Hz): one 20 ms
/// packet interval is 160 timestamp units.
pub const SAMPLES_PER_PACKET: u16 = 160;

/// Volume herald sends (in -dBm0, so 10 means -10 dBm0).
pub const DEFAULT_VOLUME: u8 = 10;

/// How long herald presses a key, in ms.
pub const DEFAULT_DURATION_MS: u32 = 100;

/// How many times the final (E bit) packet is sent, as RFC 4733 §2.5.1.4 asks.
pub const END_REPEATS: usize = 3;

/// One decoded telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9, 10 `*`, 11 `#`, 12–15 `A`–`D`, others are not digits.
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a payload; `None` when it is shorter than 4 bytes. Extra bytes
    /// (redundant events) are ignored.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b = payload.get(..4)?;
        Some(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The 4-byte payload (R bit zero).
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        let e = if self.end { 0x80 } else { 0 };
        [self.event, e | (self.volume & 0x3F), d[0], d[1]]
    }
}

/// The event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`, case-insensitive).
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF key of an event code; `None` for non-DTMF events (e.g. flash).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// Reports each key press once, however many start, update, end and
/// retransmitted packets carry it: a press is identified by its RTP
/// timestamp (and the sender's SSRC). A marked start packet after the end of
/// a press with the same timestamp is a new press (a sender replaying a
/// recorded event).
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// Recently seen presses: (ssrc, timestamp, end seen).
    recent: [Option<(u32, u32, bool)>; 4],
    next: usize,
}

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Feeds one telephone-event packet (with its RTP marker bit); returns
    /// the digit the first time a press is seen. Malformed payloads and
    /// non-DTMF events give `None`.
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<char> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = event_to_digit(ev.event)?;
        let known = self
            .recent
            .iter_mut()
            .flatten()
            .find(|(s, t, _)| *s == ssrc && *t == timestamp);
        if let Some(entry) = known {
            if entry.2 && marker && !ev.end {
                entry.2 = false;
                return Some(digit);
            }
            entry.2 |= ev.end;
            return None;
        }
        self.recent[self.next] = Some((ssrc, timestamp, ev.end));
        self.next = (self.next + 1) % self.recent.len();
        Some(digit)
    }
}

/// One telephone-event packet to send (the session adds the RTP header with
/// the event's start timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    pub payload: [u8; 4],
    /// Set on the first packet of the event only.
    pub marker: bool,
}

/// The packets for one key press, one per 20 ms slot: a start packet with the
/// marker bit, updates with a growing duration, then [`END_REPEATS`] end
/// packets carrying the final duration. All share the event's timestamp.
/// `None` for a character that is not a DTMF key.
pub fn digit_packets(digit: char, duration_ms: u32, volume: u8) -> Option<Vec<DtmfPacket>> {
    let event = digit_to_event(digit)?;
    let slots = (duration_ms / 20).clamp(1, 400) as u16;
    let mut out = Vec::with_capacity(slots as usize + END_REPEATS);
    for i in 1..=slots {
        let ev = TelephoneEvent {
            event,
            end: false,
            volume,
            duration: i * SAMPLES_PER_PACKET,
        };
        out.push(DtmfPacket {
            payload: ev.to_bytes(),
            marker: i == 1,
        });
    }
    let end = TelephoneEvent {
        event,
        end: true,
        volume,
        duration: slots * SAMPLES_PER_PACKET,
    };
    for _ in 0..END_REPEATS {
        out.push(DtmfPacket {
            payload: end.to_bytes(),
            marker: false,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_every_field() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        let b = ev.to_bytes();
        assert_eq!(b, [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&b), Some(ev));
        let start = TelephoneEvent::parse(&[5, 0x0A, 0, 160]).expect("parses");
        assert!(!start.end);
        assert_eq!((start.event, start.volume, start.duration), (5, 10, 160));
        // The reserved bit is ignored on receive.
        assert_eq!(
            TelephoneEvent::parse(&[1, 0x4A, 0, 0]).map(|e| e.volume),
            Some(10)
        );
    }

    #[test]
    fn short_payloads_are_rejected() {
        assert_eq!(TelephoneEvent::parse(&[]), None);
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn every_key_maps_both_ways() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(digit_to_event(c), Some(i as u8));
            assert_eq!(event_to_digit(i as u8), Some(c));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(digit_to_event('x'), None);
        assert_eq!(event_to_digit(16), None, "flash is not a digit");
    }

    #[test]
    fn a_press_is_reported_once_across_updates_ends_and_retransmits() {
        let mut rx = DtmfReceiver::new();
        let pkts = digit_packets('7', 100, 10).expect("a digit");
        let mut got = Vec::new();
        // Every packet twice, the start retransmitted with its marker.
        for p in pkts.iter().flat_map(|p| [p, p]) {
            got.extend(rx.on_packet(42, 1000, p.marker, &p.payload));
        }
        assert_eq!(got, ['7']);
        // The same key pressed again has a new timestamp: reported again.
        assert_eq!(rx.on_packet(42, 2600, true, &pkts[0].payload), Some('7'));
        // Only end packets arrive (start lost): still reported once.
        let end = pkts.last().expect("end packet").payload;
        assert_eq!(rx.on_packet(42, 5000, false, &end), Some('7'));
        assert_eq!(rx.on_packet(42, 5000, false, &end), None);
        // A late retransmit of an earlier press is still recognised.
        assert_eq!(rx.on_packet(42, 1000, false, &end), None);
    }

    #[test]
    fn a_replayed_recording_of_the_same_press_counts_again() {
        // SIPp replays one recorded event: same SSRC and timestamp each time.
        let mut rx = DtmfReceiver::new();
        let pkts = digit_packets('1', 60, 10).expect("a digit");
        let mut got = Vec::new();
        for _ in 0..2 {
            for p in &pkts {
                got.extend(rx.on_packet(0xE05384E, 13280, p.marker, &p.payload));
            }
        }
        assert_eq!(got, ['1', '1']);
    }

    #[test]
    fn garbage_and_non_digits_are_ignored() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.on_packet(1, 1, true, &[1]), None);
        assert_eq!(rx.on_packet(1, 2, true, &[16, 0x0A, 0, 160]), None);
    }

    #[test]
    fn sender_emits_marked_start_updates_and_three_ends() {
        let pkts = digit_packets('#', 100, 10).expect("a digit");
        assert_eq!(pkts.len(), 5 + END_REPEATS);
        assert!(pkts[0].marker);
        assert!(pkts[1..].iter().all(|p| !p.marker));
        let evs: Vec<TelephoneEvent> = pkts
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).expect("parses"))
            .collect();
        assert!(evs.iter().all(|e| e.event == 11 && e.volume == 10));
        let durations: Vec<u16> = evs.iter().map(|e| e.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        let ends: Vec<bool> = evs.iter().map(|e| e.end).collect();
        assert_eq!(ends, [false, false, false, false, false, true, true, true]);
        assert!(digit_packets('x', 100, 10).is_none());
        assert_eq!(
            digit_packets('1', 0, 10).map(|p| p.len()),
            Some(1 + END_REPEATS)
        );
    }
}
