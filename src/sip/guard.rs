//! The SIP UDP socket as rsipstack sees it, with malformed datagrams taken
//! out before they reach it.
//!
//! Owns: reading datagrams, dropping those rsipstack could not use (not a SIP
//! message, or a request without a usable Via), counting them in
//! `herald_sip_malformed_datagrams_total`, and logging them at most once per
//! source address per [`LOG_EVERY`], as a short, redacted, escaped excerpt.
//! Also the redaction of credentials in any SIP text herald logs
//! ([`redact_credentials`]). Must not: log a datagram in full, or log the
//! value of an `Authorization` or `Proxy-Authorization` header.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::sip::SipMessage;
use rsipstack::transport::SipConnection;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// One log line per source address at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Bytes of a malformed datagram shown in its log line.
pub const EXCERPT_BYTES: usize = 120;
/// Sources remembered for rate limiting; past this, older entries are
/// forgotten, and if all are recent, further sources are not logged.
const MAX_SOURCES: usize = 4096;

/// What [`GuardedUdp`] does with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand it to rsipstack (a SIP message, or a keep-alive / blank datagram,
    /// which rsipstack answers or skips itself).
    Pass,
    /// Drop it: rsipstack would not use it.
    Malformed,
}

/// Whether rsipstack can use `packet` (pure; ~1 µs for a typical message).
pub(super) fn judge(packet: &[u8], from: SocketAddr) -> Verdict {
    if packet.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Pass;
    }
    match SipMessage::try_from(packet) {
        Ok(msg) => match SipConnection::update_msg_received(
            msg,
            from,
            rsipstack::sip::transport::Transport::Udp,
        ) {
            Ok(_) => Verdict::Pass,
            Err(_) => Verdict::Malformed,
        },
        Err(_) => Verdict::Malformed,
    }
}

/// Replaces the values of `Authorization` and `Proxy-Authorization` headers
/// (digest responses, bearer tokens) in SIP text with `<redacted>`.
pub fn redact_credentials(text: &str) -> Cow<'_, str> {
    fn is_credential_line(line: &str) -> bool {
        line.split_once(':').is_some_and(|(name, _)| {
            let name = name.trim();
            name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("proxy-authorization")
        })
    }
    if !text.split('\n').any(is_credential_line) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if is_credential_line(line) {
            let (name, _) = line.split_once(':').unwrap_or((line, ""));
            out.push_str(name);
            out.push_str(": <redacted>");
            if line.ends_with('\r') {
                out.push('\r');
            }
        } else {
            out.push_str(line);
        }
    }
    Cow::Owned(out)
}

/// The start of a datagram as one log-safe line: credentials redacted, at
/// most [`EXCERPT_BYTES`] bytes, control characters escaped.
pub(super) fn excerpt(packet: &[u8]) -> String {
    let text = String::from_utf8_lossy(packet);
    let redacted = redact_credentials(&text);
    let mut end = redacted.len().min(EXCERPT_BYTES);
    while !redacted.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = redacted[..end].escape_debug().collect();
    if end < redacted.len() {
        out.push('…');
    }
    out
}

/// Per-source log rate limiting: whether to log now, given when this
/// source was last logged.
pub(super) fn due(last_logged: Option<Instant>, now: Instant) -> bool {
    last_logged.is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
}

/// Malformed datagrams seen per source since its last log line.
#[derive(Default)]
struct Sources {
    by_ip: HashMap<IpAddr, (Instant, u64)>,
}

impl Sources {
    /// Records a malformed datagram from `ip`; returns how many were
    /// suppressed since the last line when this one should be logged.
    fn record(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if let Some((at, suppressed)) = self.by_ip.get_mut(&ip) {
            if due(Some(*at), now) {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                return Some(n);
            }
            *suppressed += 1;
            return None;
        }
        if self.by_ip.len() >= MAX_SOURCES {
            self.by_ip.retain(|_, (at, _)| !due(Some(*at), now));
            if self.by_ip.len() >= MAX_SOURCES {
                return None;
            }
        }
        self.by_ip.insert(ip, (now, 0));
        Some(0)
    }
}

/// herald's SIP UDP socket: rsipstack reads from it and sees only datagrams
/// it can use.
pub(super) struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    metrics: Arc<Metrics>,
    sources: Mutex<Sources>,
}

impl GuardedUdp {
    pub(super) fn new(socket: tokio::net::UdpSocket, metrics: Arc<Metrics>) -> Self {
        GuardedUdp {
            socket,
            metrics,
            sources: Mutex::default(),
        }
    }

