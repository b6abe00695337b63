//! Signed webhooks against a real HTTP receiver (axum on port 0): the
//! signature verifies; deliveries fail (500) for a while, herald is killed
//! (kill -9) and restarted on the same database, the receiver recovers, and
//! every logged event arrives at least once. A webhook failing past
//! `disable_after_s` is disabled. The JSON logs of the run never contain a
//! secret (API key, trunk password, webhook secret).

mod common;
#[path = "common/process.rs"]
mod process;
mod sipp;
#[path = "common/sse.rs"]
mod sse;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use common::{expect_error, expect_json, Db};
use hmac::{Hmac, Mac};
use process::HeraldProcess;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use sipp::{SippUas, UasOptions};
use sse::SseClient;

const SECRET: &str = "whsec-0123456789-topsecret";
const TRUNK_PASSWORD: &str = "s3cret";

/// What the receiver saw.
struct Receiver {
    fail: AtomicBool,
    /// Event ids (header) answered 200, with their bodies.
    ok: Mutex<Vec<(String, Value)>>,
    failed: AtomicUsize,
    /// Deliveries whose signature or id did not check out.
    bad: Mutex<Vec<String>>,
    hits: tokio::sync::watch::Sender<u64>,
}

impl Receiver {
    fn new(fail: bool) -> Arc<Receiver> {
        Arc::new(Receiver {
            fail: AtomicBool::new(fail),
            ok: Mutex::new(Vec::new()),
            failed: AtomicUsize::new(0),
            bad: Mutex::new(Vec::new()),
            hits: tokio::sync::watch::channel(0).0,
        })
    }

    fn ok_ids(&self) -> BTreeSet<String> {
        self.ok
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Waits (bounded) until `cond` holds, re-checking after every delivery.
    async fn until(&self, within: Duration, what: &str, cond: impl Fn(&Receiver) -> bool) {
        let mut rx = self.hits.subscribe();
        let r = tokio::time::timeout(within, async {
            loop {
                if cond(self) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "receiver: {what} did not happen within {within:?}"
        );
    }
}

/// Recomputes `v1=hex(HMAC-SHA256(secret, timestamp + "." + body))`.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> AxStatus {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sig) = (
        h("herald-webhook-id"),
        h("herald-webhook-timestamp"),
        h("herald-signature"),
    );
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let now = chrono::Utc::now().timestamp();
    let fresh = ts.parse::<i64>().is_ok_and(|t| (now - t).abs() < 300);
    if sig != expected_signature(&ts, &body)
        || v["id"] != id.as_str()
        || !fresh
        || h("content-type") != "application/json"
    {
        r.bad
            .lock()
            .unwrap()
            .push(format!("id={id} ts={ts} sig={sig} body={v}"));
    }
    let status = if r.fail.load(Ordering::SeqCst) {
        r.failed.fetch_add(1, Ordering::SeqCst);
        AxStatus::INTERNAL_SERVER_ERROR
    } else {
        r.ok.lock().unwrap().push((id, v));
        AxStatus::OK
    };
    r.hits.send_modify(|n| *n += 1);
    status
}

/// Serves the receiver on 127.0.0.1:0; returns its URL.
async fn serve(r: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn no_secret_in(v: &Value) {
    let text = v.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("\"secret\""),
        "a secret in {text}"
    );
}

fn start(dir: &std::path::Path, proxy: &str, log: &std::path::Path) -> HeraldProcess {
    let db = format!("sqlite://{}/herald.db", dir.display());
    HeraldProcess::start_logging(
        dir,
        &[
            ("HERALD__DATABASE__URL", &db),
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy),
            ("HERALD__TRUNKS__DEFAULT__USERNAME", "herald-user"),
            ("HERALD__TRUNKS__DEFAULT__PASSWORD", TRUNK_PASSWORD),
            ("HERALD__WEBHOOKS__BACKOFF_BASE_MS", "20"),
            ("HERALD__WEBHOOKS__BACKOFF_CAP_MS", "100"),
            ("HERALD__LOG__FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ],
        log,
    )
}

#[tokio::test]
async fn every_event_arrives_signed_through_failures_and_a_kill_9() {
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_auth_401_md5.xml",
        calls: None,
        extra: &[],
        timeout_s: 90,
        trace: false,
    })
    .await;
    let proxy = format!("sip:{}", uas.addr);
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let c = reqwest::Client::new();
    let rx = Receiver::new(true);
    let url = serve(rx.clone()).await;

