//! Messages through herald's REST API to real peers that are not herald:
//! e-mail to an aiosmtpd server (headers, bodies, envelope, a 550 bounce
//! that suppresses, a 451 that is retried), a delivery status report sent
//! with Python's smtplib to herald's bounce listener, and SMS to an SMSC on
//! the npm `smpp` package (data_coding, receipts to delivered and failed).

mod common;
mod peers;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{expect_json, spawn_app_with, Db, TestApp};
use peers::{send_with_smtplib, SmtpSink};
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

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

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_and_bounces_suppress() {
    let mut sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp"),
            ("HERALD__CHANNELS__EMAIL__SMTP_URL", url.as_str()),
            (
                "HERALD__CHANNELS__EMAIL__FROM",
                "Clinic <reminders@clinic.example>",
            ),
            ("HERALD__CHANNELS__EMAIL__BOUNCE_LISTEN", "127.0.0.1:0"),
            ("HERALD__MESSAGES__RETRY_BASE_MS", "50"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let mut events = stream(&app).await;
    let t = app
        .post_ok(
            "/v1/templates",
            &json!({"name": "Offer", "code": "offer", "channel": "email",
                    "variables": [{"key": "name", "required": true}],
                    "subject_template": "An offer for {{name}}",
                    "body_html_template": "<p>Dear {{name}}</p>",
                    "body_text_template": "Dear {{name}}"}),
            StatusCode::CREATED,
        )
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", id(&t)),
        &json!({}),
        StatusCode::OK,
    )
    .await;

    // Marketing mail from the template: what the server received.
    let m = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "ann@example.com", "name": "Ann"}], "bcc": [{"email": "audit@example.com"}],
                    "template_id": "offer", "template_variables": {"name": "Ann & Co"}, "category": "marketing"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let mid = id(&m);
    wait_message(&mut events, &mid, "sent").await;
    let got = sink.next_message().await;
    assert_eq!(got.mail_from, format!("bounces+{mid}@clinic.example"));
    let mut rcpts = got.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["ann@example.com", "audit@example.com"]);
    let d = &got.data;
    assert!(d.contains("From: Clinic <reminders@clinic.example>"), "{d}");
    assert!(d.contains("To: Ann <ann@example.com>"), "{d}");
    assert!(!d.contains("audit@example.com"), "Bcc in the headers: {d}");
    assert!(d.contains("Subject: An offer for Ann & Co"), "{d}");
    assert!(
        d.contains(&format!("Message-ID: <{mid}@clinic.example>")),
        "{d}"
    );
    assert!(
        d.contains(&format!(
            "List-Unsubscribe: <http://127.0.0.1:8080/unsubscribe/{mid}>"
        )),
        "{d}"
    );
    assert!(
        d.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{d}"
    );
    assert!(
        d.contains("Ann &amp; Co"),
        "the HTML body escapes the variable: {d}"
    );

    // Transactional raw mail: no List-Unsubscribe.
    let m = app
        .post_ok("/v1/emails", &json!({"to": [{"email": "bob@example.com"}], "subject": "Receipt", "body_text": "Thanks"}), StatusCode::ACCEPTED)
        .await;
    wait_message(&mut events, &id(&m), "sent").await;
    let got = sink.next_message().await;
    assert!(!got.data.contains("List-Unsubscribe"), "{}", got.data);

    // 550 at RCPT: bounced, and the address is suppressed.
    let m = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "reject-me@example.com"}], "subject": "x", "body_text": "x"}),
            StatusCode::ACCEPTED,
        )
        .await;
    wait_message(&mut events, &id(&m), "bounced").await;
    let m = expect_json(
        app.get(&format!("/v1/emails/{}", id(&m))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["attempts"][0]["code"], "550", "{m}");
    let s = expect_json(
        app.get("/v1/suppressions/email/reject-me@example.com")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["reason"], "bounced");

    // 451 first, then 250: retried, then sent.
    let m = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "later@example.com"}], "subject": "x", "body_text": "x"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let seen = wait_message(&mut events, &id(&m), "sent").await;
    assert_eq!(seen, ["queued", "sending", "queued", "sending", "sent"]);
    let m = expect_json(
        app.get(&format!("/v1/emails/{}", id(&m))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["attempts"][0]["result"], "retry");
    assert_eq!(m["attempts"][0]["code"], "451");
    assert_eq!(m["attempts"][1]["result"], "accepted");

    app.stop().await;
}

#[tokio::test]
async fn a_delivery_status_report_to_the_bounce_address_bounces_the_message() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp"),
            ("HERALD__CHANNELS__EMAIL__SMTP_URL", url.as_str()),
            ("HERALD__CHANNELS__EMAIL__FROM", "reminders@clinic.example"),
            ("HERALD__CHANNELS__EMAIL__BOUNCE_LISTEN", "127.0.0.1:0"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let mut events = stream(&app).await;
    let m = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "gone@example.com"}], "subject": "x", "body_text": "x"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let mid = id(&m);
    wait_message(&mut events, &mid, "sent").await;
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.com\r\nTo: bounces+{mid}@clinic.example\r\nSubject: Undelivered Mail\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n\
         Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n"
    );
    let port = app.bounce_addr().expect("the bounce listener runs").port();
    let verdict = send_with_smtplib(
        port,
        "",
        &[&format!("bounces+{mid}@clinic.example")],
        dsn.as_bytes(),
    )
    .await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    wait_message(&mut events, &mid, "bounced").await;
    let s = expect_json(
        app.get("/v1/suppressions/email/gone@example.com").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["reason"], "bounced");
    app.stop().await;
}

