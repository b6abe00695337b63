//! SDP offer/answer for herald's calls (RFC 4566, RFC 3264), as pure functions.
//!
//! Owns: the offer herald sends (PCMU/0, PCMA/8, telephone-event/8000 on PT
//! 101, ptime 20) and reading the callee's answer (where to send RTP, which
//! codec was chosen, the telephone-event payload type). Must not: bind
//! sockets, read clocks, or panic on whatever a peer sends.

use std::net::{IpAddr, SocketAddr};

use crate::media::srtp::{self, MasterKey};

/// The telephone-event payload type herald offers.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The G.711 variants herald speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// μ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl AudioCodec {
    pub fn payload_type(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Pcma => 8,
        }
    }
}

/// What herald needs from the callee's SDP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpAnswer {
    /// Where to send RTP (connection address and audio port).
    pub remote: SocketAddr,
    /// The first of the callee's formats that herald supports.
    pub codec: AudioCodec,
    /// The payload type the callee uses for telephone-event, if any.
    pub telephone_event_pt: Option<u8>,
    /// `a=ptime`, when given.
    pub ptime_ms: Option<u32>,
    /// The stream is SRTP (`RTP/SAVP`).
    pub secure: bool,
    /// Its SDES key for AES_CM_128_HMAC_SHA1_80, when it has one.
    pub crypto: Option<SdesCrypto>,
}

/// One `a=crypto` line herald can use (RFC 4568): its tag and master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesCrypto {
    pub tag: u32,
    pub key: MasterKey,
}

impl std::fmt::Debug for SdesCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SdesCrypto {{ tag: {}, key: *** }}", self.tag)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is not UTF-8 text")]
    NotText,
    #[error("the SDP has no usable audio stream (m=audio with a non-zero port)")]
    NoAudio,
    #[error("the SDP has no connection address (c=) for the audio stream")]
    NoConnection,
    #[error("the SDP connection address {0:?} is not an IP address")]
    BadAddress(String),
    #[error("the SDP offers none of PCMU or PCMA")]
    NoCommonCodec,
}

/// herald's SDP offer for an RTP socket at `ip:port`. `session_id` should be
/// unique per call (it is the `o=` session id and version).
pub fn build_offer(ip: IpAddr, port: u16, session_id: u64) -> String {
    build_offer_with(ip, port, session_id, None)
}

/// As [`build_offer`]; with `key`, the stream is SRTP (`RTP/SAVP`) and
/// offers that master key for AES_CM_128_HMAC_SHA1_80 (SDES, tag 1).
pub fn build_offer_with(ip: IpAddr, port: u16, session_id: u64, key: Option<&MasterKey>) -> String {
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let te = TELEPHONE_EVENT_PT;
    let (proto, crypto) = secure_parts(key.map(|k| (1, k)));
    format!(
        "v=0\r\n\
         o=herald {session_id} {session_id} IN {family} {ip}\r\n\
         s=herald\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} {proto} 0 8 {te}\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\n\
         a=fmtp:{te} 0-16\r\n\
         a=ptime:20\r\n\
         {crypto}\
         a=sendrecv\r\n"
    )
}

/// The transport protocol and `a=crypto` line of a stream keyed with
/// `(tag, key)`, or plain RTP.
fn secure_parts(crypto: Option<(u32, &MasterKey)>) -> (&'static str, String) {
    match crypto {
        Some((tag, key)) => (
            "RTP/SAVP",
            format!(
                "a=crypto:{tag} {} inline:{}\r\n",
                srtp::SDES_SUITE,
                srtp::to_inline(key)
            ),
        ),
        None => ("RTP/AVP", String::new()),
    }
}

/// The SDP answer to an offer read with [`parse_offer`]: RTP at `ip:port`,
/// the chosen codec, and telephone-event on the offer's payload type when
/// the offer had one.
pub fn build_answer(ip: IpAddr, port: u16, session_id: u64, offer: &SdpAnswer) -> String {
    build_answer_in(ip, port, session_id, offer, Direction::SendRecv, None)
}

