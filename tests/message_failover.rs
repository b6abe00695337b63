//! Provider failover against real peers: two SMSCs (smsc.js on the npm
//! `smpp` package) where the first stops taking binds in the middle of a
//! 2,000-message send and comes back, and two SMTP relays where the first
//! refuses connections (the second is aiosmtpd).

mod common;
mod peers;
#[path = "peers/smsc.rs"]
mod smsc;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{expect_json, spawn_app_toml, Db, TestApp};
use futures::StreamExt;
use peers::SmtpSink;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smsc::Smsc;
use sse::SseClient;

const MESSAGES: usize = 2_000;
const WAIT: Duration = Duration::from_secs(90);

fn smsc_provider(name: &str, smsc: &Smsc) -> String {
    format!(
        "[[channels.sms.providers]]\nname = \"{name}\"\nsmpp_url = \"smpp://herald@127.0.0.1:{}\"\npassword = \"secret\"\n",
        smsc.port
    )
}

/// Posts one SMS per number; every POST must be accepted.
async fn post_sms(app: &TestApp, numbers: impl Iterator<Item = (usize, String)>) {
    let answers: Vec<u16> = futures::stream::iter(numbers)
        .map(|(i, to)| {
            let (c, url, key) = (app.client.clone(), app.url("/v1/sms"), app.key.clone());
            async move {
                c.post(url)
                    .header("x-api-key", key)
                    .json(&json!({"to": to, "body": format!("failover {i}")}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 202), "every POST is accepted");
}

/// Numbers ending 1..9: the SMSC reports them delivered.
fn number(i: usize) -> String {
    format!("+1555{:07}", 4_000_000 + i * 10 + 1 + i % 9)
}

/// Asks both SMSCs for their counters until `done` holds of them.
async fn wait_stats(
    a: &mut Smsc,
    b: &mut Smsc,
    what: &str,
    done: impl Fn(&Value, &Value) -> bool,
) -> (Value, Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (sa, sb) = (a.stats(WAIT).await, b.stats(WAIT).await);
        if done(&sa, &sb) {
            return (sa, sb);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}: first {sa}, second {sb}"
        );
        // Let the sends go on between two questions (the SMSCs answer at once).
        tokio::task::yield_now().await;
    }
}

/// Reads `channel.health` events until provider `name` turns `healthy`.
async fn wait_turn(s: &mut SseClient, name: &str, healthy: bool) -> Value {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let v = s.next(WAIT).await.expect("stream open").json();
            seen.push(v["data"].clone());
            if v["data"]["provider"] == name && v["data"]["healthy"] == healthy {
                return v;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{name} did not turn healthy={healthy}: {seen:?}"))
}

/// One channel's entry of `GET /v1/channels/capabilities`.
async fn capabilities(app: &TestApp, channel: &str) -> Value {
    let caps = expect_json(app.get("/v1/channels/capabilities").await, StatusCode::OK).await;
    caps["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} in {caps}"))
        .clone()
}

async fn providers_by_count(app: &TestApp) -> Vec<(Option<String>, i64)> {
    let db = sqlx::SqlitePool::connect(&app.db.url)
        .await
        .expect("the test database");
    sqlx::query_as("SELECT provider, COUNT(*) FROM messages GROUP BY provider ORDER BY provider")
        .fetch_all(&db)
        .await
        .expect("counting messages by provider")
}

#[tokio::test]
async fn sms_go_through_the_second_smsc_while_the_first_refuses_binds_and_return_to_it() {
    let mut a = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let mut b = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let toml = format!(
        "[messages]\nprovider_probe_ms = 200\nretry_base_ms = 200\n\n[channels.sms]\nmax_per_second = 200\n\n{}\n{}",
        smsc_provider("carrier-a", &a),
        smsc_provider("carrier-b", &b)
    );
    let app = spawn_app_toml(Db::Sqlite, &toml, &[])
        .await
        .expect("sqlite");
    let sms = capabilities(&app, "sms").await;
    assert_eq!(sms["transport"], "failover", "{sms}");
    let names: Vec<&str> = sms["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carrier-a", "carrier-b"]);
    let mut health = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=channel.health"),
        &app.key,
        None,
    )
    .await;

    let mut statuses = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status"),
        &app.key,
        None,
    )
    .await;
    // Mid-run (while the messages are still being posted, or after), the
    // first SMSC closes its session and refuses binds.
    let refuse = async {
        wait_stats(&mut a, &mut b, "300 SMS at the first SMSC", |sa, _| {
            sa["accepted"].as_u64().unwrap() >= 300
        })
        .await;
        a.refuse_binds(true).await;
    };
    tokio::join!(
        post_sms(&app, (0..MESSAGES).map(|i| (i, number(i)))),
        refuse
    );
    let down = wait_turn(&mut health, "carrier-a", false).await;
    assert_eq!(down["data"]["channel"], "sms", "{down}");
    assert_eq!(down["data"]["transport"], "smpp", "{down}");
    let (sa, sb) = wait_stats(&mut a, &mut b, "every SMS at one SMSC", |sa, sb| {
        sa["accepted"].as_u64().unwrap() + sb["accepted"].as_u64().unwrap() >= MESSAGES as u64
    })
    .await;
    let (at_a, at_b) = (
        sa["accepted"].as_u64().unwrap(),
        sb["accepted"].as_u64().unwrap(),
    );
    assert!(at_a >= 300 && at_a < MESSAGES as u64, "first: {sa}");
    assert!(at_b > 0, "second: {sb}");
    // Each message exactly once across both SMSCs.
    assert_eq!(at_a + at_b, MESSAGES as u64, "first {sa}, second {sb}");
    assert_eq!(
        sa["unique_bodies"].as_u64().unwrap() + sb["unique_bodies"].as_u64().unwrap(),
        MESSAGES as u64,
        "first {sa}, second {sb}"
    );
    // Each message names the provider that carried it (once herald has
    // recorded every send).
    let mut sent = std::collections::HashSet::new();
    while sent.len() < MESSAGES {
        let e = statuses.next(WAIT).await.expect("stream open").json();
        if e["data"]["status"] == "sent" {
            sent.insert(e["data"]["message_id"].to_string());
        }
    }
    let by = providers_by_count(&app).await;
    assert_eq!(
        by,
        [
            (Some("carrier-a".to_string()), at_a as i64),
            (Some("carrier-b".to_string()), at_b as i64)
        ]
    );
    // Marked down in capabilities and /metrics.
    let first = capabilities(&app, "sms").await["providers"][0].clone();
    assert_eq!(first["healthy"], false, "{first}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "herald_message_healthy{channel=\"sms\",provider=\"carrier-a\",transport=\"smpp\"} 0"
        ) && metrics.contains(
            "herald_message_healthy{channel=\"sms\",provider=\"carrier-b\",transport=\"smpp\"} 1"
        ),
        "{metrics}"
    );

    // The first takes binds again: herald binds, and sends go to it again.
    a.refuse_binds(false).await;
    wait_turn(&mut health, "carrier-a", true).await;
    post_sms(&app, (MESSAGES..MESSAGES + 10).map(|i| (i, number(i)))).await;
    let (sa2, sb2) = wait_stats(&mut a, &mut b, "ten more SMS", |sa2, sb2| {
        sa2["accepted"].as_u64().unwrap() + sb2["accepted"].as_u64().unwrap()
            >= MESSAGES as u64 + 10
    })
    .await;
    assert_eq!(sa2["accepted"].as_u64().unwrap(), at_a + 10, "{sa2}");
    assert_eq!(sb2["accepted"], sb["accepted"], "{sb2}");
    app.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn mail_goes_to_the_second_relay_when_the_first_refuses_connections() {
    let mut sink = SmtpSink::start().await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = format!(
        "[channels.email]\nfrom = \"Clinic <reminders@clinic.example>\"\n\n\
         [[channels.email.providers]]\nname = \"relay-a\"\nsmtp_url = \"smtp://127.0.0.1:{closed}\"\n\n\
         [[channels.email.providers]]\nname = \"relay-b\"\nsmtp_url = \"{}\"\n",
        sink.url()
    );
    let app = spawn_app_toml(Db::Sqlite, &toml, &[])
        .await
        .expect("sqlite");
    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status"),
        &app.key,
        None,
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = app
            .post_ok(
                "/v1/emails",
                &json!({"to": [{"email": format!("p{i}@example.com")}], "subject": "s", "body_text": "b"}),
                StatusCode::ACCEPTED,
            )
            .await;
        ids.push(m["id"].as_str().unwrap().to_string());
        let got = sink.next_message().await;
        assert_eq!(got.rcpt_tos, [format!("p{i}@example.com")]);
    }
    for id in &ids {
        events.wait_message(id, "sent", WAIT).await;
        let m = expect_json(app.get(&format!("/v1/emails/{id}")).await, StatusCode::OK).await;
        assert_eq!(m["provider"], "relay-b", "{m}");
        // One try: the refused connection sent nothing, the next relay took it.
        assert_eq!(m["tries"], 1, "{m}");
        assert_eq!(m["attempts"][0]["provider"], "relay-b", "{m}");
    }
    let email = capabilities(&app, "email").await;
    assert_eq!(email["providers"][0]["name"], "relay-a", "{email}");
    assert_eq!(email["providers"][0]["healthy"], false, "{email}");
    assert_eq!(email["providers"][1]["healthy"], true, "{email}");
    app.stop().await;
}
