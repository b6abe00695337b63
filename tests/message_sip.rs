//! SMS as SIP MESSAGEs (`[channels.sms] transport = "sip"`) with SIPp as
//! the default trunk: an SMS posted to the API becomes one MESSAGE that SIPp
//! receives (its Request-URI, Content-Type, From and body checked by SIPp
//! and read back from its log), and the message's status follows SIPp's
//! answer: 200 → sent, 404 → failed with code 404, a 401 answered with the
//! trunk's credentials → sent. No sleeps: every wait reads the event stream
//! or SIPp's exit.

mod common;
mod sipp;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{app_for, expect_json, Db, TestApp};
use herald::sip::MessageResult;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::{SippExit, SippUas};
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

/// herald sending SMS as MESSAGEs through the default trunk, pointed at `uas`.
async fn app(uas: &SippUas, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("HERALD__CHANNELS__SMS__TRANSPORT", "sip")];
    settings.extend_from_slice(extra);
    app_for(Db::Sqlite, uas.addr, &settings)
        .await
        .expect("SQLite always runs")
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

/// Waits on the global stream until message `id` reaches `status`; the
/// statuses it went through.
async fn wait_message(s: &mut SseClient, id: &str, status: &str) -> Vec<String> {
    s.wait_message(id, status, WAIT).await
}

/// Posts an SMS to +15557654321 and waits for it to reach `status`; the
/// message as the API shows it then.
async fn send_sms(app: &TestApp, body: &str, status: &str) -> (Value, Vec<String>) {
    let mut events = stream(app).await;
    let m = app
        .post_ok(
            "/v1/sms",
            &json!({"to": "+15557654321", "body": body}),
            StatusCode::ACCEPTED,
        )
        .await;
    let id = m["id"].as_str().expect("id").to_string();
    let seen = wait_message(&mut events, &id, status).await;
    let m = expect_json(app.get(&format!("/v1/sms/{id}")).await, StatusCode::OK).await;
    (m, seen)
}

/// The values SIPp logged with `<log message="NAME:[$var]"/>` (SIPp
/// replaces `[$var]` with the value), in order.
fn logged(exit: &SippExit, name: &str) -> Vec<String> {
    let section = exit
        .logs
        .split("--- messages.log")
        .next()
        .unwrap_or_default();
    let prefix = format!("{name}:");
    section
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_goes_as_one_sip_message_and_a_200_makes_it_sent() {
    let uas = SippUas::start("uas_message.xml", 1, &[]).await;
    let app = app(&uas, &[]).await;
    let text = "Grüße: your visit is tomorrow at 10:00 €";
    let (m, seen) = send_sms(&app, text, "sent").await;
    assert_eq!(seen, ["queued", "sending", "sent"], "{m}");
    assert_eq!(m["provider_id"], Value::Null, "{m}");
    let attempts = m["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{m}");
    assert_eq!(attempts[0]["result"], "accepted", "{m}");
    assert_eq!(attempts[0]["code"], "200", "{m}");
    assert_eq!(attempts[0]["text"], "OK", "{m}");
    app.stop().await;

    let exit = uas.finish().await;
    exit.assert_success();
    // Exactly one MESSAGE reached SIPp, carrying the text byte for byte,
    // from the SMS channel's sender at the trunk's from_domain.
    assert_eq!(logged(&exit, "BODY"), [text], "{}", exit.logs);
    let from = logged(&exit, "FROM");
    assert_eq!(from.len(), 1, "{}", exit.logs);
    assert!(
        from[0].contains("<sip:+15550001111@herald.local>") && from[0].contains(";tag="),
        "{from:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_to_the_message_fails_the_sms_with_code_404() {
    let uas = SippUas::start("uas_message_404.xml", 1, &[]).await;
    let app = app(&uas, &[]).await;
    let (m, seen) = send_sms(&app, "Nobody home", "failed").await;
    assert_eq!(seen, ["queued", "sending", "failed"], "{m}");
    assert_eq!(m["reason"], "rejected", "{m}");
    let attempts = m["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{m}");
    assert_eq!(attempts[0]["result"], "failed", "{m}");
    assert_eq!(attempts[0]["code"], "404", "{m}");
    assert_eq!(attempts[0]["text"], "Not Found", "{m}");
    app.stop().await;
    uas.finish().await.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_to_the_message_is_answered_with_the_trunk_credentials() {
    let uas = SippUas::start("uas_message_auth.xml", 1, &[]).await;
    let app = app(
        &uas,
        &[
            ("HERALD__TRUNKS__DEFAULT__USERNAME", "herald-user"),
            ("HERALD__TRUNKS__DEFAULT__PASSWORD", "s3cret"),
        ],
    )
    .await;
    let (m, _) = send_sms(&app, "Authenticated", "sent").await;
    let attempts = m["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{m}");
    assert_eq!(attempts[0]["code"], "202", "{m}");
    app.stop().await;
    let exit = uas.finish().await;
    exit.assert_success();
    assert_eq!(logged(&exit, "RETRY").len(), 1, "{}", exit.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nobody_answers_is_retransmitted_then_times_out() {
    // A trunk that reads nothing and answers nothing.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("sip:{}", silent.local_addr().unwrap());
    let (cc, cancel) = sipp::herald::start(
        sipp::herald::trunk(&proxy, "", "", 1),
        sipp::herald::media_config(5),
    )
    .await;
    let started = std::time::Instant::now();
    let result = cc
        .send_message("sipp", None, "+15557654321", "Anyone there?")
        .await
        .expect("the MESSAGE is sent");
    assert_eq!(result, MessageResult::TimedOut);
    // Timer F (herald's 64*T1 is 8 s), after Timer E retransmissions of the
    // same request, all queued on the silent socket.
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = silent.try_recv_from(&mut buf) {
        sent.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(sent.len() >= 3, "{} MESSAGEs seen", sent.len());
    assert!(
        sent[0].starts_with("MESSAGE sip:+15557654321@"),
        "{}",
        sent[0]
    );
    assert!(sent[0].ends_with("\r\n\r\nAnyone there?"), "{}", sent[0]);
    assert!(
        sent.iter().all(|m| m == &sent[0]),
        "retransmissions differ: {sent:?}"
    );
    cancel.cancel();
    cc.stopped().await;
}
