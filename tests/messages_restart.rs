//! kill -9 of a real herald process while it sends 10,000 SMS to an SMSC
//! that is not herald's code (tests/peers/smsc.js), then a restart on the
//! same database: nothing queued is lost, every message ends sent or
//! delivered, and the SMSC received each exactly once. A send whose
//! acknowledgement the crash kept from the database is settled by its
//! delivery receipt (which the SMSC sends again after the restart when it
//! was not answered) instead of being sent again; one the SMSC never got
//! has no receipt and is sent after `in_doubt_wait_ms`.

#[path = "common/process.rs"]
mod process;
#[path = "peers/smsc.rs"]
mod smsc;

use std::time::Duration;

use futures::StreamExt;
use process::HeraldProcess;
use serde_json::json;
use smsc::Smsc;

const MESSAGES: usize = 10_000;

fn start(dir: &std::path::Path, smpp_url: &str) -> HeraldProcess {
    let db = format!("sqlite://{}/herald.db", dir.display());
    HeraldProcess::start(
        dir,
        &[
            ("HERALD__DATABASE__URL", &db),
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", smpp_url),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", "0"),
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "off"),
            ("HERALD__MESSAGES__LEASE_MS", "2000"),
            ("HERALD__MESSAGES__IN_DOUBT_WAIT_MS", "8000"),
        ],
        std::env::var("HERALD_TEST_LOGS").is_ok(),
    )
}

async fn count(db: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_sending_sms_then_restart_loses_nothing() {
    let mut smsc = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let mut h = start(dir.path(), &url);

    // Post messages while the sender already sends them; kill herald once
    // the SMSC has taken a couple of thousand (posts after the kill fail).
    let base = h.base.clone();
    let key = h.key.clone();
    let posting = tokio::spawn(async move {
        futures::stream::iter(0..MESSAGES)
            .map(|i| {
                let c = c.clone();
                let (base, key) = (base.clone(), key.clone());
                async move {
                    // Numbers ending 1..9: the SMSC reports them delivered.
                    let to = format!("+1555{:07}", 2_000_000 + i * 10 + 1 + i % 9);
                    c.post(format!("{base}/v1/sms"))
                        .header("x-api-key", key)
                        .json(&json!({"to": to, "body": format!("message {i}")}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = smsc.stats(Duration::from_secs(10)).await;
        if s["accepted"].as_u64().unwrap_or(0) >= 2_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SMSC received too little: {s}"
        );
    }
    h.kill9();
    let answers = posting.await.unwrap();
    let accepted = answers.iter().filter(|s| **s == 202).count();
    // The kill may cut off the answers of posts already stored (up to the
    // 16 in flight), so fewer than the SMSC's count may have been answered.
    assert!(accepted >= 1_500, "{accepted} accepted");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/herald.db", dir.path().display()))
        .await
        .unwrap();
    let in_flight = count(
        &db,
        "SELECT COUNT(*) FROM messages WHERE status = 'sending'",
    )
    .await;
    let queued = count(&db, "SELECT COUNT(*) FROM messages WHERE status = 'queued'").await;
    assert!(queued + in_flight > 0, "the kill came after the last send");
    db.close().await;

    // Restart on the same database: the rest goes out.
    let _h = start(dir.path(), &url);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/herald.db", dir.path().display()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let open = count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE status IN ('queued', 'sending')",
        )
        .await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} messages still queued or sending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = count(&db, "SELECT COUNT(*) FROM messages").await;
    let ended_well = count(
        &db,
        "SELECT COUNT(*) FROM messages WHERE status IN ('sent', 'delivered')",
    )
    .await;
    let interrupted = count(
        &db,
        "SELECT COUNT(*) FROM message_attempts WHERE result = 'interrupted'",
    )
    .await;
    let settled = count(
        &db,
        "SELECT COUNT(*) FROM message_attempts WHERE result = 'accepted' AND text LIKE '%acknowledgement was lost%'",
    )
    .await;
    // A post whose answer the kill cut off may still have been stored.
    assert!(
        total >= accepted as i64,
        "{total} stored, {accepted} accepted"
    );
    assert_eq!(
        ended_well, total,
        "every stored message ends sent or delivered"
    );
    assert!(
        interrupted + settled <= in_flight,
        "only sends in flight at the kill are interrupted or settled: {interrupted} + {settled} > {in_flight}"
    );

    let s = smsc.stats(Duration::from_secs(10)).await;
    let unique = s["unique_bodies"].as_u64().unwrap();
    let taken = s["accepted"].as_u64().unwrap();
    eprintln!(
        "kill -9 with {in_flight} sends in flight: {settled} settled by their receipts, {interrupted} sent again; SMSC: {s}"
    );
    assert_eq!(
        unique, total as u64,
        "the SMSC received every stored message: {s}"
    );
    assert_eq!(
        taken, unique,
        "the SMSC received each message exactly once: {s}"
    );
    smsc.stop().await;
}
