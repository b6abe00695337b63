//! The API server's limits against slow clients, over raw TCP: incomplete
//! headers and idle connections are dropped after the header read timeout,
//! a stalled request body after the body read timeout (a CSV import then
//! reports what it stored), `/healthz` answers quickly meanwhile, and
//! connections beyond the cap wait for a free slot.

mod common;

use std::time::Duration;

use common::{id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long the test waits for anything the server should do on its own.
const DEADLINE: Duration = Duration::from_secs(15);

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or resets it); returns
/// what was received. Panics if the server keeps it open past [`DEADLINE`].
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .expect("the server keeps a slow connection open");
    got
}

/// GET /healthz on a new connection; returns the status and how long it took.
async fn healthz(app: &TestApp) -> (StatusCode, Duration) {
    let t0 = Instant::now();
    let r = app
        .client
        .get(app.url("/healthz"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("healthz");
    (r.status(), t0.elapsed())
}

async fn slow_clients_are_dropped_while_healthz_stays_fast(db: Db) {
    let Some(app) = common::spawn_app_with(
        db,
        &[
            ("HERALD__API__HEADER_READ_TIMEOUT_MS", "400"),
            ("HERALD__API__BODY_READ_TIMEOUT_MS", "400"),
            ("HERALD__API__MAX_CONNECTIONS", "256"),
        ],
        None,
    )
    .await
    else {
        return;
    };
    let od = id_of(
        &app.post_ok(
            "/v1/outdials",
            &json!({"name": "slow"}),
            StatusCode::CREATED,
        )
        .await,
    );
    let addr = addr(&app);
    let opened = Instant::now();
    let mut slow = Vec::new();
    // 30 that never send a byte, 30 that stop inside their headers.
    for i in 0..60 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(s);
    }
    // 10 CSV uploads that stall after three lines of a promised 100 kB.
    let mut uploads = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/outdials/{od}/targets HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\n\
             content-type: text/csv\r\ncontent-length: 100000\r\n\r\n",
            app.key
        );
        s.write_all(head.as_bytes()).await.unwrap();
        uploads.push(s);
    }
    for (i, s) in uploads.iter_mut().enumerate() {
        let rows = format!("phone\n+1555123{i:02}01\n+1555123{i:02}02\n");
        s.write_all(rows.as_bytes()).await.unwrap();
    }
    // Meanwhile /healthz answers at once, again and again.
    for _ in 0..5 {
        let (status, took) = healthz(&app).await;
        assert_eq!(status, StatusCode::OK);
        assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    }
    // Every slow connection is closed by the server, not before its timeout.
    for s in &mut slow {
        let got = read_until_closed(s).await;
        assert!(
            got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(opened.elapsed() >= Duration::from_millis(400));
    // The stalled uploads are answered: cut short, with what was stored.
    for s in &mut uploads {
        let got = String::from_utf8(read_until_closed(s).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        let body = got.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cut short"),
            "{v}"
        );
        assert_eq!(v["error"]["details"]["created"], 2, "{v}");
        assert_eq!(v["error"]["details"]["lines_read"], 3, "{v}");
    }
    let stored = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}'"
        ))
        .await;
    assert_eq!(stored, 20);
    let (status, _) = healthz(&app).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
on_both_backends!(slow, slow_clients_are_dropped_while_healthz_stays_fast);

async fn connections_beyond_the_cap_wait_for_a_free_slot(db: Db) {
    let Some(app) = common::spawn_app_with(
        db,
        &[
            ("HERALD__API__HEADER_READ_TIMEOUT_MS", "60000"),
            ("HERALD__API__MAX_CONNECTIONS", "3"),
        ],
        None,
    )
    .await
    else {
        return;
    };
    let addr = addr(&app);
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // All three slots are held: a fourth client is not served...
    let mut fourth = TcpStream::connect(&addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(300), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    // ...until one of them leaves.
    drop(idle.pop());
    let got = read_until_closed(&mut fourth).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    app.stop().await;
}
on_both_backends!(cap, connections_beyond_the_cap_wait_for_a_free_slot);