/// The media direction of an SDP (RFC 4566 §6; RFC 3264 §5.1): the audio
/// stream's own attribute, else the session's, else `sendrecv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(a: &str) -> Option<Direction> {
        match a {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction to an offer in this one (RFC 3264 §6.1).
    pub fn answered(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether herald may send media under an offer in this direction.
    pub fn lets_us_send(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// The direction of the first audio stream of `body` (see [`Direction`]).
pub fn direction(body: &[u8]) -> Direction {
    let Ok(text) = std::str::from_utf8(body) else {
        return Direction::SendRecv;
    };
    let (mut session, mut media, mut in_audio, mut seen_audio) = (None, None, false, false);
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            if seen_audio {
                break;
            }
            in_audio = m.starts_with("audio ");
            seen_audio |= in_audio;
        } else if let Some(d) = line.strip_prefix("a=").and_then(Direction::parse) {
            if in_audio {
                media = Some(d);
            } else if !seen_audio {
                session = Some(d);
            }
        }
    }
    media.or(session).unwrap_or(Direction::SendRecv)
}

/// As [`build_answer`], answering in `direction`.
pub fn build_answer_in(
    ip: IpAddr,
    port: u16,
    session_id: u64,
    offer: &SdpAnswer,
    direction: Direction,
    crypto: Option<(u32, &MasterKey)>,
) -> String {
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let (proto, crypto) = secure_parts(crypto);
    let (pt, name) = match offer.codec {
        AudioCodec::Pcmu => (0, "PCMU"),
        AudioCodec::Pcma => (8, "PCMA"),
    };
    let mut formats = pt.to_string();
    let mut attrs = format!("a=rtpmap:{pt} {name}/8000\r\n");
    if let Some(te) = offer.telephone_event_pt {
        formats.push_str(&format!(" {te}"));
        attrs.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        ));
    }
    format!(
        "v=0\r\n\
         o=herald {session_id} {session_id} IN {family} {ip}\r\n\
         s=herald\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} {proto} {formats}\r\n\
         {attrs}\
         a=ptime:20\r\n\
         {crypto}\
         a={}\r\n",
        direction.as_str()
    )
}

/// Reads a caller's offer: the same facts as an answer (where to send RTP,
/// the first supported codec in the caller's order, its telephone-event
/// payload type).
pub fn parse_offer(body: &[u8]) -> Result<SdpAnswer, SdpError> {
    parse_answer(body)
}

/// Reads the callee's answer. The first `m=audio` line with a non-zero port
/// is used; its own `c=` wins over the session's.
pub fn parse_answer(body: &[u8]) -> Result<SdpAnswer, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut session_conn: Option<&str> = None;
    let mut audio: Option<AudioSection> = None;
    let mut in_other_media = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                if audio.is_some() {
                    // Only the first usable audio stream matters.
                    break;
                }
                audio = AudioSection::from_m_line(value);
                in_other_media = audio.is_none();
            }
            "c" if audio.is_none() && !in_other_media => session_conn = Some(value),
            "c" => {
                if let Some(a) = audio.as_mut() {
                    a.conn = Some(value);
                }
            }
            "a" => {
                if let Some(a) = audio.as_mut() {
                    a.attribute(value);
                }
            }
            _ => {}
        }
    }
    let audio = audio.ok_or(SdpError::NoAudio)?;
    let conn = audio.conn.or(session_conn).ok_or(SdpError::NoConnection)?;
    let ip = connection_ip(conn)?;
    let codec = audio.choose_codec().ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = audio
        .rtpmaps
        .iter()
        .find(|(pt, name)| {
            audio.formats.contains(pt) && name.eq_ignore_ascii_case("telephone-event/8000")
        })
        .map(|(pt, _)| *pt);
    Ok(SdpAnswer {
        remote: SocketAddr::new(ip, audio.port),
        codec,
        telephone_event_pt,
        ptime_ms: audio.ptime,
        secure: audio.secure,
        crypto: audio.crypto,
    })
}

/// Whether a message body looks like SDP worth parsing (for 183s without one).
pub fn is_sdp(content_type: Option<&str>, body: &[u8]) -> bool {
    !body.is_empty()
        && content_type.is_none_or(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/sdp")
        })
}

struct AudioSection<'a> {
    port: u16,
    formats: Vec<u8>,
    conn: Option<&'a str>,
    rtpmaps: Vec<(u8, String)>,
    ptime: Option<u32>,
    secure: bool,
    crypto: Option<SdesCrypto>,
}