#[tokio::test]
async fn sms_reach_a_real_smsc_and_receipts_deliver_or_fail_them() {
    let mut smsc = Smsc::start(&[]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let mut events = stream(&app).await;
    let ok = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230001", "body": "Your visit is tomorrow"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let uni = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230003", "body": "Визит завтра"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let bad = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15551230000", "body": "x"}),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(
        wait_message(&mut events, &id(&ok), "delivered").await,
        ["queued", "sending", "sent", "delivered"]
    );
    wait_message(&mut events, &id(&uni), "delivered").await;
    wait_message(&mut events, &id(&bad), "failed").await;
    let submits = smsc.wait_kind("submit_sm", 3, WAIT).await;
    let by_dest = |d: &str| {
        submits
            .iter()
            .find(|s| s["destination_addr"] == d)
            .cloned()
            .unwrap_or_else(|| panic!("{d}: {submits:?}"))
    };
    let s = by_dest("15551230001");
    assert_eq!(s["data_coding"], 0);
    assert_eq!(s["source_addr"], "15550009999");
    assert_eq!(s["source_addr_ton"], 1);
    assert_eq!(s["registered_delivery"], 1);
    assert_eq!(by_dest("15551230003")["data_coding"], 8);
    let m = expect_json(
        app.get(&format!("/v1/sms/{}", id(&bad))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["status"], "failed");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_message_transport_ready{channel=\"sms\",transport=\"smpp\"} 1"),
        "{metrics}"
    );
    app.stop().await;
    smsc.stop().await;
}

/// `[messages] frequency_caps`: a marketing SMS over its number's cap waits
/// (reason `frequency_cap`, not a try) until the cap allows, on a driven
/// clock; a transactional one to the same number goes at once. The SMSC
/// (npm `smpp`) sees each submit once.
#[tokio::test]
async fn a_marketing_sms_over_its_cap_waits_and_a_transactional_one_does_not() {
    let mut smsc = Smsc::start(&[]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let start = chrono::Utc::now() + chrono::Duration::minutes(1);
    let (app, clock) = common::spawn_app_toml_at(
        Db::Sqlite,
        "[messages]\nfrequency_caps = { sms = [{ max = 1, per_days = 1 }] }\n",
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
        ],
        start,
    )
    .await
    .expect("sqlite");
    let mut events = stream(&app).await;
    let send = |body: &str, priority: &str| json!({"to": "+15551230001", "body": body, "priority": priority, "max_retries": 0});
    let first = app
        .post_ok(
            "/v1/sms",
            &send("Sale today", "marketing"),
            StatusCode::ACCEPTED,
        )
        .await;
    wait_message(&mut events, &id(&first), "delivered").await;
    let second = app
        .post_ok(
            "/v1/sms",
            &send("Sale tomorrow", "marketing"),
            StatusCode::ACCEPTED,
        )
        .await;
    let code = app
        .post_ok(
            "/v1/sms",
            &send("Code 1234", "transactional"),
            StatusCode::ACCEPTED,
        )
        .await;
    wait_message(&mut events, &id(&code), "delivered").await;
    // The second marketing message is held until a day after the first.
    let deadline = tokio::time::Instant::now() + WAIT;
    let held = loop {
        let m = expect_json(
            app.get(&format!("/v1/sms/{}", id(&second))).await,
            StatusCode::OK,
        )
        .await;
        if m["reason"] == "frequency_cap" {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "not held: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held["status"], "queued", "{held}");
    let sent_at = app
        .scalar(&format!(
            "SELECT sent_at FROM messages WHERE id = '{}'",
            id(&first)
        ))
        .await;
    let (due, tries) = (
        app.scalar(&format!(
            "SELECT due_at FROM messages WHERE id = '{}'",
            id(&second)
        ))
        .await,
        app.scalar(&format!(
            "SELECT tries FROM messages WHERE id = '{}'",
            id(&second)
        ))
        .await,
    );
    assert_eq!(due, sent_at + 86_400_000);
    assert_eq!(tries, 0, "held back is not a try");
    assert_eq!(smsc.wait_kind("submit_sm", 2, WAIT).await.len(), 2);
    // A day later it goes (its max_retries of 0 untouched by the hold).
    clock.advance(chrono::Duration::days(1));
    wait_message(&mut events, &id(&second), "delivered").await;
    let submits = smsc.wait_kind("submit_sm", 3, WAIT).await;
    assert_eq!(submits.len(), 3, "{submits:?}");
    app.stop().await;
}
