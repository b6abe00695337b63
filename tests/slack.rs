//! Slack through a Web-API-shaped server run by the test (Slack cannot run
//! offline): `chat.postMessage` with the bot token (`ok: false` fails the
//! message with Slack's error, a 429 is retried after its `Retry-After`),
//! and an incoming webhook. Both through notifications, a fallback chain
//! moving on to e-mail when Slack refuses.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{expect_json, id_of, spawn_app_with, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "xoxb-test-token";

#[derive(Clone, Default)]
struct SlackApi {
    posts: Arc<Mutex<Vec<Value>>>,
    busy_once: Arc<Mutex<bool>>,
}

async fn post_message(
    State(s): State<SlackApi>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    s.posts.lock().unwrap().push(body.clone());
    match body["channel"].as_str() {
        Some("U_GONE") => Json(json!({"ok": false, "error": "channel_not_found"})).into_response(),
        Some("U_BUSY") if !std::mem::replace(&mut *s.busy_once.lock().unwrap(), true) => {
            (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response()
        }
        _ => Json(json!({"ok": true, "channel": body["channel"], "ts": format!("17000000{:02}.000100", s.posts.lock().unwrap().len())}))
            .into_response(),
    }
}

async fn incoming(State(s): State<SlackApi>, Json(body): Json<Value>) -> &'static str {
    s.posts.lock().unwrap().push(body);
    "ok"
}

async fn start_slack() -> (SlackApi, String) {
    let api = SlackApi::default();
    let app = Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route("/services/T1/B1/secretpart", post(incoming))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, base)
}

async fn deliveries(app: &TestApp) -> SseClient {
    SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=notification.delivery"),
        &app.key,
        None,
    )
    .await
}

#[tokio::test]
async fn the_bot_posts_fails_with_slacks_error_and_retries_after_429() {
    let (api, base) = start_slack().await;
    let url = format!("{base}/api");
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__SLACK__BASE_URL", url.as_str()),
            ("HERALD__CHANNELS__SLACK__BOT_TOKEN", TOKEN),
            ("HERALD__CHANNELS__SLACK__MAX_PER_SECOND", "0"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let mut events = deliveries(&app).await;
    let t = app
        .post_ok("/v1/templates", &json!({"name": "Page", "code": "page", "channel": "slack",
            "variables": [{"key": "site", "required": true}], "body_template": "Site {{site}} is down"}), StatusCode::CREATED)
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", id_of(&t)),
        &json!({}),
        StatusCode::OK,
    )
    .await;

    let send = |to: &str| {
        json!({"recipient": {"slack_user_id": to, "email": "oncall@example.com"},
        "notification": {"channels": ["slack"], "template_id": "page", "data": {"site": "east-1"}}})
    };
    let ok = app
        .post_ok("/v1/notifications/send", &send("U1"), StatusCode::ACCEPTED)
        .await;
    events
        .wait_delivery(&id_of(&ok), "slack", "sent", WAIT)
        .await;
    let n = expect_json(
        app.get(&format!("/v1/notifications/{}", id_of(&ok))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(n["status"], "sent", "{n}");
    assert_eq!(
        api.posts.lock().unwrap()[0],
        json!({"channel": "U1", "text": "Site east-1 is down"})
    );

    let gone = app
        .post_ok(
            "/v1/notifications/send",
            &send("U_GONE"),
            StatusCode::ACCEPTED,
        )
        .await;
    events
        .wait_delivery(&id_of(&gone), "slack", "failed", WAIT)
        .await;
    let n = expect_json(
        app.get(&format!("/v1/notifications/{}", id_of(&gone)))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(n["status"], "failed", "{n}");

    let busy = app
        .post_ok(
            "/v1/notifications/send",
            &send("U_BUSY"),
            StatusCode::ACCEPTED,
        )
        .await;
    events
        .wait_delivery(&id_of(&busy), "slack", "sent", WAIT)
        .await;
    let n = expect_json(
        app.get(&format!("/v1/notifications/{}", id_of(&busy)))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(n["deliveries"][0]["attempts"], 2, "{n}");
    let to_busy = api
        .posts
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p["channel"] == "U_BUSY")
        .count();
    assert_eq!(to_busy, 2);

    // A chain: Slack refuses, the e-mail goes (the file outbox here).
    let mut chain = send("U_GONE");
    chain["notification"] = json!({"channels": ["slack", "email"], "subject": "Site down", "body": "Site east-1 is down"});
    chain["strategy"] = json!("fallback");
    let c = app
        .post_ok("/v1/notifications/send", &chain, StatusCode::ACCEPTED)
        .await;
    events
        .wait_delivery(&id_of(&c), "email", "sent", WAIT)
        .await;
    let n = expect_json(
        app.get(&format!("/v1/notifications/{}", id_of(&c))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(n["deliveries"][0]["status"], "failed", "{n}");
    assert_eq!(n["status"], "sent", "{n}");

    // Slack keeps refusing: the channel turns unhealthy, once.
    let mut health = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=channel.health"),
        &app.key,
        None,
    )
    .await;
    for _ in 0..10 {
        app.post_ok(
            "/v1/notifications/send",
            &send("U_GONE"),
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let e = health
        .next(WAIT)
        .await
        .expect("a channel.health event")
        .json();
    assert_eq!(e["data"]["channel"], "slack", "{e}");
    assert_eq!(e["data"]["healthy"], false, "{e}");
    let caps = expect_json(app.get("/v1/channels/capabilities").await, StatusCode::OK).await;
    let slack = caps["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "slack")
        .cloned()
        .unwrap();
    assert_eq!(slack["health"]["healthy"], false, "{slack}");
    assert!(
        slack["health"]["failures_5m"].as_u64().unwrap() >= 5,
        "{slack}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_incoming_webhook_takes_the_text() {
    let (api, base) = start_slack().await;
    let hook = format!("{base}/services/T1/B1/secretpart");
    let app = spawn_app_with(
        Db::Sqlite,
        &[("HERALD__CHANNELS__SLACK__WEBHOOK_URL", hook.as_str())],
        None,
    )
    .await
    .expect("sqlite");
    let mut events = deliveries(&app).await;
    let n = app
        .post_ok(
            "/v1/notifications/send",
            &json!({"recipient": {"slack_user_id": "C-ops"},
            "notification": {"channels": ["slack"], "body": "Backups finished"}}),
            StatusCode::ACCEPTED,
        )
        .await;
    events
        .wait_delivery(&id_of(&n), "slack", "sent", WAIT)
        .await;
    assert_eq!(
        api.posts.lock().unwrap()[0],
        json!({"text": "Backups finished"})
    );
    let caps = expect_json(app.get("/v1/channels/capabilities").await, StatusCode::OK).await;
    assert!(!caps.to_string().contains("secretpart"), "{caps}");
    let slack = caps["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "slack")
        .cloned()
        .unwrap();
    assert_eq!(slack["transport"], "webhook", "{slack}");
    app.stop().await;
}
