//! A deterministic, structure-aware SIP datagram generator: real requests
//! and responses (INVITE with SDP, ACK, BYE, CANCEL, MESSAGE, OPTIONS,
//! REGISTER, INFO, 100/180/200/486/481) with one to three mutations each —
//! truncation, header bombs, a huge or wrong Content-Length, bad UTF-8,
//! folded headers, duplicate tags, wrong CSeq, broken start lines and Via,
//! SDP nonsense, bit flips, CRLFs removed, or plain noise. In-dialog
//! requests can carry the Call-ID of a live call (with tags that are not
//! its own). The same seed gives the same datagrams.
#![allow(dead_code)]

use std::net::SocketAddr;

pub struct SipFuzzer {
    state: u64,
    /// Call-IDs of live calls, for in-dialog requests.
    pub call_ids: Vec<String>,
}

const METHODS: [&str; 9] = [
    "INVITE", "ACK", "BYE", "CANCEL", "MESSAGE", "OPTIONS", "REGISTER", "INFO", "UPDATE",
];
const STATUSES: [&str; 6] = [
    "100 Trying",
    "180 Ringing",
    "200 OK",
    "486 Busy Here",
    "481 Call/Transaction Does Not Exist",
    "503 Service Unavailable",
];

impl SipFuzzer {
    pub fn new(seed: u64) -> SipFuzzer {
        SipFuzzer {
            state: seed.max(1),
            call_ids: Vec::new(),
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rand() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn sdp(&mut self) -> String {
        let port = 10_000 + 2 * self.below(1000);
        format!(
            "v=0\r\no=- {0} {0} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
            self.rand() % 100_000
        )
    }

    /// A well-formed message to start from.
    fn base(&mut self, to: SocketAddr, from: SocketAddr) -> String {
        let n = self.rand() % 1_000_000;
        let call_id = if !self.call_ids.is_empty() && self.below(3) == 0 {
            let i = self.below(self.call_ids.len());
            self.call_ids[i].clone()
        } else {
            format!("fuzz-{n}@{}", from.ip())
        };
        let from_tag = format!("ft{}", self.rand() % 100_000);
        let to_tag = if self.below(2) == 0 {
            format!(";tag=tt{}", self.rand() % 100_000)
        } else {
            String::new()
        };
        let branch = format!("z9hG4bK-fuzz-{}", self.rand());
        if self.below(4) == 0 {
            let status = self.pick(&STATUSES);
            let method = self.pick(&METHODS);
            let body = if status.starts_with("200") && method == "INVITE" {
                self.sdp()
            } else {
                String::new()
            };
            return format!(
                "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {to};branch={branch}\r\n\
                 From: <sip:herald@{to}>;tag={from_tag}\r\nTo: <sip:callee@{from}>{to_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: {} {method}\r\nContact: <sip:callee@{from}>\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                1 + self.below(5),
                body.len()
            );
        }
        let method = self.pick(&METHODS);
        let body = match method {
            "INVITE" | "UPDATE" => self.sdp(),
            "MESSAGE" => "Hello from the fuzzer".to_string(),
            "INFO" => "Signal=5\r\nDuration=160\r\n".to_string(),
            _ => String::new(),
        };
        let kind = match method {
            "MESSAGE" => "text/plain",
            "INFO" => "application/dtmf-relay",
            _ => "application/sdp",
        };
        format!(
            "{method} sip:herald@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:fuzz@{from}>;tag={from_tag}\r\nTo: <sip:herald@{to}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {} {method}\r\nContact: <sip:fuzz@{from}>\r\n\
             Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
            1 + self.below(50),
            body.len()
        )
    }

    fn mutate(&mut self, m: &mut Vec<u8>) {
        let text = |m: &Vec<u8>| String::from_utf8_lossy(m).into_owned();
        match self.below(16) {
            0 => {
                let at = self.below(m.len() + 1);
                m.truncate(at);
            }
            1 => {
                let mut s = text(m);
                let bomb: String = (0..(200 + self.below(3000)))
                    .map(|i| format!("X-Bomb-{i}: {}\r\n", "b".repeat(self.below(40))))
                    .collect();
                if let Some(at) = s.find("\r\n") {
                    s.insert_str(at + 2, &bomb);
                }
                *m = s.into_bytes();
            }
            2 => {
                let s = text(m);
                let v = self.pick(&[
                    "4294967296",
                    "99999999999999999999",
                    "-1",
                    "abc",
                    "",
                    "0x10",
                    "65536",
                ]);
                let s = match s.find("Content-Length: ") {
                    Some(at) => {
                        let end = s[at..].find("\r\n").map_or(s.len(), |e| at + e);
                        format!("{}Content-Length: {v}{}", &s[..at], &s[end..])
                    }
                    None => s,
                };
                *m = s.into_bytes();
            }
            3 => {
                for _ in 0..(1 + self.below(8)) {
                    let at = self.below(m.len() + 1);
                    let junk: &[u8] = [
                        &[0xff, 0xfe][..],
                        &[0xc3, 0x28],
                        &[0xe2, 0x82],
                        &[0],
                        &[0xed, 0xa0, 0x80],
                    ][self.below(5)];
                    m.splice(at..at, junk.iter().copied());
                }
            }
            4 => {
                let s = text(m).replacen("\r\nTo:", "\r\n \t To:", 1).replacen(
                    "\r\nVia:",
                    "\r\nVia:\r\n ",
                    1,
                );
                *m = s.into_bytes();
            }
            5 => {
                let s = text(m).replacen(";tag=", ";tag=dup1;tag=", 2);
                *m = s.into_bytes();
            }
            6 => {
                let s = text(m);
                let v = self.pick(&[
                    "CSeq: -5 BYE",
                    "CSeq: 99999999999999999999 INVITE",
                    "CSeq: abc",
                    "CSeq:",
                    "CSeq: 1 INVITE INVITE",
                    "CSeq: 4294967295 ACK",
                ]);
                let s = match s.find("CSeq:") {
                    Some(at) => {
                        let end = s[at..].find("\r\n").map_or(s.len(), |e| at + e);
                        format!("{}{v}{}", &s[..at], &s[end..])
                    }
                    None => s,
                };
                *m = s.into_bytes();
            }
            7 => {
                for _ in 0..(1 + self.below(8)) {
                    if !m.is_empty() {
                        let at = self.below(m.len());
                        m[at] ^= 1 << self.below(8);
                    }
                }
            }
            8 => {
                let s = text(m)
                    .replace("\r\n\r\n", "\r\n")
                    .replacen("\r\n", "\n", self.below(5));
                *m = s.into_bytes();
            }
            9 => {
                let len = self.below(1500);
                *m = (0..len).map(|_| self.rand() as u8).collect();
            }
            10 => {
                let tiny: &[&[u8]] = &[
                    b"",
                    b"\r\n",
                    b"\r\n\r\n",
                    b"SIP/2.0",
                    b"INVITE",
                    b" ",
                    b"\0",
                ];
                *m = tiny[self.below(tiny.len())].to_vec();
            }
            11 => {
                let s = text(m);
                let line_end = s.find("\r\n").unwrap_or(s.len());
                let line = self.pick(&[
                    "INV\0ITE sip:x SIP/2.0",
                    "INVITE sip:x SIP/3.0",
                    "INVITE  SIP/2.0",
                    "SIP/2.0 99999999 Huge",
                    "SIP/2.0 2 Short",
                    "sip/2.0 200 ok",
                    "INVITE <sip:x> SIP/2.0",
                ]);
                let long = format!("INVITE sip:{}@x SIP/2.0", "u".repeat(8000));
                let line = if self.below(4) == 0 {
                    long.as_str()
                } else {
                    line
                };
                *m = format!("{line}{}", &s[line_end..]).into_bytes();
            }
            12 => {
                let s = text(m);
                let v = self.pick(&[
                    "m=audio 99999999 RTP/AVP 0",
                    "m=audio -1 RTP/AVP",
                    "m=video 0 RTP/AVP 255",
                    "c=IN IP4 999.1.1.1",
                    "c=IN IP6 ::::::",
                    "a=rtpmap:0 PCMU/0",
                    "a=rtpmap:999999 x/8000/0",
                    "m=audio 10000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:@@@",
                ]);
                let s = s.replacen("m=audio", &format!("{v}\r\nm=audio"), 1);
                let extra: String = (0..self.below(2000))
                    .map(|i| format!("a=x{i}\r\n"))
                    .collect();
                *m = format!("{s}{extra}").into_bytes();
            }
            13 => {
                let s = text(m);
                let v = self.pick(&[
                    "Via: SIP/2.0/UDP",
                    "Via: ",
                    "Via: SIP/2.0/UDP :0;branch=",
                    "Via: SIP/2.0/TCP [::1;branch=z9hG4bK",
                ]);
                let s = match s.find("Via:") {
                    Some(at) => {
                        let end = s[at..].find("\r\n").map_or(s.len(), |e| at + e);
                        format!("{}{v}{}", &s[..at], &s[end..])
                    }
                    None => s,
                };
                *m = s.into_bytes();
            }
            14 => {
                let s = text(m).replacen(
                    "Max-Forwards: 70",
                    self.pick(&[
                        "Max-Forwards: 0",
                        "Max-Forwards: -1",
                        "Max-Forwards: 999999999999",
                    ]),
                    1,
                );
                *m = s.into_bytes();
            }
            _ => {
                // A body longer or shorter than Content-Length says.
                if self.below(2) == 0 {
                    m.extend(std::iter::repeat_n(b'z', self.below(4000)));
                } else {
                    let keep = m.len().saturating_sub(self.below(200));
                    m.truncate(keep);
                }
            }
        }
    }

    /// The next datagram for `to`, as if sent from `from`.
    pub fn next(&mut self, to: SocketAddr, from: SocketAddr) -> Vec<u8> {
        let mut m = self.base(to, from).into_bytes();
        for _ in 0..(1 + self.below(3)) {
            self.mutate(&mut m);
        }
        m.truncate(65_000);
        m
    }
}
