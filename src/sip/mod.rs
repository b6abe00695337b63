//! Call control: herald's SIP user agent over rsipstack.
//!
//! Owns: originating calls (INVITE, ring timeout → CANCEL, max duration → BYE),
//! digest auth, the incoming-request loop (BYE, OPTIONS, 481 for strangers),
//! SDP offer/answer, and the pure classification of SIP responses into
//! [`crate::domain::Outcome`]s. Nothing outside this module names rsipstack types.
