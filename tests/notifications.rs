//! Notifications (`/api/v1/notifications/send`, the notification platform's
//! paths, and `/v1/notifications`) through real peers: e-mail to aiosmtpd,
//! SMS to the npm `smpp` SMSC, voice to a SIPp callee. A client that knows
//! only the seed's document: plain HTTP with `X-API-Key`.

mod common;
mod peers;
mod sipp;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{
    app_for, expect_error, expect_json, hang_up_script, id_of, spawn_app_with, Db, TestApp,
};
use peers::SmtpSink;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

async fn stream(app: &TestApp) -> SseClient {
    SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=notification.status,message.status"),
        &app.key,
        None,
    )
    .await
}

/// herald with e-mail to `sink` and SMS to `smsc`.
async fn app_with_peers(db: Db, sink: &SmtpSink, smsc: &Smsc) -> Option<TestApp> {
    let smtp = sink.url();
    let smpp = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    spawn_app_with(
        db,
        &[
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp"),
            ("HERALD__CHANNELS__EMAIL__SMTP_URL", smtp.as_str()),
            (
                "HERALD__CHANNELS__EMAIL__FROM",
                "Clinic <reminders@clinic.example>",
            ),
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", smpp.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
        ],
        None,
    )
    .await
}

/// A POST the way a client written from the seed's document makes it.
async fn seed_post(app: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("X-API-Key", &app.key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delivery_stream(app: &TestApp) -> SseClient {
    SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=notification.delivery"),
        &app.key,
        None,
    )
    .await
}

fn delivery<'a>(n: &'a Value, channel: &str) -> &'a Value {
    n["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["channel"] == channel))
        .unwrap_or_else(|| panic!("no {channel} delivery: {n}"))
}

