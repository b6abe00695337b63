//! The plain types every part of a media session shares: the codec, the
//! negotiated configuration, the events a session reports, and the constants
//! that tune them.
//!
//! Owns: data and constants only, so that the session task (`session/`),
//! its event queue (`events.rs`) and its handle (`rtp.rs`) depend on this
//! file rather than on each other.
//!
//! Must not: hold sockets, tasks or behaviour beyond small conversions.

use bytes::Bytes;
use std::time::Duration;

/// The telephone-event payload type herald offers.
pub const DEFAULT_DTMF_PAYLOAD_TYPE: u8 = 101;
/// RTP payload type of comfort noise (RFC 3389): accepted, not decoded.
pub const COMFORT_NOISE_PAYLOAD_TYPE: u8 = 13;
/// Received audio frames held for a slow consumer before new ones are dropped.
pub const AUDIO_EVENT_CAPACITY: usize = 100;
/// In a continuous feed ([`super::RtpControl::continuous_audio`]), how far behind
/// real time the received audio may fall, with nothing waiting in the
/// jitter buffer, before a slot is filled with silence: three 20 ms frames.
pub const CONTINUOUS_SLACK: Duration = Duration::from_millis(60);

/// A G.711 codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type; `None` for anything else.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`a=rtpmap:0 PCMU/8000`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// What the call negotiated, and local policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpConfig {
    /// The codec we send (received audio of either G.711 law is accepted).
    pub codec: Codec,
    /// `None`: telephone-event was not negotiated (DTMF is neither sent nor
    /// decoded).
    pub dtmf_payload_type: Option<u8>,
    /// No RTP received for this long gives [`MediaEvent::Inactive`].
    pub inactivity_timeout: Duration,
    /// Receive playout delay of the jitter buffer, in ms.
    pub jitter_ms: u32,
    /// SRTP keys on an encrypted call: every packet sent is protected, every
    /// packet received must authenticate.
    pub srtp: Option<super::srtp::SrtpKeys>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            codec: Codec::Pcmu,
            dtmf_payload_type: Some(DEFAULT_DTMF_PAYLOAD_TYPE),
            inactivity_timeout: Duration::from_secs(30),
            jitter_ms: 40,
            srtp: None,
        }
    }
}

/// What a session reports to its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// One received frame (μ-law), in sequence order, after the jitter buffer.
    Audio {
        ulaw: Bytes,
        seq: u16,
        timestamp: u32,
    },
    /// A key press, once per press.
    Dtmf(char),
    /// All audio queued before this mark has been sent.
    MarkPlayed(String),
    /// The mark was dropped by `clear` before the audio queued ahead of it
    /// had all been sent.
    MarkCleared(String),
    /// No RTP was received for the inactivity timeout. Reported once per
    /// silent spell.
    Inactive,
}
