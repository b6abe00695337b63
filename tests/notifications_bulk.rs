//! `POST /v1/notifications/bulk`: 10,000 recipients with bad rows among
//! them, sent as SMS to the npm `smpp` SMSC: every valid row is accepted
//! and reaches the SMSC exactly once, every bad row is reported by index
//! with its field, and the same key and body answer again without sending.

mod common;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::collections::HashSet;
use std::time::Duration;

use common::{expect_error, expect_json, spawn_app_with, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const ROWS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_sends_each_valid_row_once_and_reports_the_bad_ones() {
    let mut smsc = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", "0"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let t = app
        .post_ok(
            "/v1/templates",
            &json!({"name": "Alert", "code": "alert", "channel": "sms",
            "variables": [{"key": "name", "required": true}, {"key": "zone", "required": true}],
            "body_template": "{{name}}: storm warning for {{zone}}"}),
            StatusCode::CREATED,
        )
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", t["id"].as_str().unwrap()),
        &json!({}),
        StatusCode::OK,
    )
    .await;

    // Every 1,000th row has a bad number, every 1,000th + 1 lacks its name.
    let mut bad = Vec::new();
    let recipients: Vec<Value> = (0..ROWS)
        .map(|i| {
            let phone = format!("+1555{:07}", 4_000_000 + i * 10 + 1 + i % 9);
            if i % 1000 == 7 {
                bad.push((i, format!("recipients[{i}].phone")));
                json!({"phone": "12", "data": {"name": format!("n{i}")}})
            } else if i % 1000 == 8 {
                bad.push((i, "notification.data".to_string()));
                json!({"phone": phone})
            } else {
                json!({"phone": phone, "data": {"name": format!("n{i}")}})
            }
        })
        .collect();
    let body = json!({"channels": ["sms"], "template_id": "alert", "data": {"zone": "north"},
                      "recipients": recipients, "idempotency_key": "storm-1"});
    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=notification.status&after=0"),
        &app.key,
        None,
    )
    .await;
    let answer = expect_json(
        app.post("/v1/notifications/bulk", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let valid = ROWS - bad.len();
    assert_eq!(answer["accepted"], valid, "{}", answer["rejected"]);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), bad.len());
    for (r, (i, field)) in rejected.iter().zip(&bad) {
        assert_eq!(r["index"], *i, "{r}");
        assert_eq!(r["field"], field.as_str(), "{r}");
    }
    let bulk_id = answer["bulk_id"].as_str().unwrap().to_string();

    // Every valid row delivered (the SMSC's receipts), each SMS once.
    let mut delivered = HashSet::new();
    let done = tokio::time::timeout(Duration::from_secs(240), async {
        while delivered.len() < valid {
            let v = events
                .next(Duration::from_secs(240))
                .await
                .expect("stream open")
                .json();
            if v["data"]["status"] == "delivered" {
                delivered.insert(
                    v["data"]["notification_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    })
    .await;
    assert!(done.is_ok(), "{} of {valid} delivered", delivered.len());
    let stats = smsc.stats(Duration::from_secs(10)).await;
    assert_eq!(stats["accepted"], valid, "{stats}");
    assert_eq!(stats["unique_bodies"], valid, "{stats}");
    let counts = expect_json(
        app.get(&format!("/v1/notifications/bulk/{bulk_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(counts["by_status"]["delivered"], valid, "{counts}");
    let page = expect_json(
        app.get(&format!("/v1/notifications?bulk_id={bulk_id}&page_size=10"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 10);

    // The same key and body: the same answer, nothing more sent.
    let again = expect_json(
        app.post("/v1/notifications/bulk", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(again, answer);
    let mut other = body.clone();
    other["data"]["zone"] = json!("south");
    expect_error(
        app.post("/v1/notifications/bulk", &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "another",
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM notifications").await,
        valid as i64
    );
    assert_eq!(smsc.stats(Duration::from_secs(10)).await["accepted"], valid);
    app.stop().await;
    smsc.stop().await;
}

/// The marketing bulk's size: 5,000 here; `HERALD_PRIORITY_BULK=50000` for
/// the longer run in docs/BENCHMARKS.md.
fn priority_bulk() -> usize {
    std::env::var("HERALD_PRIORITY_BULK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_code_overtakes_a_marketing_bulk() {
    let size = priority_bulk();
    let mut smsc = Smsc::start(&[]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            // 5,000 marketing SMS take 10 s at this rate.
            ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", "500"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let recipients: Vec<Value> = (0..size)
        .map(|i| json!({"phone": format!("+1555{:07}", 5_000_000 + i * 10 + 1 + i % 9)}))
        .collect();
    let bulk = json!({"channels": ["sms"], "body": "Spring sale: 20% off", "priority": "marketing", "recipients": recipients});
    expect_json(
        app.post("/v1/notifications/bulk", &bulk).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Once the bulk is going out, a verification code. It may wait for the
    // marketing SMS already claimed and waiting for the rate limit (a tenth
    // of a second's worth: 50) and those through it at the SMSC (`in_flight`
    // 200), not for the thousands still queued.
    smsc.wait_kind("submit_sm", 200, Duration::from_secs(30))
        .await;
    let before = smsc.stats(Duration::from_secs(10)).await["submits"]
        .as_u64()
        .unwrap();
    let sent = std::time::Instant::now();
    app.post_ok(
        "/v1/sms",
        &json!({"to": "+15559990001", "body": "Your code is 4411", "priority": "emergency"}),
        StatusCode::ACCEPTED,
    )
    .await;
    let seen = smsc
        .wait_for("the code", 1, Duration::from_secs(30), |e| {
            e["type"] == "submit_sm" && e["destination_addr"] == "15559990001"
        })
        .await;
    let took = sent.elapsed();
    let ahead = seen[0]["n"].as_u64().unwrap() - before;
    assert!(
        ahead <= 251,
        "{ahead} marketing SMS went before the code (it took {took:?})"
    );
    eprintln!("the code reached the SMSC after {took:?}, {ahead} submits after it was sent");
    let submitted = smsc.stats(Duration::from_secs(10)).await["submits"]
        .as_u64()
        .unwrap();
    assert!(
        submitted < size as u64,
        "the bulk was already done ({submitted}): nothing was overtaken"
    );
    app.stop().await;
    smsc.stop().await;
}
