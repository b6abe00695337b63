//! Conversations over SMPP against the npm `smpp` SMSC: a worker's first
//! message reaches the SMSC, the contact's reply (a mobile-originated
//! deliver_sm) reaches the worker's event stream, replies routed to anyone
//! reach the unassigned stream, STOP suppresses the number with one
//! confirmation, and idle conversations close themselves.

mod common;
mod sipp;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::time::{Duration, Instant};

use common::{expect_error, expect_json, id_of, spawn_app_with, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);
const OURS: &str = "15550009999";

async fn app_on(smsc: &Smsc, extra: &[(&str, &str)]) -> TestApp {
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let mut env = vec![
        ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
        ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
        ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
        ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(Db::Sqlite, &env, None)
        .await
        .expect("sqlite")
}

async fn stream(app: &TestApp, path: &str) -> SseClient {
    SseClient::connect(&app.client, &app.url(path), &app.key, None).await
}

/// The next event of `kind` on the stream.
async fn next_of(s: &mut SseClient, kind: &str) -> Value {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let v = s.next(WAIT).await.expect("stream open").json();
            if v["type"] == kind {
                return v;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {kind} event within {WAIT:?}"))
}

/// The next message from a contact on the stream.
async fn next_in(s: &mut SseClient) -> Value {
    loop {
        let m = next_of(s, "conversation.message").await;
        if m["data"]["direction"] == "in" {
            return m;
        }
    }
}

/// Waits for the SMSC's `n`th submit_sm and returns its text.
async fn submitted_text(smsc: &mut Smsc, n: usize) -> (String, String) {
    let submits = smsc.wait_kind("submit_sm", n, WAIT).await;
    let s = &submits[n - 1];
    let text =
        String::from_utf8(hex::decode(s["short_message_hex"].as_str().unwrap()).unwrap()).unwrap();
    (s["destination_addr"].as_str().unwrap().to_string(), text)
}

#[tokio::test]
async fn a_reply_comes_back_to_the_worker_who_started_the_conversation() {
    let mut smsc = Smsc::start(&[]).await;
    let app = app_on(&smsc, &[]).await;
    let mut alice = stream(&app, "/v1/workers/alice/events").await;
    let mut anyone = stream(&app, "/v1/conversations/unassigned/events").await;

    let c = app
        .post_ok(
            "/v1/conversations",
            &json!({"channel": "sms", "to": "+15551230001", "worker": "alice",
            "body": "Hi, this is Alice from the clinic. Can you confirm Tuesday?"}),
            StatusCode::CREATED,
        )
        .await;
    let cid = id_of(&c);
    assert_eq!(c["status"], "open");
    assert_eq!(c["from"], "+15550009999");
    let (to, text) = submitted_text(&mut smsc, 1).await;
    assert_eq!(to, "15551230001");
    assert!(text.starts_with("Hi, this is Alice"), "{text}");
    let opened = next_of(&mut alice, "conversation.opened").await;
    assert_eq!(opened["data"]["conversation_id"], cid.as_str());

    // One open conversation per channel and addresses.
    let e = expect_error(
        app.post(
            "/v1/conversations",
            &json!({"channel": "sms", "to": "+15551230001", "worker": "bob", "body": "x"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conversation_open",
        &cid,
    )
    .await;
    assert_eq!(e["error"]["details"]["conversation"]["worker"], "alice");

    // The contact answers: on Alice's stream within a second.
    let sent = Instant::now();
    smsc.mo("15551230001", OURS, "Yes, Tuesday works").await;
    let m = next_in(&mut alice).await;
    let took = sent.elapsed();
    assert_eq!(m["data"]["direction"], "in", "{m}");
    assert_eq!(m["data"]["body"], "Yes, Tuesday works");
    assert_eq!(m["data"]["conversation_id"], cid.as_str());
    assert!(took < Duration::from_secs(1), "the reply took {took:?}");

    // Alice answers on the conversation.
    let r = app
        .post_ok(
            &format!("/v1/conversations/{cid}/messages"),
            &json!({"body": "Great, see you then"}),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(r["seq"], 3);
    let (to, text) = submitted_text(&mut smsc, 2).await;
    assert_eq!(
        (to.as_str(), text.as_str()),
        ("15551230001", "Great, see you then")
    );
    let ms = expect_json(
        app.get(&format!("/v1/conversations/{cid}/messages")).await,
        StatusCode::OK,
    )
    .await;
    let dirs: Vec<&str> = ms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["out", "in", "out"], "{ms}");

    // Routed to anyone: Bob's conversation with route_replies any.
    let b = app
        .post_ok("/v1/conversations", &json!({"channel": "sms", "to": "+15551230002", "worker": "bob", "route_replies": "any", "body": "Hello from the front desk"}), StatusCode::CREATED)
        .await;
    submitted_text(&mut smsc, 3).await;
    smsc.mo("15551230002", OURS, "Who is this?").await;
    let m = next_in(&mut anyone).await;
    assert_eq!(m["data"]["conversation_id"], id_of(&b).as_str());
    assert_eq!(m["data"]["worker"], "bob");
    assert_eq!(m["data"]["body"], "Who is this?");
    // A number with no open conversation: to anyone too.
    smsc.mo("15551239999", OURS, "wrong number?").await;
    let m = next_in(&mut anyone).await;
    assert_eq!(m["data"]["conversation_id"], Value::Null);
    // A conversation's events name our address `from` and the contact's `to`.
    assert_eq!(m["data"]["to"], "+15551239999", "{m}");

    // STOP: suppressed, one confirmation, and nothing more goes.
    smsc.mo("15551230001", OURS, "stop").await;
    let m = next_in(&mut alice).await;
    assert_eq!(m["data"]["body"], "stop");
    let (to, text) = submitted_text(&mut smsc, 4).await;
    assert_eq!(to, "15551230001");
    assert!(text.contains("unsubscribed"), "{text}");
    let s = expect_json(
        app.get("/v1/suppressions/sms/+15551230001").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["reason"], "stop_keyword");
    let r = app
        .post_ok(
            &format!("/v1/conversations/{cid}/messages"),
            &json!({"body": "Sorry to see you go"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let mut events = stream(&app, "/v1/events?types=message.status&after=0").await;
    events
        .wait_message(r["message_id"].as_str().unwrap(), "failed", WAIT)
        .await;
    let msg = expect_json(
        app.get(&format!("/v1/sms/{}", r["message_id"].as_str().unwrap()))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(msg["reason"], "suppressed", "{msg}");

    // Closed: no more replies on it; a new one may open.
    let closed = app
        .post_ok(
            &format!("/v1/conversations/{cid}/close"),
            &json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(closed["status"], "closed");
    expect_error(
        app.post(
            &format!("/v1/conversations/{cid}/messages"),
            &json!({"body": "x"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conversation_closed",
        &cid,
    )
    .await;
    let l = expect_json(
        app.get("/v1/conversations?worker=alice&status=closed")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1, "{l}");
    app.stop().await;
    smsc.stop().await;
}

#[tokio::test]
async fn an_idle_conversation_closes_itself() {
    let smsc = Smsc::start(&[]).await;
    let app = app_on(&smsc, &[("HERALD__CONVERSATIONS__IDLE_CLOSE_S", "1")]).await;
    let mut carol = stream(&app, "/v1/workers/carol/events").await;
    let c = app
        .post_ok("/v1/conversations", &json!({"channel": "sms", "to": "+15551230005", "worker": "carol", "body": "Quick question"}), StatusCode::CREATED)
        .await;
    let closed = next_of(&mut carol, "conversation.closed").await;
    assert_eq!(closed["data"]["conversation_id"], id_of(&c).as_str());
    assert_eq!(closed["data"]["reason"], "idle");
    let c = expect_json(
        app.get(&format!("/v1/conversations/{}", id_of(&c))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(c["status"], "closed");
    app.stop().await;
    smsc.stop().await;
}

/// One MESSAGE from a SIPp phone (`from_user` → `to_user`) to herald; SIPp's exit.
async fn sipp_reply(
    herald: std::net::SocketAddr,
    from_user: &str,
    to_user: &str,
    text: &str,
) -> sipp::SippExit {
    sipp::ensure_sipp();
    let port = sipp::free_udp_port();
    let out = tokio::process::Command::new("timeout")
        .args([
            "30",
            "sipp",
            "-sf",
            "scenarios/uac_message_reply.xml",
            &herald.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-key",
            "from_user",
            from_user,
            "-key",
            "to_user",
            to_user,
            "-key",
            "reply",
            text,
        ])
        .current_dir(sipp::crate_root())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running sipp");
    sipp::SippExit {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        logs: String::new(),
    }
}

#[tokio::test]
async fn over_sip_message_the_phones_reply_reaches_the_worker() {
    // The worker's SMS go as SIP MESSAGE to a SIPp UAS (the phone); it
    // answers with MESSAGEs of its own from a SIPp UAC.
    let uas = sipp::SippUas::start("uas_message.xml", 2, &[]).await;
    let proxy = format!("sip:{}", uas.addr);
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy.as_str()),
            ("HERALD__CHANNELS__SMS__TRANSPORT", "sip"),
            ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
        ],
        None,
    )
    .await
    .expect("sqlite");
    let mut dana = stream(&app, "/v1/workers/dana/events").await;
    let c = app
        .post_ok("/v1/conversations", &json!({"channel": "sms", "to": "+15557654321", "worker": "dana", "body": "Your results are ready"}), StatusCode::CREATED)
        .await;
    let herald = app.sip_addr().expect("herald's SIP address");
    let exit = sipp_reply(herald, "15557654321", OURS, "Thank you").await;
    exit.assert_success();
    let m = next_in(&mut dana).await;
    assert_eq!(m["data"]["conversation_id"], id_of(&c).as_str());
    assert_eq!(m["data"]["body"], "Thank you");
    // STOP over SIP: suppressed too.
    sipp_reply(herald, "15557654321", OURS, "STOP")
        .await
        .assert_success();
    let m = next_in(&mut dana).await;
    assert_eq!(m["data"]["body"], "STOP");
    let s = expect_json(
        app.get("/v1/suppressions/sms/+15557654321").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["reason"], "stop_keyword");
    // The two MESSAGEs the phone got: the worker's, and STOP's one confirmation.
    let exit = uas.finish().await;
    exit.assert_success();
    assert!(
        exit.logs.contains("BODY:Your results are ready"),
        "{}",
        exit.logs
    );
    assert!(exit.logs.contains("unsubscribed"), "{}", exit.logs);
    app.stop().await;
}