impl<'a> AudioSection<'a> {
    fn from_m_line(value: &str) -> Option<AudioSection<'a>> {
        let mut parts = value.split_whitespace();
        if parts.next()? != "audio" {
            return None;
        }
        // "port" or "port/count"
        let port: u16 = parts.next()?.split('/').next()?.parse().ok()?;
        if port == 0 {
            return None;
        }
        let proto = parts.next()?;
        if !proto.to_ascii_uppercase().starts_with("RTP/") {
            return None;
        }
        let formats = parts.filter_map(|f| f.parse::<u8>().ok()).collect();
        Some(AudioSection {
            port,
            formats,
            conn: None,
            rtpmaps: Vec::new(),
            ptime: None,
            secure: proto.eq_ignore_ascii_case("RTP/SAVP"),
            crypto: None,
        })
    }

    fn attribute(&mut self, value: &str) {
        if let Some(map) = value.strip_prefix("rtpmap:") {
            let mut it = map.splitn(2, char::is_whitespace);
            let pt = it.next().and_then(|p| p.trim().parse::<u8>().ok());
            let name = it.next().map(|n| n.trim().to_string());
            if let (Some(pt), Some(name)) = (pt, name) {
                self.rtpmaps.push((pt, name));
            }
        } else if let Some(p) = value.strip_prefix("ptime:") {
            self.ptime = p.trim().parse().ok();
        } else if let Some(c) = value.strip_prefix("crypto:") {
            // "TAG SUITE inline:KEY[|…] [session params]": the first line of
            // the one suite herald speaks.
            let mut f = c.split_whitespace();
            let tag = f.next().and_then(|t| t.parse::<u32>().ok());
            let suite = f.next();
            let key = f
                .next()
                .and_then(|k| k.strip_prefix("inline:"))
                .and_then(srtp::from_inline);
            if let (None, Some(tag), Some(srtp::SDES_SUITE), Some(key)) =
                (&self.crypto, tag, suite, key)
            {
                self.crypto = Some(SdesCrypto { tag, key });
            }
        }
    }

    /// The first listed format that is PCMU or PCMA (by static PT, or by a
    /// dynamic PT mapped to it).
    fn choose_codec(&self) -> Option<AudioCodec> {
        self.formats.iter().find_map(|&pt| {
            let mapped = self
                .rtpmaps
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, name)| name.to_ascii_uppercase());
            match (pt, mapped.as_deref()) {
                (_, Some(n)) if n.starts_with("PCMU/8000") => Some(AudioCodec::Pcmu),
                (_, Some(n)) if n.starts_with("PCMA/8000") => Some(AudioCodec::Pcma),
                (0, None) => Some(AudioCodec::Pcmu),
                (8, None) => Some(AudioCodec::Pcma),
                _ => None,
            }
        })
    }
}

