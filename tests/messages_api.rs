//! Templates, e-mail and SMS through the REST API on the embedded defaults
//! (e-mail to .eml files, SMS to the built-in simulator), on SQLite and
//! PostgreSQL: template versions and validation, rendering, idempotency,
//! cancel, suppression and DNC, send windows, and every status change on
//! the global event stream.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{expect_error, expect_json, spawn_app_with, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

/// A herald whose e-mail goes to `outbox` and whose simulator delivers
/// every SMS at once.
async fn app(db: Db, outbox: &std::path::Path) -> Option<TestApp> {
    let population = outbox.join("population.toml");
    std::fs::write(
        &population,
        "name = \"sms\"\n[outcomes]\nanswer = 1.0\n[sms]\ndelivered = 1.0\nreceipt_ms = 0\n",
    )
    .unwrap();
    let dir = outbox.join("outbox").display().to_string();
    let pop = population.display().to_string();
    spawn_app_with(
        db,
        &[
            ("HERALD__CHANNELS__EMAIL__OUTBOX_DIR", dir.as_str()),
            (
                "HERALD__CHANNELS__EMAIL__FROM",
                "Clinic <reminders@clinic.example>",
            ),
            ("HERALD__SIMULATOR__POPULATION", pop.as_str()),
        ],
        None,
    )
    .await
}

fn email_template(code: &str) -> Value {
    json!({
        "name": "Order shipped",
        "code": code,
        "channel": "email",
        "variables": [
            {"key": "customerName", "required": true},
            {"key": "orderId", "required": true},
            {"key": "carrier", "required": false, "default": "the post"}
        ],
        "subject_template": "Order {{orderId}} shipped",
        "body_html_template": "<p>Hello {{customerName}}, order {{orderId}} left with {{carrier}}.</p>",
        "body_text_template": "Hello {{customerName}}, order {{orderId}} left with {{carrier}}."
    })
}

/// Waits on the global stream until message `id` reaches `status`.
async fn wait_message(s: &mut SseClient, id: &str, status: &str) -> Vec<String> {
    s.wait_message(id, status, WAIT).await
}

async fn stream(app: &TestApp) -> SseClient {
    SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status"),
        &app.key,
        None,
    )
    .await
}