    let mut h = start(dir.path(), &proxy, &log_a);
    let w = h
        .post(
            &c,
            "/v1/webhooks",
            json!({"url": url, "secret": SECRET, "event_types": ["*"]}),
        )
        .await;
    no_secret_in(&w);
    assert_eq!(w["status"], "enabled");
    let wid = w["id"].as_str().unwrap().to_string();
    no_secret_in(&h.get(&c, "/v1/webhooks").await);

    let od = h.post(&c, "/v1/outdials", json!({"name": "hooks"})).await;
    let od = od["id"].as_str().unwrap().to_string();
    let targets: Vec<Value> = (0..10).map(|i| json!({"destination": {"type": "tel", "target": format!("+1555{:07}", 5_000_000 + i)}})).collect();
    h.post(
        &c,
        &format!("/v1/outdials/{od}/targets"),
        json!({"targets": targets}),
    )
    .await;
    let op = h
        .post(
            &c,
            "/v1/outplans",
            json!({"name": "p", "try_count_max": 1, "dial_timeout_s": 10}),
        )
        .await;
    let ag = h
        .post(
            &c,
            "/v1/agents",
            json!({"name": "a", "kind": "media_stream", "url": "ws://127.0.0.1:9/s"}),
        )
        .await;
    let camp = h
        .post(
            &c,
            "/v1/campaigns",
            json!({"name": "hooks", "outdial_id": od, "outplan_id": op["id"],
        "agent_id": ag["id"], "calls_per_second": 50, "max_concurrent_calls": 10}),
        )
        .await;
    let camp = camp["id"].as_str().unwrap().to_string();

    // Follow the campaign on its event stream until it finishes.
    let mut stream = SseClient::connect(
        &c,
        &format!("{}/v1/campaigns/{camp}/events", h.base),
        &h.key,
        None,
    )
    .await;
    h.post(&c, &format!("/v1/campaigns/{camp}/start"), json!({}))
        .await;
    loop {
        let m = stream
            .next(Duration::from_secs(60))
            .await
            .expect("stream open");
        if m.event.as_deref() == Some("campaign.status") && m.json()["data"]["to"] == "finished" {
            break;
        }
    }
    drop(stream);
    rx.until(Duration::from_secs(20), "three failed deliveries", |r| {
        r.failed.load(Ordering::SeqCst) >= 3
    })
    .await;
    let failing = h.get(&c, &format!("/v1/webhooks/{wid}")).await;
    assert_eq!(failing["status"], "enabled");
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("500"),
        "{failing}"
    );
    assert!(
        failing["consecutive_failures"].as_i64() >= Some(1),
        "{failing}"
    );

    // kill -9 while deliveries are failing; the receiver recovers; a new process takes over.
    h.kill9();
    rx.fail.store(false, Ordering::SeqCst);
    let db_url = format!("sqlite://{}/herald.db", dir.path().display());
    let store = herald::store::Store::connect(&db_url, 1).await.unwrap();
    let logged: BTreeSet<String> = store
        .events_after(&camp, 0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id())
        .collect();
    let n = store.campaign_event_seq(&camp).await.unwrap().unwrap();
    assert_eq!(logged.len() as i64, n);
    assert!(n >= 60, "10 answered calls make 6 events each: {n}");
    let h = start(dir.path(), &proxy, &log_b);
    rx.until(
        Duration::from_secs(30),
        "every logged event delivered",
        |r| r.ok_ids().is_superset(&logged),
    )
    .await;
    assert_eq!(rx.ok_ids(), logged, "nothing but logged events");
    let bad = rx.bad.lock().unwrap().clone();
    assert!(bad.is_empty(), "deliveries that did not verify: {bad:?}");
    // In order per campaign: the first delivery of each id comes in sequence order.
    let mut seen = BTreeSet::new();
    let order: Vec<i64> = rx
        .ok
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(_, v)| v["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (1..=n).collect::<Vec<_>>());
    let body = rx.ok.lock().unwrap()[0].1.clone();
    assert!(
        body["type"].is_string() && body["at"].is_string() && body["data"].is_object(),
        "{body}"
    );

    // The success is written right after the last delivery: poll the webhook (bounded) until it shows.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tick.tick().await;
            let w = h.get(&c, &format!("/v1/webhooks/{wid}")).await;
            if w["delivered_count"].as_i64() >= Some(n) {
                return w;
            }
        }
    })
    .await
    .expect("the webhook shows its deliveries");
    no_secret_in(&ok);
    assert_eq!(ok["status"], "enabled");
    assert!(ok["last_success_at"].is_string(), "{ok}");
    assert_eq!(ok["consecutive_failures"], 0);
    assert!(ok["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("500"));
    drop(h);
    store.close().await;
    uas.quit();
    let _ = uas.finish().await;

    // The JSON logs: every line is JSON, the call job's spans carry the ids,
    // and no secret is anywhere.
    let mut with_ids = 0;
    for path in [&log_a, &log_b] {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.is_empty());
        for secret in [SECRET, TRUNK_PASSWORD, "process-test-key"] {
            assert!(
                !text.contains(secret),
                "{} contains a secret ({secret})",
                path.display()
            );
        }
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?} in\n{text}"));
            if v["span"]["campaign"] == camp.as_str()
                && v["span"]["call"].is_string()
                && v["span"]["target"].is_string()
            {
                with_ids += 1;
            }
        }
    }
    assert!(with_ids > 0, "no log line inside an attempt's span");
}

