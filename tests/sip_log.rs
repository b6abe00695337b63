//! What herald's log holds about SIP, from a real `herald serve` logging at
//! `debug` (RUST_LOG=debug) in JSON and in text: a call through a trunk that
//! challenges with a digest leaves no `Authorization` value in the log, and
//! 30,000 malformed datagrams on the SIP port are counted in /metrics while
//! growing the log by less than 1 MB.

#[path = "common/process.rs"]
mod process;
mod sipp;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use process::HeraldProcess;
use serde_json::json;
use sipp::SippUas;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);
const MALFORMED: u64 = 30_000;
/// Datagrams sent before waiting for herald to have counted them (keeps the
/// socket's receive buffer from overflowing, which would lose some).
const BURST: u64 = 200;

fn start(dir: &Path, proxy: &str, sip_port: u16, format: &str, log: &Path) -> HeraldProcess {
    let db = format!("sqlite://{}/herald.db", dir.display());
    let sip = format!("127.0.0.1:{sip_port}");
    HeraldProcess::start_logging(
        dir,
        &[
            ("HERALD__DATABASE__URL", &db),
            ("HERALD__SIP__LISTEN", &sip),
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy),
            ("HERALD__TRUNKS__DEFAULT__USERNAME", "herald-user"),
            ("HERALD__TRUNKS__DEFAULT__PASSWORD", "s3cret"),
            ("HERALD__LOG__FORMAT", format),
            ("RUST_LOG", "debug"),
        ],
        log,
    )
}

async fn malformed_count(h: &HeraldProcess, c: &reqwest::Client) -> u64 {
    let text = c
        .get(format!("{}/metrics", h.base))
        .header("x-api-key", &h.key)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("herald_sip_malformed_datagrams_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no malformed datagram counter in {text}"))
}

/// Asserts the log shows no credential: no digest response, no
/// `Authorization` header value.
fn assert_no_credentials(log: &str) {
    for needle in ["response=", "Digest username", "Authorization: Digest"] {
        assert!(
            !log.contains(needle),
            "the log holds {needle:?}: {}",
            log.lines().find(|l| l.contains(needle)).unwrap_or_default()
        );
    }
}

/// One malformed datagram of about 300 bytes; some look like a SIP message
/// with credentials, cut before its request line is complete.
fn garbage(i: u64) -> Vec<u8> {
    match i % 3 {
        0 => format!(
            "Authorization: Digest username=\"acct-1\", realm=\"x\", nonce=\"{i}\", response=\"c600{i:028x}\"\r\n{}",
            "x".repeat(150)
        )
        .into_bytes(),
        1 => (0..300u64).map(|b| ((b * 7 + i) % 251) as u8).collect(),
        _ => format!("INVITE {}\r\n\r\n", "?".repeat(280)).into_bytes(),
    }
}

async fn digest_and_garbage_stay_out_of_the_log(format: &str) {
    let uas = SippUas::start("uas_auth_401_md5.xml", 1, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("herald.log");
    let sip_port = sipp::free_udp_port();
    let h = start(
        dir.path(),
        &format!("sip:{}", uas.addr),
        sip_port,
        format,
        &log,
    );
    let c = reqwest::Client::new();

    // One call through the challenging trunk.
    let call = h
        .post(
            &c,
            "/v1/calls",
            json!({"to": "+15557770001", "max_duration": 1}),
        )
        .await;
    let id = call["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let done = loop {
        let v = h.get(&c, &format!("/v1/calls/{id}")).await;
        if matches!(v["status"].as_str(), Some("completed" | "failed")) {
            break v;
        }
        assert!(t0.elapsed() < DEADLINE, "the call never ended: {v}");
        tokio::task::yield_now().await;
    };
    assert_eq!(done["outcome"], "answered", "{done}");
    // SIPp checked the digest it was sent (verifyauth) before answering.
    uas.finish().await.assert_success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("answering the digest challenge"),
        "herald's debug lines are missing from the log:\n{text}"
    );
    assert_no_credentials(&text);
    let before = std::fs::metadata(&log).unwrap().len();

    // 30,000 malformed datagrams, from two ports of one address.
    let herald_sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent = 0;
    while sent < MALFORMED {
        for _ in 0..BURST.min(MALFORMED - sent) {
            let from = if sent % 2 == 0 { &a } else { &b };
            from.send_to(&garbage(sent), herald_sip).await.unwrap();
            sent += 1;
        }
        let t0 = Instant::now();
        while malformed_count(&h, &c).await < sent {
            assert!(
                t0.elapsed() < DEADLINE,
                "herald did not count the datagrams"
            );
        }
    }
    assert_eq!(malformed_count(&h, &c).await, MALFORMED);
    let text = std::fs::read_to_string(&log).unwrap();
    let grown = text.len() as u64 - before;
    assert!(grown < 1 << 20, "the log grew by {grown} bytes");
    let lines: Vec<&str> = text[before as usize..]
        .lines()
        .filter(|l| l.contains("malformed SIP datagram"))
        .collect();
    // One line per source address within the minute: both sockets are
    // 127.0.0.1, whatever their ports.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines.iter().all(|l| l.len() < 1024), "{lines:#?}");
    assert_no_credentials(&text);
}

#[tokio::test]
async fn json_logs_at_debug_hold_no_digest_and_little_garbage() {
    digest_and_garbage_stay_out_of_the_log("json").await;
}

#[tokio::test]
async fn text_logs_at_debug_hold_no_digest_and_little_garbage() {
    digest_and_garbage_stay_out_of_the_log("text").await;
}