async fn templates_version_validate_and_render(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(app) = app(db, tmp.path()).await else {
        return;
    };
    // A template using a variable it does not declare is refused, naming both.
    let mut bad = email_template("bad");
    bad["body_text_template"] = json!("Hi {{customerName}}, see {{trackingUrl}}");
    let body = expect_json(
        app.post("/v1/templates", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let text = body.to_string();
    assert!(
        text.contains("trackingUrl") && text.contains("body_text_template"),
        "{text}"
    );

    let t = app
        .post_ok(
            "/v1/templates",
            &email_template("order_shipped"),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(t["status"], "inactive");
    assert_eq!(t["version"], 1);
    let id = t["id"].as_str().unwrap().to_string();
    expect_error(
        app.post("/v1/templates", &email_template("order_shipped"))
            .await,
        StatusCode::CONFLICT,
        "template_code_taken",
        "code",
    )
    .await;

    // Render: HTML escaped in the HTML body only; the default fills carrier.
    let r = app
        .post_ok(
            &format!("/v1/templates/{id}/render"),
            &json!({"variables": {"customerName": "Ann <b>&", "orderId": "A-1"}}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(r["subject"], "Order A-1 shipped");
    assert_eq!(
        r["body_text"],
        "Hello Ann <b>&, order A-1 left with the post."
    );
    assert!(
        r["body_html"]
            .as_str()
            .unwrap()
            .contains("Ann &lt;b&gt;&amp;"),
        "{r}"
    );
    // Missing required variables: every key listed.
    let e = expect_error(
        app.post(
            &format!("/v1/templates/{id}/render"),
            &json!({"variables": {}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_variables",
        "customerName",
    )
    .await;
    assert_eq!(
        e["error"]["details"]["missing"],
        json!(["customerName", "orderId"])
    );

    // A change is a new version; the code finds it; the list filters.
    let t2 = app
        .patch(
            &format!("/v1/templates/{id}"),
            &json!({"subject_template": "Your order {{orderId}}"}),
        )
        .await;
    let t2 = expect_json(t2, StatusCode::OK).await;
    assert_eq!(t2["version"], 2);
    let by_code = app.get("/v1/templates/by-code/order_shipped").await;
    assert_eq!(
        expect_json(by_code, StatusCode::OK).await["subject_template"],
        "Your order {{orderId}}"
    );
    let list = expect_json(
        app.get("/v1/templates?channel=email&status=inactive").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list = expect_json(app.get("/v1/templates?channel=sms").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // SMS preview: encoding and segments.
    let sms = app
        .post_ok(
            "/v1/templates",
            &json!({"name": "Reminder", "code": "reminder", "channel": "sms",
                    "variables": [{"key": "when", "required": true}],
                    "body_template": "Reminder: your visit is {{when}} €"}),
            StatusCode::CREATED,
        )
        .await;
    let r = app
        .post_ok(
            &format!("/v1/templates/{}/render", sms["id"].as_str().unwrap()),
            &json!({"variables": {"when": "tomorrow 9:00"}}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(r["encoding"], "gsm7");
    assert_eq!(r["segments"], 1);
    app.stop().await;
}
on_both_backends!(
    templates_are_versioned_validated_and_previewed,
    templates_version_validate_and_render
);

async fn email_from_template(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(app) = app(db, tmp.path()).await else {
        return;
    };
    let mut events = stream(&app).await;
    let t = app
        .post_ok(
            "/v1/templates",
            &email_template("shipped"),
            StatusCode::CREATED,
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_string();
    let send = json!({
        "to": [{"email": "Ann@Example.com", "name": "Ann"}],
        "template_id": "shipped",
        "template_variables": {"customerName": "Ann", "orderId": "A-7"},
        "category": "marketing"
    });
    // Inactive, unknown, missing variables.
    expect_error(
        app.post("/v1/emails", &send).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_inactive",
        "inactive",
    )
    .await;
    app.post_ok(
        &format!("/v1/templates/{tid}/activate"),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    let mut unknown = send.clone();
    unknown["template_id"] = json!("nope");
    expect_error(
        app.post("/v1/emails", &unknown).await,
        StatusCode::NOT_FOUND,
        "template_not_found",
        "nope",
    )
    .await;
    let mut missing = send.clone();
    missing["template_variables"] = json!({"customerName": "Ann"});
    expect_error(
        app.post("/v1/emails", &missing).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_variables",
        "orderId",
    )
    .await;

    let m = app.post_ok("/v1/emails", &send, StatusCode::ACCEPTED).await;
    assert_eq!(m["status"], "queued");
    let id = m["id"].as_str().unwrap().to_string();
    let seen = wait_message(&mut events, &id, "sent").await;
    assert_eq!(seen, ["queued", "sending", "sent"]);

    let m = expect_json(app.get(&format!("/v1/emails/{id}")).await, StatusCode::OK).await;
    assert_eq!(m["status"], "sent");
    assert_eq!(m["subject"], "Order A-7 shipped");
    assert_eq!(m["template_id"], tid.as_str());
    assert_eq!(m["template_version"], 1);
    assert_eq!(m["from"]["email"], "reminders@clinic.example");
    assert_eq!(m["attempts"][0]["result"], "accepted");
    let message_id = m["message_id"].as_str().unwrap().to_string();

    // The .eml file carries the headers and both bodies.
    let eml = std::fs::read_to_string(tmp.path().join("outbox").join(format!("{id}.eml"))).unwrap();
    assert!(eml.contains("Subject: Order A-7 shipped"), "{eml}");
    assert!(
        eml.contains(&format!("Message-ID: <{message_id}>")),
        "{eml}"
    );
    assert!(
        eml.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{eml}"
    );
    assert!(
        eml.contains("text/html") && eml.contains("text/plain"),
        "{eml}"
    );

    // The one-click unsubscribe suppresses the address; the next send fails.
    let r = app
        .client
        .post(app.url(&format!("/unsubscribe/{id}")))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = expect_json(
        app.get("/v1/suppressions/email/ann@example.com").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["reason"], "unsubscribed");
    let m2 = app.post_ok("/v1/emails", &send, StatusCode::ACCEPTED).await;
    let id2 = m2["id"].as_str().unwrap().to_string();
    wait_message(&mut events, &id2, "failed").await;
    let m2 = expect_json(app.get(&format!("/v1/emails/{id2}")).await, StatusCode::OK).await;
    assert_eq!(m2["reason"], "suppressed");
    assert!(!tmp
        .path()
        .join("outbox")
        .join(format!("{id2}.eml"))
        .exists());

    // Every change has its event row, numbered without gaps.
    let seq = app
        .scalar("SELECT seq FROM event_streams WHERE name = 'global'")
        .await;
    assert_eq!(seq, 6, "queued, sending, sent, queued, sending, failed");
    app.stop().await;
}
on_both_backends!(
    an_email_from_a_template_is_written_with_its_headers_and_events,
    email_from_template
);

async fn idempotency_cancel_and_windows(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(app) = app(db, tmp.path()).await else {
        return;
    };
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let body = json!({"to": "+15551230001", "body": "See you tomorrow", "idempotency_key": "k-1", "scheduled_at": later});
    let a = app.post_ok("/v1/sms", &body, StatusCode::ACCEPTED).await;
    let b = app.post_ok("/v1/sms", &body, StatusCode::ACCEPTED).await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM messages").await, 1);
    let mut other = body.clone();
    other["body"] = json!("Something else");
    expect_error(
        app.post("/v1/sms", &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "idempotency_key",
    )
    .await;

    // The same key sent concurrently (accepted together, in one write):
    // one message; every 202 names it, and a request that found the first
    // still being accepted is told to retry (409).
    let burst = json!({"to": "+15551230009", "body": "Burst", "idempotency_key": "k-burst", "scheduled_at": later});
    let answers = futures::future::join_all((0..16).map(|_| app.post("/v1/sms", &burst))).await;
    let mut ids = std::collections::HashSet::new();
    for r in answers {
        match r.status() {
            StatusCode::ACCEPTED => {
                ids.insert(
                    r.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            StatusCode::CONFLICT => {}
            other => panic!("a concurrent duplicate answered {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM messages WHERE idempotency_key = 'k-burst'")
            .await,
        1
    );

    // Scheduled: still queued; PATCH re-renders; cancel once, then 409.
    let id = a["id"].as_str().unwrap();
    assert_eq!(a["encoding"], "gsm7");
    let p = expect_json(
        app.patch(&format!("/v1/sms/{id}"), &json!({"body": "Привет"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(p["encoding"], "ucs2");
    assert_eq!(p["status"], "queued");
    let c = app
        .post_ok(
            &format!("/v1/sms/{id}/cancel"),
            &json!({"reason": "patient called"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(c["status"], "cancelled");
    let e = expect_json(
        app.post(&format!("/v1/sms/{id}/cancel"), &json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(e["error"]["details"]["status"], "cancelled");

    // A send window that is closed now (only tomorrow): due at its opening.
    let tomorrow = chrono::Utc::now().date_naive().succ_opt().unwrap();
    let day = tomorrow.format("%a").to_string().to_lowercase();
    let w = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230002", "body": "x",
                    "send_window": {"timezone": "UTC", "days": [day], "start": "00:00", "end": "23:59"}}),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(
        w["next_attempt_at"],
        format!("{tomorrow}T00:00:00.000Z"),
        "{w}"
    );

    // Too long: 11 segments refused, naming the field.
    let long = "x".repeat(153 * 10 + 1);
    let e = expect_json(
        app.post("/v1/sms", &json!({"to": "+15551230003", "body": long}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "body");
    app.stop().await;
}
on_both_backends!(
    idempotency_cancel_patch_and_send_windows,
    idempotency_cancel_and_windows
);

async fn sms_delivery_dnc_and_suppression(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(app) = app(db, tmp.path()).await else {
        return;
    };
    let mut events = stream(&app).await;
    let ok = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230010", "body": "Your visit is tomorrow"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let id = ok["id"].as_str().unwrap().to_string();
    let seen = wait_message(&mut events, &id, "delivered").await;
    assert_eq!(seen, ["queued", "sending", "sent", "delivered"]);
    let m = expect_json(app.get(&format!("/v1/sms/{id}")).await, StatusCode::OK).await;
    assert!(m["provider_id"].as_str().unwrap().starts_with("sim"), "{m}");

    app.post_ok(
        "/v1/dnc",
        &json!({"number": "+15551230011"}),
        StatusCode::CREATED,
    )
    .await;
    app.post_ok(
        "/v1/suppressions",
        &json!({"channel": "sms", "address": "+15551230012", "reason": "STOP"}),
        StatusCode::CREATED,
    )
    .await;
    for to in ["+15551230011", "+15551230012"] {
        let m = app
            .post_ok(
                "/v1/sms",
                &json!({"to": to, "body": "x"}),
                StatusCode::ACCEPTED,
            )
            .await;
        let id = m["id"].as_str().unwrap().to_string();
        wait_message(&mut events, &id, "failed").await;
        let m = expect_json(app.get(&format!("/v1/sms/{id}")).await, StatusCode::OK).await;
        assert_eq!(m["reason"], "suppressed", "{m}");
    }
    let list = expect_json(app.get("/v1/sms?status=failed").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let list = expect_json(
        app.get("/v1/sms?recipient=%2B15551230010").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    expect_json(
        app.delete("/v1/suppressions/sms/+15551230012").await,
        StatusCode::NO_CONTENT,
    )
    .await;
    app.stop().await;
}
on_both_backends!(
    sms_is_delivered_and_dnc_or_suppressed_numbers_fail,
    sms_delivery_dnc_and_suppression
);

async fn message_events_reach_webhooks(db: Db) {
    use axum::routing::post;
    let tmp = tempfile::tempdir().unwrap();
    let Some(app) = app(db, tmp.path()).await else {
        return;
    };
    // A receiver that hands each delivery (its id header and body) to the test.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let receiver = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let id = headers
                        .get("herald-webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });
    app.post_ok(
        "/v1/webhooks",
        &json!({"url": hook, "event_types": ["message.status"], "secret": "0123456789abcdef0123"}),
        StatusCode::CREATED,
    )
    .await;
    let m = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230020", "body": "hello"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some((hid, v)) = rx.recv().await {
            assert_eq!(v["type"], "message.status", "{v}");
            assert_eq!(hid, v["id"].as_str().unwrap_or_default(), "{v}");
            assert!(hid.starts_with("global:"), "{hid}");
            if v["data"]["message_id"] == id.as_str() {
                seen.push(v["data"]["status"].as_str().unwrap_or_default().to_string());
                if seen.last().map(String::as_str) == Some("delivered") {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("webhook deliveries for {id}: {seen:?}"));
    assert_eq!(seen, ["queued", "sending", "sent", "delivered"]);
    server.abort();
    app.stop().await;
}
on_both_backends!(
    message_status_events_are_delivered_to_webhooks,
    message_events_reach_webhooks
);
