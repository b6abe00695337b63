//! WhatsApp through a Cloud-API-shaped server run by the test (the real
//! API cannot run offline): it records each request, answers with a
//! `wamid`, and posts signed status webhooks back to herald, the first
//! before herald has recorded the send. Out-of-order statuses never move a
//! message back; a bad signature is a 401; free text follows the 24-hour
//! rule on both sides of the boundary; a notification's WhatsApp template
//! reaches the server with its parameters in order.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use axum::{Json, Router};
use common::{expect_error, expect_json, id_of, spawn_app_with, Db, TestApp};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "app-secret-for-tests";
const TOKEN: &str = "cloud-token-for-tests";

#[derive(Clone, Default)]
struct Cloud {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    herald: Arc<Mutex<Option<String>>>,
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn statuses(items: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1065"}, "statuses": items}}]}]})
}

async fn post_hook(base: &str, body: &Value, signature: Option<String>) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = signature.unwrap_or_else(|| sign(&raw));
    reqwest::Client::new()
        .post(format!("{base}/v1/providers/whatsapp/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(raw)
        .send()
        .await
        .unwrap()
}

async fn messages(
    State(c): State<Cloud>,
    Path(phone): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (AxStatus, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (
            AxStatus::UNAUTHORIZED,
            Json(json!({"error": {"code": 190, "message": "bad token"}})),
        );
    }
    let n = {
        let mut r = c.requests.lock().unwrap();
        r.push((phone, body.clone()));
        r.len()
    };
    let wamid = format!("wamid.T{n}");
    // "delivered" first, posted before this answer reaches herald.
    let base = c.herald.lock().unwrap().clone();
    if let Some(base) = base {
        // Numbers ending in 9 cannot take messages.
        let failed = body["to"].as_str().is_some_and(|t| t.ends_with('9'));
        let hook = statuses(
            json!([{"id": wamid, "status": if failed { "failed" } else { "delivered" },
            "timestamp": "1700000000", "recipient_id": body["to"],
            "errors": if failed { json!([{"code": 131026, "title": "Message undeliverable"}]) } else { json!([]) }}]),
        );
        tokio::spawn(async move {
            let r = post_hook(&base, &hook, None).await;
            assert_eq!(r.status(), StatusCode::OK);
        });
    }
    (
        AxStatus::OK,
        Json(
            json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                               "messages": [{"id": wamid}]}),
        ),
    )
}