#[tokio::test]
async fn a_seed_client_sends_email_and_sms_to_real_peers() {
    let mut sink = SmtpSink::start().await;
    let mut smsc = Smsc::start(&[]).await;
    let app = app_with_peers(Db::Sqlite, &sink, &smsc)
        .await
        .expect("sqlite");
    let mut events = stream(&app).await;

    // Templates for e-mail and SMS, used by code, one per channel.
    for (code, channel, parts) in [
        (
            "visit-mail",
            "email",
            json!({"subject_template": "Your visit, {{name}}", "body_text_template": "Dear {{name}}, see you at {{time}}."}),
        ),
        (
            "visit-sms",
            "sms",
            json!({"body_template": "{{name}}: visit at {{time}}"}),
        ),
    ] {
        let mut t = json!({"name": code, "code": code, "channel": channel,
            "variables": [{"key": "name", "required": true}, {"key": "time", "required": true}]});
        t.as_object_mut()
            .unwrap()
            .extend(parts.as_object().unwrap().clone());
        let t = app.post_ok("/v1/templates", &t, StatusCode::CREATED).await;
        app.post_ok(
            &format!("/v1/templates/{}/activate", id_of(&t)),
            &json!({}),
            StatusCode::OK,
        )
        .await;
    }

    let (status, n) = seed_post(
        &app,
        "/api/v1/notifications/send",
        &json!({"recipient": {"email": "ann@example.com", "phone": "+15551230001"},
                "notification": {"channels": ["email", "sms"],
                                 "template_id": {"email": "visit-mail", "sms": "visit-sms"},
                                 "data": {"name": "Ann", "time": "9:30"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{n}");
    let nid = n["notification_id"]
        .as_str()
        .expect("notification_id")
        .to_string();
    assert_eq!(n["status"], "queued");
    assert_eq!(n["deliveries"].as_array().unwrap().len(), 2, "{n}");
    let seen = events.wait_message(&nid, "delivered", WAIT).await;
    assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");

    let mail = sink.next_message().await;
    assert_eq!(mail.rcpt_tos, ["ann@example.com"]);
    assert!(
        mail.data.contains("Subject: Your visit, Ann"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("Dear Ann, see you at 9:30."),
        "{}",
        mail.data
    );
    let submits = smsc.wait_kind("submit_sm", 1, WAIT).await;
    assert_eq!(submits[0]["destination_addr"], "15551230001");
    assert_eq!(
        submits[0]["short_message_hex"],
        hex::encode("Ann: visit at 9:30"),
        "{}",
        submits[0]
    );

    let r = app
        .client
        .get(app.url(&format!("/api/v1/notifications/{nid}")))
        .header("X-API-Key", &app.key)
        .send()
        .await
        .unwrap();
    let n = expect_json(r, StatusCode::OK).await;
    assert_eq!(n["status"], "delivered", "{n}");
    assert_eq!(delivery(&n, "sms")["status"], "delivered", "{n}");
    assert_eq!(delivery(&n, "sms")["attempts"], 1, "{n}");
    assert_eq!(delivery(&n, "email")["status"], "sent", "{n}");
    let sms_id = delivery(&n, "sms")["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sms = expect_json(app.get(&format!("/v1/sms/{sms_id}")).await, StatusCode::OK).await;
    assert_eq!(sms["status"], "delivered");

    // Capabilities, as the seed names them.
    let r = app
        .client
        .get(app.url("/api/v1/channels/capabilities"))
        .header("X-API-Key", &app.key)
        .send()
        .await
        .unwrap();
    let caps = expect_json(r, StatusCode::OK).await;
    let cap = |c: &str| {
        caps["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["channel"] == c)
            .cloned()
            .unwrap_or_else(|| panic!("{c}: {caps}"))
    };
    assert_eq!(cap("email")["transport"], "smtp");
    assert_eq!(cap("sms")["transport"], "smpp");
    assert_eq!(cap("sms")["ready"], true);
    assert_eq!(cap("sms")["recipient_field"], "phone");
    assert_eq!(cap("whatsapp")["template_policy"], "required");
    assert_eq!(cap("whatsapp")["configured"], false);

    // The seed's errors.
    let wa = json!({"recipient": {"whatsapp": "+15551230001"}, "notification": {"channels": ["whatsapp"], "body": "hi"}});
    expect_error(
        app.post("/api/v1/notifications/send", &wa).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_required",
        "template",
    )
    .await;
    let no_phone = json!({"recipient": {"email": "ann@example.com"}, "notification": {"channels": ["email", "sms"], "subject": "s", "body": "b"}});
    let e = expect_error(
        app.post("/v1/notifications/send", &no_phone).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "recipient.phone is required for sms",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "recipient.phone");
    let slack = json!({"recipient": {"slack_user_id": "U1"}, "notification": {"channels": ["slack"], "body": "b"}});
    expect_error(
        app.post("/v1/notifications/send", &slack).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "channel_unavailable",
        "slack",
    )
    .await;
    let missing = json!({"recipient": {"phone": "+15551230001"}, "notification": {"channels": ["sms"], "template_id": "visit-sms", "data": {"name": "Ann"}}});
    let e = expect_error(
        app.post("/v1/notifications/send", &missing).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_variables",
        "time",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "notification.data");
    let bad_phone =
        json!({"recipient": {"phone": "555"}, "notification": {"channels": ["sms"], "body": "b"}});
    let e = expect_error(
        app.post("/v1/notifications/send", &bad_phone).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "sms",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "recipient.phone");
    // Nothing refused was stored.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM notifications").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM messages").await, 2);

    // The list, by status and channel.
    let l = expect_json(
        app.get("/v1/notifications?status=delivered&channel=sms")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1, "{l}");
    let l = expect_json(
        app.get("/v1/notifications?status=failed").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 0, "{l}");
    let l = expect_json(
        app.get("/v1/notifications?recipient=ANN@example.com").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1, "{l}");
    expect_error(
        app.get("/v1/notifications?status=sending").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "status",
    )
    .await;
    app.stop().await;
    smsc.stop().await;
}

#[tokio::test]
async fn a_fallback_chain_sends_the_email_only_when_the_sms_fails() {
    let mut sink = SmtpSink::start().await;
    let mut smsc = Smsc::start(&[]).await;
    let app = app_with_peers(Db::Sqlite, &sink, &smsc)
        .await
        .expect("sqlite");
    let mut events = stream(&app).await;
    let mut deliveries = delivery_stream(&app).await;
    let send = |phone: &str, email: &str| {
        json!({"recipient": {"email": email, "phone": phone},
               "notification": {"channels": ["sms", "email"], "subject": "Your code", "body": "Code 4411"},
               "strategy": "fallback"})
    };
    // Numbers ending in 0: the SMSC's receipt says UNDELIV.
    let failed = app
        .post_ok(
            "/v1/notifications/send",
            &send("+15551230000", "first@example.com"),
            StatusCode::ACCEPTED,
        )
        .await;
    let fid = id_of(&failed);
    assert_eq!(delivery(&failed, "email")["status"], "waiting", "{failed}");
    let e = deliveries.wait_delivery(&fid, "email", "sent", WAIT).await;
    // The follower reports the furthest status each read saw, so the move
    // may skip `sending`; it never starts from `waiting`.
    assert!(
        ["queued", "sending"].contains(&e["data"]["from"].as_str().unwrap_or("")),
        "{e}"
    );
    let mail = sink.next_message().await;
    assert_eq!(mail.rcpt_tos, ["first@example.com"]);
    let n = expect_json(
        app.get(&format!("/v1/notifications/{fid}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(delivery(&n, "sms")["status"], "failed", "{n}");
    assert_eq!(n["status"], "sent", "{n}");
    assert_eq!(delivery(&n, "email")["status"], "sent", "{n}");

    let ok = app
        .post_ok(
            "/v1/notifications/send",
            &send("+15551230002", "second@example.com"),
            StatusCode::ACCEPTED,
        )
        .await;
    let oid = id_of(&ok);
    events.wait_message(&oid, "delivered", WAIT).await;
    // The chain's e-mail is skipped, never inserted.
    let n = expect_json(
        app.get(&format!("/v1/notifications/{oid}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(delivery(&n, "sms")["status"], "delivered", "{n}");
    assert_eq!(delivery(&n, "email")["status"], "skipped", "{n}");
    let skipped = delivery(&n, "email")["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        app.get(&format!("/v1/emails/{skipped}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The next mail the server sees is a marker sent now, not the skipped one.
    app.post_ok(
        "/v1/emails",
        &json!({"to": [{"email": "marker@example.com"}], "subject": "m", "body_text": "m"}),
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(sink.next_message().await.rcpt_tos, ["marker@example.com"]);

    // Not delivered in time: e-mail has no receipts, so after
    // fallback_after_s the SMS goes too, and its receipt delivers.
    let mut slow = send("+15551230003", "third@example.com");
    slow["notification"]["channels"] = json!(["email", "sms"]);
    slow["fallback_after_s"] = json!(1);
    let n = app
        .post_ok("/v1/notifications/send", &slow, StatusCode::ACCEPTED)
        .await;
    let seen = events.wait_message(&id_of(&n), "delivered", WAIT).await;
    assert_eq!(
        seen.iter().filter(|s| *s != "sending").collect::<Vec<_>>(),
        ["queued", "sent", "delivered"]
    );
    assert_eq!(sink.next_message().await.rcpt_tos, ["third@example.com"]);
    let submits = smsc.wait_kind("submit_sm", 3, WAIT).await;
    assert_eq!(submits[2]["destination_addr"], "15551230003");
    app.stop().await;
    smsc.stop().await;
}

async fn idempotent_sends_send_once(db: Db) {
    let mut sink = SmtpSink::start().await;
    let mut smsc = Smsc::start(&[]).await;
    let Some(app) = app_with_peers(db, &sink, &smsc).await else {
        return common::pg::skip_without_postgres("notification idempotency");
    };
    let mut events = stream(&app).await;
    let body = json!({"recipient": {"email": "ann@example.com", "phone": "+15551230005"},
        "notification": {"channels": ["email", "sms"], "subject": "Hi", "body": "Once"},
        "idempotency_key": "order-77"});
    // Sixteen at once, then again: one notification.
    let answers =
        futures::future::join_all((0..16).map(|_| app.post("/v1/notifications/send", &body))).await;
    let mut ids = Vec::new();
    for r in answers {
        ids.push(id_of(&expect_json(r, StatusCode::ACCEPTED).await));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    events.wait_message(&ids[0], "delivered", WAIT).await;
    let again = app
        .post_ok("/v1/notifications/send", &body, StatusCode::ACCEPTED)
        .await;
    assert_eq!(id_of(&again), ids[0]);
    assert_eq!(again["status"], "delivered");
    let mut other = body.clone();
    other["notification"]["body"] = json!("Twice");
    expect_error(
        app.post("/v1/notifications/send", &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "another request body",
    )
    .await;
    assert_eq!(sink.next_message().await.rcpt_tos, ["ann@example.com"]);
    app.post_ok(
        "/v1/emails",
        &json!({"to": [{"email": "marker@example.com"}], "subject": "m", "body_text": "m"}),
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(sink.next_message().await.rcpt_tos, ["marker@example.com"]);
    let stats = smsc.stats(WAIT).await;
    assert_eq!(stats["submits"], 1, "{stats}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM messages").await, 3);
    app.stop().await;
    smsc.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_sends_once_on_sqlite() {
    idempotent_sends_send_once(Db::Sqlite).await;
}

#[tokio::test]
async fn the_same_idempotency_key_sends_once_on_postgres() {
    idempotent_sends_send_once(Db::Postgres).await;
}

#[tokio::test]
async fn a_voice_notification_is_a_call_that_delivers_when_answered() {
    let uas = sipp::SippUas::start("uas_cps.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut events = stream(&app).await;
    let agent = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "bye", "kind": "script", "script": hang_up_script()}),
            StatusCode::CREATED,
        )
        .await;
    let n = app
        .post_ok(
            "/v1/notifications/send",
            &json!({"recipient": {"phone": "+15557770042"},
                    "notification": {"channels": ["voice"], "agent_id": id_of(&agent)}}),
            StatusCode::ACCEPTED,
        )
        .await;
    let nid = id_of(&n);
    events.wait_message(&nid, "delivered", WAIT).await;
    let n = expect_json(
        app.get(&format!("/v1/notifications/{nid}")).await,
        StatusCode::OK,
    )
    .await;
    let call_id = delivery(&n, "voice")["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let call = expect_json(
        app.get(&format!("/v1/calls/{call_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["to"], "+15557770042");
    let e = expect_error(
        app.post("/v1/notifications/send", &json!({"recipient": {"phone": "+15557770042"}, "notification": {"channels": ["voice"], "agent_id": "nobody"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "nobody").await;
    assert_eq!(e["error"]["details"]["field"], "notification.agent_id");
    uas.finish().await.assert_success();
    app.stop().await;
}
