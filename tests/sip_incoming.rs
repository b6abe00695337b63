//! herald's incoming-request loop and its robustness: requests nobody placed
//! are answered (OPTIONS → 200, unknown dialogs → 481, new INVITEs → 603), and
//! malformed datagrams never take the SIP stack down.

mod sipp;

use std::net::SocketAddr;
use std::time::Duration;

use herald::domain::Outcome;
use herald::sip::{CallEvent, HangupBy};
use sipp::herald::{media_config, start, tel, trunk};
use sipp::SippUas;
use tokio::net::UdpSocket;

const GUARD: Duration = Duration::from_secs(10);

fn request(
    method: &str,
    to_tag: Option<&str>,
    target: SocketAddr,
    local: SocketAddr,
    call_id: &str,
) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:herald@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\n\
         From: <sip:probe@{local}>;tag=probe1\r\n\
         To: <sip:herald@{target}>{tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends `msg` and returns the status code of the first final response for
/// its Call-ID (other datagrams, e.g. answers to earlier junk, are skipped).
/// Like any SIP request over UDP it is retransmitted (every 250 ms, as
/// Timer E would) in case a datagram was dropped.
async fn status_of(sock: &UdpSocket, to: SocketAddr, msg: &str) -> u16 {
    let call_id = msg
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .expect("a Call-ID")
        .to_string();
    let mut buf = vec![0u8; 65536];
    let mut retransmit = tokio::time::interval(Duration::from_millis(250));
    let wait = async {
        loop {
            let (n, _) = tokio::select! {
                _ = retransmit.tick() => {
                    sock.send_to(msg.as_bytes(), to).await.unwrap();
                    continue;
                }
                r = sock.recv_from(&mut buf) => r.unwrap(),
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(code) = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse::<u16>().ok())
            else {
                continue;
            };
            if code >= 200 && text.contains(&format!("Call-ID: {call_id}\r\n")) {
                return code;
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("a response in time")
}

#[tokio::test]
async fn stray_requests_are_answered() {
    let (cc, cancel) = start(trunk("sip:127.0.0.1:9", "", "", 10), media_config(30)).await;
    let target = cc.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    assert_eq!(
        status_of(
            &sock,
            target,
            &request("OPTIONS", None, target, local, "o1")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &sock,
            target,
            &request("BYE", Some("nope"), target, local, "b1")
        )
        .await,
        481
    );
    assert_eq!(
        status_of(
            &sock,
            target,
            &request("INFO", Some("nope"), target, local, "i1")
        )
        .await,
        481
    );
    assert_eq!(
        status_of(
            &sock,
            target,
            &request("OPTIONS", Some("x"), target, local, "o2")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(&sock, target, &request("INVITE", None, target, local, "v1")).await,
        603
    );
    assert_eq!(
        status_of(
            &sock,
            target,
            &request("MESSAGE", None, target, local, "m1")
        )
        .await,
        405
    );
    cancel.cancel();
    tokio::time::timeout(GUARD, cc.stopped())
        .await
        .expect("stops");
}

fn malformed(target: SocketAddr, local: SocketAddr) -> Vec<Vec<u8>> {
    let valid = request("INVITE", None, target, local, "malformed-1");
    let mut out: Vec<Vec<u8>> = Vec::new();
    // truncated at every interesting point
    for cut in [1, 7, 20, valid.len() / 2, valid.len() - 3] {
        out.push(valid.as_bytes()[..cut].to_vec());
    }
    // oversized: the largest UDP payload, a valid start then filler
    let mut big = valid
        .replace("Content-Length: 0", "Content-Length: 65000")
        .into_bytes();
    big.resize(65_000, b'A');
    out.push(big);
    out.push(vec![b'A'; 65_507]);
    // binary
    let mut x: u32 = 0x1234_5678;
    for len in [1usize, 16, 512, 1400, 9000] {
        out.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    out.push(vec![0u8; 1000]);
    out.push(vec![]);
    out.push(b"\r\n\r\n".to_vec());
    // header bomb: thousands of headers, and one enormous header
    let mut bomb = String::from("OPTIONS sip:herald@x SIP/2.0\r\n");
    for i in 0..5000 {
        bomb.push_str(&format!("X-H{i}: v\r\n"));
    }
    bomb.push_str("\r\n");
    out.push(bomb.into_bytes());
    out.push(
        valid
            .replace(
                "Max-Forwards: 70",
                &format!("Subject: {}", "s".repeat(60_000)),
            )
            .into_bytes(),
    );
    // half-valid: good start line, broken headers
    for (from, to) in [
        ("Call-ID: malformed-1\r\n", ""),
        ("CSeq: 1 INVITE", "CSeq: abc INVITE"),
        ("CSeq: 1 INVITE", "CSeq: 99999999999999999999 INVITE"),
        ("Content-Length: 0", "Content-Length: -1"),
        ("Content-Length: 0", "Content-Length: 99999999999"),
        (";branch=z9hG4bK-malformed-1", ""),
        ("Via: SIP/2.0/UDP", "Via: SIP/9.9/XYZ"),
        ("From: <sip:probe@", "From: <<<::"),
        ("To: <sip:herald@", "To: \"unterminated <sip:"),
        ("INVITE sip:", "INVITE \u{0}\u{1}:"),
        ("SIP/2.0\r\n", "SIP/2.0\n"),
        ("\r\n", "\n"),
    ] {
        out.push(valid.replacen(from, to, 1).into_bytes());
    }
    out.push(b"SIP/2.0 999999 Nope\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n".to_vec());
    out.push(b"SIP/2.0 200\r\nCSeq: 1 INVITE\r\n\r\n".to_vec());
    out.push(
        "INVITE sip:ü@ü SIP/2.0\r\nVia: ü\r\n\r\n"
            .as_bytes()
            .to_vec(),
    );
    out
}

#[tokio::test]
async fn malformed_datagrams_do_not_stop_a_normal_call() {
    let sipp = SippUas::start("uas_busy_486.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    let target = cc.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let junk = malformed(target, local);
    for _round in 0..3 {
        for d in &junk {
            // Oversized sends may be refused locally; that is fine.
            let _ = sock.send_to(d, target).await;
        }
    }
    // The stack still answers, in order, after all of that.
    let ok = status_of(
        &sock,
        target,
        &request("OPTIONS", None, target, local, "after"),
    )
    .await;
    assert_eq!(ok, 200);

    let mut call = cc
        .originate(tel(
            "a-after-junk",
            Duration::from_secs(10),
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(GUARD, async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(e)) => return e,
                Some(_) => {}
                None => panic!("no Ended"),
            }
        }
    })
    .await
    .expect("the call ends in time");
    sipp.finish().await.assert_success();
    assert_eq!((ended.outcome, ended.sip_code), (Outcome::Busy, Some(486)));
    assert_eq!(ended.hangup_by, HangupBy::Callee);
    cancel.cancel();
}

#[tokio::test]
async fn a_dead_destination_fails_without_hurting_the_stack() {
    let sipp = SippUas::start("uas_busy_486.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    // Nothing listens there: the kernel answers ICMP port unreachable.
    let dead = sipp::free_udp_port();
    let mut call = cc
        .originate(herald::sip::OriginateRequest {
            destination: herald::sip::DialDestination::Sip {
                uri: format!("sip:nobody@127.0.0.1:{dead}"),
            },
            ..tel("a-dead", Duration::from_secs(30), Duration::from_secs(5))
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(e)) => return e,
                Some(_) => {}
                None => panic!("no Ended"),
            }
        }
    })
    .await
    .expect("the dead call ends within the transaction timeout");
    // Timer B ends it: no response at all, so no SIP code.
    assert_eq!(ended.outcome, Outcome::TemporaryFailure, "{ended:?}");
    assert_eq!(ended.sip_code, None, "{ended:?}");
    assert_eq!(ended.hangup_by, HangupBy::Error, "{ended:?}");
    assert!(ended.ringing_at.is_none() && ended.answered_at.is_none());

    // The SIP socket still works.
    let mut call = cc
        .originate(tel(
            "a-alive",
            Duration::from_secs(10),
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(GUARD, async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(e)) => return e,
                Some(_) => {}
                None => panic!("no Ended"),
            }
        }
    })
    .await
    .expect("the second call ends in time");
    sipp.finish().await.assert_success();
    assert_eq!((ended.outcome, ended.sip_code), (Outcome::Busy, Some(486)));
    cancel.cancel();
}