async fn start_cloud() -> (Cloud, String) {
    let cloud = Cloud::default();
    let app = Router::new()
        .route("/v21.0/{phone}/messages", post(messages))
        .with_state(cloud.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v21.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (cloud, url)
}

async fn app(cloud: &Cloud, url: &str) -> TestApp {
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__WHATSAPP__BASE_URL", url),
            ("HERALD__CHANNELS__WHATSAPP__PHONE_NUMBER_ID", "1065"),
            ("HERALD__CHANNELS__WHATSAPP__TOKEN", TOKEN),
            ("HERALD__CHANNELS__WHATSAPP__APP_SECRET", SECRET),
            ("HERALD__CHANNELS__WHATSAPP__VERIFY_TOKEN", "verify-me"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    *cloud.herald.lock().unwrap() = Some(app.base.clone());
    app
}

async fn template(app: &TestApp) {
    let t = app
        .post_ok(
            "/v1/templates",
            &json!({"name": "Visit", "code": "visit-wa", "channel": "whatsapp",
                    "variables": [{"key": "name", "required": true}, {"key": "time", "required": true}],
                    "provider_template": {"name": "visit_reminder", "language": "en_US", "parameters": ["time", "name"]}}),
            StatusCode::CREATED,
        )
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", id_of(&t)),
        &json!({}),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn templates_reach_the_cloud_api_and_signed_statuses_never_move_back() {
    let (cloud, url) = start_cloud().await;
    let app = app(&cloud, &url).await;
    template(&app).await;
    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status,notification.status"),
        &app.key,
        None,
    )
    .await;

    // The subscription check.
    let r = app.client.get(app.url("/v1/providers/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = app.client.get(app.url("/v1/providers/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let caps = expect_json(app.get("/v1/channels/capabilities").await, StatusCode::OK).await;
    let wa = caps["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "whatsapp")
        .cloned()
        .unwrap();
    assert_eq!(wa["configured"], true, "{wa}");
    assert_eq!(wa["transport"], "cloud_api", "{wa}");
    assert!(!caps.to_string().contains(TOKEN) && !caps.to_string().contains(SECRET));

    // A notification with the template, as the seed's client sends it.
    let r = app
        .client
        .post(app.url("/api/v1/notifications/send"))
        .header("X-API-Key", &app.key)
        .json(&json!({"recipient": {"whatsapp": "+15551230001"},
                      "notification": {"channels": ["whatsapp"], "template_id": "visit-wa", "data": {"name": "Ann", "time": "9:30"}}}))
        .send()
        .await
        .unwrap();
    let n = expect_json(r, StatusCode::ACCEPTED).await;
    events.wait_message(&id_of(&n), "delivered", WAIT).await;
    let (phone, body) = cloud.requests.lock().unwrap()[0].clone();
    assert_eq!(phone, "1065");
    assert_eq!(body["to"], "15551230001");
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "visit_reminder");
    assert_eq!(body["template"]["language"]["code"], "en_US");
    let params: Vec<&str> = body["template"]["components"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["9:30", "Ann"], "the provider's order");

    // Late and repeated statuses: read, then sent, then failed: it stays delivered.
    let mid = n["deliveries"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    for st in ["read", "sent", "failed"] {
        let r = post_hook(&app.base, &statuses(json!([{"id": "wamid.T1", "status": st, "timestamp": "1700000000", "errors": [{"code": 131026, "title": "x"}]}])), None).await;
        assert_eq!(r.status(), StatusCode::OK, "{st}");
    }
    // A marker message goes through the same reports after them.
    let m = app
        .post_ok("/v1/whatsapp", &json!({"to": "+15551230002", "template_id": "visit-wa", "template_variables": {"name": "Bo", "time": "10:00"}}), StatusCode::ACCEPTED)
        .await;
    events.wait_message(&id_of(&m), "delivered", WAIT).await;
    let r = post_hook(
        &app.base,
        &statuses(json!([{"id": "wamid.T2", "status": "failed"}])),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = expect_json(
        app.get(&format!("/v1/whatsapp/{mid}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["status"], "delivered", "{got}");
    assert_eq!(got["provider_id"], "wamid.T1");
    // Read is kept apart: when, from the status's own timestamp.
    assert!(
        got["read_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2023-11-14T22:13:20")),
        "{got}"
    );

    // Another message, delivered by the server's webhook.
    let f = app
        .post_ok("/v1/whatsapp", &json!({"to": "+15551230003", "template_id": "visit-wa", "template_variables": {"name": "Cy", "time": "11:00"}}), StatusCode::ACCEPTED)
        .await;
    events.wait_message(&id_of(&f), "delivered", WAIT).await;

    // A number that cannot take it: the status webhook fails the message.
    let bad = app
        .post_ok("/v1/whatsapp", &json!({"to": "+15551230009", "template_id": "visit-wa", "template_variables": {"name": "Di", "time": "12:00"}}), StatusCode::ACCEPTED)
        .await;
    events.wait_message(&id_of(&bad), "failed", WAIT).await;

    // Bad or missing signatures: 401, nothing applied.
    let hook = statuses(json!([{"id": "wamid.T3", "status": "failed"}]));
    let r = post_hook(&app.base, &hook, Some(sign(b"another body"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/providers/whatsapp/webhook", app.base))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let got = expect_json(
        app.get(&format!("/v1/whatsapp/{}", id_of(&f))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["status"], "delivered", "{got}");
    app.stop().await;
}

#[tokio::test]
async fn free_text_follows_the_24_hour_window_on_both_sides() {
    let (cloud, url) = start_cloud().await;
    let app = app(&cloud, &url).await;
    template(&app).await;
    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status"),
        &app.key,
        None,
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let inbound = |from: &str, id: &str, at: i64| {
        json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1065"},
            "contacts": [{"wa_id": from}],
            "messages": [{"from": from, "id": id, "timestamp": at.to_string(), "type": "text", "text": {"body": "hello"}}]}}]}]})
    };

    // Never wrote: free text is refused.
    let e = expect_error(
        app.post("/v1/whatsapp", &json!({"to": "+15551230010", "body": "Hi"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "outside_24h_window",
        "send a template",
    )
    .await;
    assert_eq!(e["error"]["details"]["window_closed_at"], Value::Null);

    // Wrote 24 h and a minute ago: closed a minute ago, and says when.
    let r = post_hook(
        &app.base,
        &inbound("15551230011", "wamid.IN1", now - 86_460),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let e = expect_error(
        app.post("/v1/whatsapp", &json!({"to": "+15551230011", "body": "Hi"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "outside_24h_window",
        "the window closed at",
    )
    .await;
    let closed = e["error"]["details"]["window_closed_at"].as_str().unwrap();
    let closed = chrono::DateTime::parse_from_rfc3339(closed)
        .unwrap()
        .timestamp();
    assert!((closed - (now - 60)).abs() <= 1, "{e}");
    // A template still goes.
    app.post_ok("/v1/whatsapp", &json!({"to": "+15551230011", "template_id": "visit-wa", "template_variables": {"name": "Ann", "time": "9"}}), StatusCode::ACCEPTED).await;

    // Wrote 23 h 59 min ago: free text goes.
    let r = post_hook(
        &app.base,
        &inbound("15551230012", "wamid.IN2", now - 86_340),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The same webhook again is kept once.
    post_hook(
        &app.base,
        &inbound("15551230012", "wamid.IN2", now - 86_340),
        None,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM inbound_messages").await, 2);
    let m = app
        .post_ok(
            "/v1/whatsapp",
            &json!({"to": "+15551230012", "body": "Thanks, see you"}),
            StatusCode::ACCEPTED,
        )
        .await;
    events.wait_message(&id_of(&m), "delivered", WAIT).await;
    let last = cloud.requests.lock().unwrap().last().cloned().unwrap().1;
    assert_eq!(last["type"], "text");
    assert_eq!(last["text"]["body"], "Thanks, see you");
    // Through a notification, WhatsApp needs a template.
    expect_error(
        app.post("/v1/notifications/send", &json!({"recipient": {"whatsapp": "+15551230012"}, "notification": {"channels": ["whatsapp"], "body": "hi"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY, "template_required", "template").await;
    app.stop().await;
}
