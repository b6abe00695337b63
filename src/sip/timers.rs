//! Session timers (RFC 4028), as pure decisions: what the INVITE says
//! (`Supported: timer`, `Session-Expires` with herald as refresher,
//! `Min-SE`), what a 422 asks for, what the 2xx settled, and when the call
//! must be refreshed (herald the refresher: at half the interval) or is
//! taken as dead (the callee the refresher and silent: the interval less
//! min(32 s, a third)).
//!
//! Owns: the arithmetic and the header text. Must not: send anything (the
//! call's task does, with UPDATE when the callee allows it, else re-INVITE).

use std::time::Duration;

use rsipstack::sip::{Header, Response};

use super::stack::header_values;

/// herald's session timer settings (`[sip]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimerConfig {
    /// Asked for on each INVITE, in seconds; 0: no session timer.
    pub session_expires_s: u32,
    /// The least herald accepts (and says in `Min-SE`).
    pub min_se_s: u32,
}

/// What the INVITE carries for `session_expires_s`.
pub(super) fn invite_headers(session_expires_s: u32, min_se_s: u32) -> Vec<Header> {
    if session_expires_s == 0 {
        return Vec::new();
    }
    vec![
        Header::Supported("timer".into()),
        Header::Other(
            "Session-Expires".into(),
            format!("{session_expires_s};refresher=uac"),
        ),
        Header::Other("Min-SE".into(), min_se_s.to_string()),
    ]
}

/// The `Min-SE` of a 422 (Session Interval Too Small).
pub(super) fn min_se_of(resp: &Response) -> Option<u32> {
    header_values(&resp.headers, "min-se")
        .first()
        .and_then(|v| v.split(';').next()?.trim().parse().ok())
}

/// The session timer a 2xx settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionTimer {
    pub interval: Duration,
    /// herald refreshes (`refresher=uac`); else the callee does.
    pub we_refresh: bool,
}

impl SessionTimer {
    /// When herald refreshes (its turn), or gives the session up (the
    /// callee's turn), counted from the last refresh.
    pub fn due_after(&self) -> Duration {
        if self.we_refresh {
            self.interval / 2
        } else {
            self.interval - (self.interval / 3).min(Duration::from_secs(32))
        }
    }
}

/// The session timer in a 2xx: its `Session-Expires` (absent: none).
pub(super) fn negotiated(resp: &Response) -> Option<SessionTimer> {
    let v = header_values(&resp.headers, "session-expires")
        .into_iter()
        .next()?;
    let mut parts = v.split(';');
    let secs: u64 = parts.next()?.trim().parse().ok()?;
    if secs == 0 {
        return None;
    }
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some(SessionTimer {
        interval: Duration::from_secs(secs),
        // A 2xx without a refresher leaves it to the UAC (RFC 4028 §7.2).
        we_refresh: refresher.as_deref() != Some("uas"),
    })
}

/// Whether the 2xx's `Allow` lists UPDATE (a refresh then needs no ACK).
pub(super) fn allows_update(resp: &Response) -> bool {
    header_values(&resp.headers, "allow")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// The headers of a refresh (herald stays the refresher).
pub(super) fn refresh_headers(t: &SessionTimer) -> Vec<Header> {
    vec![
        Header::Supported("timer".into()),
        Header::Other(
            "Session-Expires".into(),
            format!("{};refresher=uac", t.interval.as_secs()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn resp(status: &str, headers: &str) -> Response {
        let raw = format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             {headers}Content-Length: 0\r\n\r\n"
        );
        match SipMessage::try_from(raw.as_str()).unwrap() {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => unreachable!("a response"),
        }
    }

    #[test]
    fn the_2xx_says_who_refreshes_and_when() {
        let t = negotiated(&resp("200 OK", "Session-Expires: 90;refresher=uac\r\n")).unwrap();
        assert_eq!(t.interval, Duration::from_secs(90));
        assert!(t.we_refresh);
        assert_eq!(t.due_after(), Duration::from_secs(45));
        let t = negotiated(&resp("200 OK", "Session-Expires: 1800;refresher=uas\r\n")).unwrap();
        assert!(!t.we_refresh);
        assert_eq!(t.due_after(), Duration::from_secs(1800 - 32));
        let t = negotiated(&resp("200 OK", "Session-Expires: 90\r\n")).unwrap();
        assert!(t.we_refresh);
        assert_eq!(negotiated(&resp("200 OK", "")), None);
        assert!(allows_update(&resp(
            "200 OK",
            "Allow: INVITE, ACK, BYE, UPDATE\r\n"
        )));
        assert!(!allows_update(&resp(
            "200 OK",
            "Allow: INVITE, ACK, BYE\r\n"
        )));
    }

    #[test]
    fn a_422_names_its_minimum() {
        assert_eq!(
            min_se_of(&resp("422 Session Interval Too Small", "Min-SE: 120\r\n")),
            Some(120)
        );
        assert_eq!(min_se_of(&resp("422 Session Interval Too Small", "")), None);
        assert!(invite_headers(0, 90).is_empty());
        assert_eq!(invite_headers(1800, 90).len(), 3);
    }
}
