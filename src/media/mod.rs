//! Media: RTP sessions, G.711, RFC 4733 telephone events, jitter buffer,
//! RTP port pool, WAV prompts and where they may be read from.
//!
//! Owns everything between a call's negotiated media description (codec,
//! payload types, remote address: handed in by `sip`) and μ-law 8 kHz audio,
//! key presses and marks (handed to agents). Users always speak μ-law,
//! whatever the call negotiated.
//!
//! Must not: parse or build SIP or SDP, know about campaigns or agents, or
//! leave a task or a port behind when a session's handle goes away.

pub mod amd;
pub mod dtmf;
mod events;
pub mod g711;
pub mod jitter;
pub mod playout;
pub mod ports;
pub mod prompts;
pub mod rtp;
mod session;
pub mod srtp;
pub mod stats;
mod types;
pub mod wav;

pub use ports::{PortLease, PortPool};
pub use rtp::{
    Codec, MediaEvent, MediaEvents, RtpConfig, RtpControl, RtpHandle, RtpSession, RtpStats,
};
