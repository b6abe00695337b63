//! kill -9 of a real herald process while it accepts and sends
//! notifications (SMS to the npm `smpp` SMSC), then a restart on the same
//! database and a replay of every request with its idempotency key: each
//! replay answers the first notification, and the SMSC received each SMS
//! exactly once.

#[path = "common/process.rs"]
mod process;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use process::HeraldProcess;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const NOTIFICATIONS: usize = 300;

fn start(dir: &std::path::Path, smpp_url: &str) -> HeraldProcess {
    let db = format!("sqlite://{}/herald.db", dir.display());
    HeraldProcess::start(
        dir,
        &[
            ("HERALD__DATABASE__URL", &db),
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", smpp_url),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", "50"),
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "off"),
            ("HERALD__MESSAGES__LEASE_MS", "2000"),
            ("HERALD__MESSAGES__IN_DOUBT_WAIT_MS", "4000"),
        ],
        std::env::var("HERALD_TEST_LOGS").is_ok(),
    )
}

fn body(i: usize) -> Value {
    // Numbers ending 1..9: the SMSC reports them delivered.
    json!({"recipient": {"phone": format!("+1555{:07}", 3_000_000 + i * 10 + 1 + i % 9)},
           "notification": {"channels": ["sms"], "body": format!("notice {i}")},
           "idempotency_key": format!("notice-{i}")})
}

/// Posts every notification (16 at once); the id answered for each, where
/// an answer came.
async fn post_all(base: String, key: String) -> HashMap<usize, String> {
    let c = reqwest::Client::new();
    futures::stream::iter(0..NOTIFICATIONS)
        .map(|i| {
            let (c, base, key) = (c.clone(), base.clone(), key.clone());
            async move {
                let r = c
                    .post(format!("{base}/v1/notifications/send"))
                    .header("x-api-key", key)
                    .json(&body(i))
                    .send()
                    .await
                    .ok()?;
                if r.status().as_u16() != 202 {
                    return None;
                }
                let v: Value = r.json().await.ok()?;
                Some((i, v["notification_id"].as_str()?.to_string()))
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_kill_9_and_restart_sends_nothing_more() {
    let mut smsc = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path(), &url);

    // Kill herald once the SMSC has taken a few dozen (SMS go out at 50/s,
    // so most are still queued then).
    let posting = tokio::spawn(post_all(h.base.clone(), h.key.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = smsc.stats(Duration::from_secs(10)).await;
        if s["accepted"].as_u64().unwrap_or(0) >= 30 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SMSC received too little: {s}"
        );
    }
    h.kill9();
    let first = posting.await.unwrap();
    // The kill may cut off the answers of posts already stored.
    assert!(
        !first.is_empty() && first.len() < NOTIFICATIONS,
        "{} answered before the kill",
        first.len()
    );

    // Restart and replay everything: the answers name the first notifications.
    let h = start(dir.path(), &url);
    let c = reqwest::Client::new();
    let mut events = SseClient::connect(
        &c,
        &format!("{}/v1/events?types=notification.status&after=0", h.base),
        &h.key,
        None,
    )
    .await;
    let replay = post_all(h.base.clone(), h.key.clone()).await;
    assert_eq!(replay.len(), NOTIFICATIONS, "every replay is accepted");
    for (i, id) in &first {
        assert_eq!(replay.get(i), Some(id), "notification {i}");
    }

    // Every notification ends delivered; the SMSC got each SMS once.
    let ids: HashSet<&String> = replay.values().collect();
    let mut delivered = HashSet::new();
    let done = tokio::time::timeout(Duration::from_secs(120), async {
        while delivered.len() < ids.len() {
            let v = events
                .next(Duration::from_secs(120))
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
    assert!(
        done.is_ok(),
        "{} of {} delivered",
        delivered.len(),
        ids.len()
    );
    assert!(ids.iter().all(|id| delivered.contains(*id)));
    let stats = smsc.stats(Duration::from_secs(10)).await;
    assert_eq!(stats["unique_bodies"], NOTIFICATIONS, "{stats}");
    assert_eq!(stats["accepted"], NOTIFICATIONS, "each SMS once: {stats}");
    let n = h
        .get(&c, "/v1/notifications?status=delivered&page_size=1000")
        .await;
    assert_eq!(n["items"].as_array().map(Vec::len), Some(NOTIFICATIONS));
    smsc.stop().await;
}