#[tokio::test]
async fn a_webhook_failing_past_the_limit_is_disabled_with_its_reason() {
    let Some(app) = common::spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__WEBHOOKS__BACKOFF_BASE_MS", "50"),
            ("HERALD__WEBHOOKS__BACKOFF_CAP_MS", "100"),
            ("HERALD__WEBHOOKS__DISABLE_AFTER_S", "1"),
        ],
        None,
    )
    .await
    else {
        return;
    };
    let rx = Receiver::new(true);
    let url = serve(rx.clone()).await;

    // Bad input names the field.
    let r = app.post("/v1/webhooks", &json!({"url": url})).await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "secret",
    )
    .await;
    let r = app
        .post("/v1/webhooks", &json!({"url": "ftp://x", "secret": SECRET}))
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "url",
    )
    .await;
    let r = app
        .post(
            "/v1/webhooks",
            &json!({"url": url, "secret": SECRET, "event_types": ["attempt.rang"]}),
        )
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "event_types[0]",
    )
    .await;

    let w = app
        .post_ok(
            "/v1/webhooks",
            &json!({"url": url, "secret": SECRET, "event_types": ["campaign.status"]}),
            StatusCode::CREATED,
        )
        .await;
    no_secret_in(&w);
    let wid = w["id"].as_str().unwrap().to_string();
    let (c, _) = app
        .campaign("phone\n".to_string(), json!({"name": "p"}), json!({}))
        .await;
    app.post_ok(
        &format!("/v1/campaigns/{c}/start"),
        &json!({}),
        StatusCode::OK,
    )
    .await;

    let get = |id: String| {
        let app = &app;
        async move { expect_json(app.get(&format!("/v1/webhooks/{id}")).await, StatusCode::OK).await }
    };
    // Herald records a failure just after the receiver answers: look again
    // after each delivery and on a short tick (the last failure brings no
    // further delivery).
    let mut hits = rx.hits.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let disabled = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let w = get(wid.clone()).await;
            if w["status"] == "disabled" {
                return w;
            }
            tokio::select! {
                r = hits.changed() => r.unwrap(),
                _ = tick.tick() => {}
            }
        }
    })
    .await
    .expect("the webhook is disabled within 15 s");
    no_secret_in(&disabled);
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("disable_after_s"),
        "{disabled}"
    );
    assert_eq!(disabled["last_error"], "HTTP 500 Internal Server Error");
    assert!(disabled["last_success_at"].is_null());
    assert!(disabled["disabled_at"].is_string());
    assert!(
        rx.failed.load(Ordering::SeqCst) >= 2,
        "retried before giving up"
    );
    assert!(rx.bad.lock().unwrap().is_empty());
    // Deleted: gone.
    let r = app.delete(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_json(
        app.get(&format!("/v1/webhooks/{wid}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}
