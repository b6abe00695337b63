//! Media: RTP sessions, G.711, RFC 4733 telephone events, jitter buffer,
//! RTP port pool, WAV prompts. No SIP here.