    fn malformed(&self, packet: &[u8], from: SocketAddr) {
        self.metrics.sip_malformed_datagrams.add(1);
        let logged = match self.sources.lock() {
            Ok(mut s) => s.record(from.ip(), Instant::now()),
            Err(_) => None,
        };
        if let Some(suppressed) = logged {
            tracing::warn!(
                src = %from,
                len = packet.len(),
                suppressed_since_last = suppressed,
                excerpt = %excerpt(packet),
                "malformed SIP datagram dropped (one line per source per minute; all are counted in herald_sip_malformed_datagrams_total)"
            );
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf).await?;
            match judge(&buf[..len], from) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Malformed => self.malformed(&buf[..len], from),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+15551234567@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n\
        From: <sip:herald@example.com>;tag=a\r\n\
        To: <sip:+15551234567@example.com>\r\n\
        Call-ID: c1\r\n\
        CSeq: 2 INVITE\r\n\
        Authorization: Digest username=\"acct-1\", realm=\"x\", nonce=\"n\", uri=\"sip:x\", response=\"c600aa\"\r\n\
        Content-Length: 0\r\n\r\n";

    fn from() -> SocketAddr {
        "127.0.0.1:5099".parse().unwrap()
    }

    #[test]
    fn datagrams_are_judged_as_rsipstack_would_use_them() {
        let cases: &[(&[u8], Verdict)] = &[
            (INVITE.as_bytes(), Verdict::Pass),
            (b"\r\n\r\n", Verdict::Pass),
            (b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nCall-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n", Verdict::Pass),
            (b"\x00\x01\x02garbage", Verdict::Malformed),
            (b"HELLO", Verdict::Malformed),
            (b"INVITE sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n", Verdict::Malformed),
        ];
        for (packet, want) in cases {
            assert_eq!(
                judge(packet, from()),
                *want,
                "{:?}",
                String::from_utf8_lossy(packet)
            );
        }
    }

    #[test]
    fn credentials_are_redacted_in_any_case() {
        let r = redact_credentials(INVITE);
        assert!(!r.contains("c600aa") && !r.contains("acct-1"), "{r}");
        assert!(r.contains("Authorization: <redacted>\r\n"), "{r}");
        assert!(r.contains("CSeq: 2 INVITE\r\n"));
        let cases = [
            (
                "proxy-authorization: Digest response=\"1\"",
                "proxy-authorization: <redacted>",
            ),
            (
                "PROXY-AUTHORIZATION:Bearer abc",
                "PROXY-AUTHORIZATION: <redacted>",
            ),
            (
                "Subject: authorization: none",
                "Subject: authorization: none",
            ),
            ("X-Authorization-Hint: keep", "X-Authorization-Hint: keep"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_credentials(text), want);
        }
    }

    #[test]
    fn excerpts_are_short_escaped_and_redacted() {
        let e = excerpt(b"Authorization: Digest response=\"secret\"\r\nx");
        assert_eq!(e, "Authorization: <redacted>\\r\\nx");
        let e = excerpt(&[b'a'; 1000]);
        assert_eq!(e, format!("{}…", "a".repeat(EXCERPT_BYTES)));
        let e = excerpt("é".repeat(100).as_bytes());
        assert!(e.len() <= EXCERPT_BYTES + '…'.len_utf8());
    }

    #[test]
    fn each_source_is_logged_at_most_once_a_minute() {
        let t0 = Instant::now();
        assert!(due(None, t0));
        assert!(!due(Some(t0), t0 + Duration::from_secs(59)));
        assert!(due(Some(t0), t0 + LOG_EVERY));
        let mut s = Sources::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(s.record(a, t0), Some(0));
        assert_eq!(s.record(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(s.record(b, t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(s.record(a, t0 + Duration::from_secs(30)), None);
        assert_eq!(s.record(a, t0 + Duration::from_secs(61)), Some(2));
    }

    #[test]
    fn a_flood_of_sources_does_not_grow_the_table_without_bound() {
        let t0 = Instant::now();
        let mut s = Sources::default();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            s.record(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(s.by_ip.len(), MAX_SOURCES);
        // Once the old entries are due again, new sources are logged.
        let later = t0 + LOG_EVERY;
        assert_eq!(s.record(IpAddr::from([192, 168, 0, 1]), later), Some(0));
        assert_eq!(s.by_ip.len(), 1);
    }
}