fn connection_ip(conn: &str) -> Result<IpAddr, SdpError> {
    // "IN IP4 192.0.2.1" or "IN IP4 233.252.0.1/127" (multicast TTL)
    let addr = conn
        .split_whitespace()
        .nth(2)
        .ok_or(SdpError::NoConnection)?;
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| SdpError::BadAddress(addr.chars().take(64).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_ANSWER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn an_answer_to_herald_s_offer_is_read_back_as_pcmu_with_telephone_events() {
        let offer = build_offer("127.0.0.1".parse().unwrap(), 20002, 42);
        let o = parse_offer(offer.as_bytes()).unwrap();
        let answer = build_answer("127.0.0.1".parse().unwrap(), 30000, 7, &o);
        let a = parse_answer(answer.as_bytes()).unwrap();
        assert_eq!(a.remote, "127.0.0.1:30000".parse().unwrap());
        assert_eq!(a.codec, AudioCodec::Pcmu);
        assert_eq!(a.telephone_event_pt, Some(TELEPHONE_EVENT_PT));
        let plain = SdpAnswer {
            telephone_event_pt: None,
            codec: AudioCodec::Pcma,
            ..o
        };
        let answer = build_answer("127.0.0.1".parse().unwrap(), 30000, 7, &plain);
        assert!(answer.contains("m=audio 30000 RTP/AVP 8\r\n"), "{answer}");
        assert!(!answer.contains("telephone-event"));
    }

    #[test]
    fn offer_lists_pcmu_pcma_and_telephone_event_at_20ms() {
        let offer = build_offer("127.0.0.1".parse().unwrap(), 20002, 42);
        assert!(offer.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(offer.contains("m=audio 20002 RTP/AVP 0 8 101\r\n"));
        assert!(offer.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(offer.contains("a=ptime:20\r\n"));
        assert!(offer.contains("o=herald 42 42 IN IP4"));
        // herald's own offer reads back as a valid answer.
        let back = parse_answer(offer.as_bytes()).unwrap();
        assert_eq!(back.remote, "127.0.0.1:20002".parse().unwrap());
        assert_eq!(back.codec, AudioCodec::Pcmu);
        assert_eq!(back.telephone_event_pt, Some(101));
        assert_eq!(back.ptime_ms, Some(20));
    }

    #[test]
    fn an_srtp_offer_carries_its_key_and_an_answer_s_key_is_read_back() {
        let key = srtp::new_master_key();
        let offer = build_offer_with("127.0.0.1".parse().unwrap(), 20002, 42, Some(&key));
        assert!(
            offer.contains("m=audio 20002 RTP/SAVP 0 8 101\r\n"),
            "{offer}"
        );
        let read = parse_offer(offer.as_bytes()).unwrap();
        assert!(read.secure);
        assert_eq!(read.crypto, Some(SdesCrypto { tag: 1, key }));
        assert!(
            !format!("{read:?}").contains(&srtp::to_inline(&key)),
            "no key in Debug"
        );
        // An answer under the offer's tag, with the answerer's key; other
        // suites and keys with an MKI are skipped.
        let theirs = srtp::new_master_key();
        let answer = build_answer_in(
            "127.0.0.1".parse().unwrap(),
            30000,
            7,
            &read,
            Direction::SendRecv,
            Some((1, &theirs)),
        );
        let mut with_others = answer.replace(
            "a=crypto:1",
            "a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:AAAA\r\na=crypto:1",
        );
        with_others.push_str("a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:short\r\n");
        let back = parse_answer(with_others.as_bytes()).unwrap();
        assert!(back.secure);
        assert_eq!(
            back.crypto,
            Some(SdesCrypto {
                tag: 1,
                key: theirs
            })
        );
        let plain = parse_answer(build_offer("127.0.0.1".parse().unwrap(), 1, 1).as_bytes());
        assert!(!plain.as_ref().unwrap().secure && plain.unwrap().crypto.is_none());
    }

    #[test]
    fn offer_uses_ip6_for_ipv6() {
        let offer = build_offer("::1".parse().unwrap(), 4000, 1);
        assert!(offer.contains("c=IN IP6 ::1\r\n"));
        let back = parse_answer(offer.as_bytes()).unwrap();
        assert_eq!(back.remote, "[::1]:4000".parse().unwrap());
    }

    #[test]
    fn sipp_style_answer_is_parsed() {
        let a = parse_answer(SIPP_ANSWER.as_bytes()).unwrap();
        assert_eq!(a.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(a.codec, AudioCodec::Pcmu);
        assert_eq!(a.telephone_event_pt, None);
    }

    #[test]
    fn media_connection_wins_and_dynamic_telephone_event_is_found() {
        let sdp = "v=0\nc=IN IP4 10.0.0.1\nt=0 0\nm=video 5000 RTP/AVP 96\nc=IN IP4 10.9.9.9\n\
                   m=audio 7078 RTP/AVP 8 0 96\nc=IN IP4 192.0.2.7\n\
                   a=rtpmap:96 TELEPHONE-EVENT/8000\na=ptime:30\n";
        let a = parse_answer(sdp.as_bytes()).unwrap();
        assert_eq!(a.remote, "192.0.2.7:7078".parse().unwrap());
        assert_eq!(a.codec, AudioCodec::Pcma);
        assert_eq!(a.telephone_event_pt, Some(96));
        assert_eq!(a.ptime_ms, Some(30));
    }

    #[test]
    fn session_connection_is_used_when_the_stream_has_none() {
        let sdp = "v=0\r\nc=IN IP4 198.51.100.4\r\nm=audio 9 RTP/AVP 18 0\r\n";
        let a = parse_answer(sdp.as_bytes()).unwrap();
        assert_eq!(a.remote, "198.51.100.4:9".parse().unwrap());
        assert_eq!(a.codec, AudioCodec::Pcmu);
    }

    #[test]
    fn dynamic_pt_mapped_to_pcma_is_accepted() {
        let sdp = "c=IN IP4 1.2.3.4\nm=audio 10 RTP/AVP 97\na=rtpmap:97 PCMA/8000\n";
        assert_eq!(
            parse_answer(sdp.as_bytes()).unwrap().codec,
            AudioCodec::Pcma
        );
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        let cases: &[(&[u8], SdpError)] = &[
            (b"\xff\xfe", SdpError::NotText),
            (b"", SdpError::NoAudio),
            (
                b"m=audio 0 RTP/AVP 0\r\nc=IN IP4 1.2.3.4",
                SdpError::NoAudio,
            ),
            (b"m=audio 99999 RTP/AVP 0", SdpError::NoAudio),
            (b"m=audio 4000 RTP/AVP 0", SdpError::NoConnection),
            (b"c=IN IP4\nm=audio 4000 RTP/AVP 0", SdpError::NoConnection),
            (
                b"c=IN IP4 pbx.example\nm=audio 4000 RTP/AVP 0",
                SdpError::BadAddress("pbx.example".into()),
            ),
            (
                b"c=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 18 9",
                SdpError::NoCommonCodec,
            ),
            (b"=\n==\nm=\nm=audio\nm=audio x", SdpError::NoAudio),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_answer(body).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn multicast_ttl_suffix_is_ignored() {
        let sdp = "c=IN IP4 233.252.0.1/127\nm=audio 4000 RTP/AVP 0\n";
        assert_eq!(
            parse_answer(sdp.as_bytes()).unwrap().remote,
            "233.252.0.1:4000".parse().unwrap()
        );
    }

    #[test]
    fn sdp_is_recognised_by_content_type_and_body() {
        assert!(is_sdp(Some("application/sdp"), b"v=0"));
        assert!(is_sdp(Some("Application/SDP; charset=x"), b"v=0"));
        assert!(is_sdp(None, b"v=0"));
        assert!(!is_sdp(Some("application/sdp"), b""));
        assert!(!is_sdp(Some("text/plain"), b"hello"));
    }
}
