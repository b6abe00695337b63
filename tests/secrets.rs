//! Secrets stay secret: herald runs as its binary with JSON logs at debug
//! level and every kind of secret configured (the bootstrap key, a trunk
//! password, SMTP and SMPP passwords, WhatsApp's token, app secret and
//! verify token, Slack's token); a walkthrough creates a key, a
//! webhook with its signing secret, a list, a campaign it runs, and sends
//! e-mail, SMS and WhatsApp messages (whose peers refuse the connection, so
//! the errors are logged); then every log line and every API response
//! (but the one that creates the key, which shows it once) is searched for
//! every secret: none appears.

#[path = "common/sse.rs"]
mod sse;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

struct Herald(Child);
impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn no_secret_or_key_appears_in_a_log_line_or_an_api_response() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let secrets = [
        "bootstrap-key-5f1c0d9e7a",
        "trunk-pass-8c2b4e6f1d",
        "smtp-pass-3a9d7c5e2b",
        "smpp-pw-71e3",
        "wa-verify-4b8f2a6c",
        "wa-token-9e1d3c7b5a",
        "wa-app-secret-2f6a8d4c",
        "xoxb-slack-6d2c9a1e7f",
        "whsec-signing-0b7e5d3a1c9f",
    ];
    let smtp_url = format!("smtp://127.0.0.1:{closed}");
    let smpp_url = format!("smpp://herald@127.0.0.1:{closed}");
    let wa_base = format!("http://127.0.0.1:{closed}");
    // A stored key, made as an operator does (printed once, by the CLI).
    let made = Command::new(BIN)
        .current_dir(dir.path())
        .args(["apikey", "create", "--name", "ops"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let new_key = Some(String::from_utf8(made.stdout).unwrap().trim().to_string());
    let log_path = dir.path().join("herald.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .arg("serve")
        .env_remove("RUST_LOG")
        .env("HERALD__API__LISTEN", "127.0.0.1:0")
        .env("HERALD__LOG__FORMAT", "json")
        .env("HERALD__LOG__LEVEL", "debug")
        .env("HERALD_BOOTSTRAP_API_KEY", secrets[0])
        .env("HERALD__TRUNKS__DEFAULT__USERNAME", "herald")
        .env("HERALD__TRUNKS__DEFAULT__PASSWORD", secrets[1])
        .env("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp")
        .env("HERALD__CHANNELS__EMAIL__SMTP_URL", &smtp_url)
        .env("HERALD__CHANNELS__EMAIL__USERNAME", "mailer")
        .env("HERALD__CHANNELS__EMAIL__PASSWORD", secrets[2])
        .env(
            "HERALD__CHANNELS__EMAIL__FROM",
            "Clinic <clinic@example.org>",
        )
        .env("HERALD__CHANNELS__SMS__TRANSPORT", "smpp")
        .env("HERALD__CHANNELS__SMS__SMPP_URL", &smpp_url)
        .env("HERALD__CHANNELS__SMS__PASSWORD", secrets[3])
        .env("HERALD__CHANNELS__WHATSAPP__BASE_URL", &wa_base)
        .env("HERALD__CHANNELS__WHATSAPP__PHONE_NUMBER_ID", "1234567890")
        .env("HERALD__CHANNELS__WHATSAPP__TOKEN", secrets[5])
        .env("HERALD__CHANNELS__WHATSAPP__APP_SECRET", secrets[6])
        .env("HERALD__CHANNELS__WHATSAPP__VERIFY_TOKEN", secrets[4])
        .env("HERALD__CHANNELS__SLACK__BASE_URL", &wa_base)
        .env("HERALD__CHANNELS__SLACK__BOT_TOKEN", secrets[7])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let herald = Herald(child);
    let mut line = String::new();
    let mut out = BufReader::new(stdout);
    out.read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");

    let c = reqwest::Client::new();
    let mut bodies: Vec<(String, String)> = Vec::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = c
            .request(method, format!("{base}{path}"))
            .header("x-api-key", secrets[0]);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    macro_rules! keep {
        ($what:expr, $r:expr) => {{
            let r = $r.await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            bodies.push(($what.to_string(), text.clone()));
            assert!(status.as_u16() < 500, "{}: {status} {text}", $what);
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
        }};
    }
    use reqwest::Method as M;

    keep!(
        "webhook",
        call(
            M::POST,
            "/v1/webhooks",
            Some(
                json!({"url": format!("http://127.0.0.1:{closed}/hook"), "secret": secrets[8],
                        "event_types": ["campaign.status", "attempt.ended"]})
            )
        )
    );
    keep!("webhooks", call(M::GET, "/v1/webhooks", None));
    let od = keep!(
        "outdial",
        call(M::POST, "/v1/outdials", Some(json!({"name": "l"})))
    );
    let od = od["id"].as_str().unwrap().to_string();
    keep!(
        "targets",
        call(
            M::POST,
            &format!("/v1/outdials/{od}/targets"),
            Some(
                json!({"targets": [{"destinations": [{"type": "tel", "target": "+15550101001"}]},
                                    {"destinations": [{"type": "tel", "target": "+15550101002"}]}]})
            )
        )
    );
    let op = keep!(
        "outplan",
        call(
            M::POST,
            "/v1/outplans",
            Some(json!({"name": "p", "try_count_max": 1}))
        )
    );
    let ag = keep!(
        "agent",
        call(
            M::POST,
            "/v1/agents",
            Some(json!({"name": "a", "kind": "script",
                        "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}}))
        )
    );
    let camp = keep!(
        "campaign",
        call(
            M::POST,
            "/v1/campaigns",
            Some(
                json!({"name": "c", "outdial_id": od, "outplan_id": op["id"], "agent_id": ag["id"]})
            )
        )
    );
    let id = camp["id"].as_str().unwrap().to_string();
    // The event streams are answers too: they are read to the end of the
    // walkthrough and searched like the rest.
    let mut campaign_events = sse::SseClient::connect(
        &c,
        &format!("{base}/v1/campaigns/{id}/events"),
        secrets[0],
        None,
    )
    .await;
    let mut message_events = sse::SseClient::connect(
        &c,
        &format!("{base}/v1/events?types=message.status"),
        secrets[0],
        None,
    )
    .await;
    keep!(
        "start",
        call(M::POST, &format!("/v1/campaigns/{id}/start"), None)
    );
    let email = keep!(
        "email",
        call(
            M::POST,
            "/v1/emails",
            Some(
                json!({"to": [{"email": "a@example.org"}], "subject": "s", "body_text": "t", "max_retries": 0})
            )
        )
    );
    let sms = keep!(
        "sms",
        call(
            M::POST,
            "/v1/sms",
            Some(json!({"to": "+15550101003", "body": "hi", "max_retries": 0}))
        )
    );
    keep!(
        "template",
        call(
            M::POST,
            "/v1/templates",
            Some(
                json!({"code": "hello-wa", "name": "Hello", "channel": "whatsapp",
                        "provider_template": {"name": "hello", "language": "en_US"}})
            )
        )
    );
    let t = keep!(
        "template by code",
        call(M::GET, "/v1/templates/by-code/hello-wa", None)
    );
    let tid = t["id"].as_str().unwrap().to_string();
    keep!(
        "activate",
        call(M::POST, &format!("/v1/templates/{tid}/activate"), None)
    );
    let wa = keep!(
        "whatsapp",
        call(
            M::POST,
            "/v1/whatsapp",
            Some(json!({"to": "+15550101004", "template_id": "hello-wa", "max_retries": 0}))
        )
    );
    // Until the campaign finished and each message failed (its peer refused
    // it, with no retry), as the event streams tell.
    let wait = Duration::from_secs(60);
    loop {
        let m = campaign_events
            .next(wait)
            .await
            .expect("the campaign's stream ended");
        bodies.push(("campaign events".into(), m.data.clone()));
        let e = m.json();
        if e["type"] == "campaign.status" && e["data"]["to"] == "finished" {
            break;
        }
    }
    let mut unsettled: std::collections::BTreeSet<String> = [&email, &sms, &wa]
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        unsettled.len(),
        3,
        "three messages accepted: {email} {sms} {wa}"
    );
    while !unsettled.is_empty() {
        let m = message_events
            .next(wait)
            .await
            .expect("the global stream ended");
        bodies.push(("message events".into(), m.data.clone()));
        let e = m.json();
        if !["queued", "sending"].contains(&e["data"]["status"].as_str().unwrap_or("")) {
            unsettled.remove(e["data"]["message_id"].as_str().unwrap_or(""));
        }
    }
    drop((campaign_events, message_events));
    keep!(
        "stats",
        call(M::GET, &format!("/v1/campaigns/{id}/stats"), None)
    );
    keep!("calls", call(M::GET, "/v1/calls", None));
    keep!("messages", call(M::GET, "/v1/sms", None));
    keep!("metrics", call(M::GET, "/metrics", None));
    keep!(
        "bad key",
        c.get(format!("{base}/v1/outdials"))
            .header("x-api-key", secrets[1])
            .send()
    );
    if let Some(k) = &new_key {
        keep!(
            "with the new key",
            c.get(format!("{base}/v1/outdials"))
                .header("x-api-key", k)
                .send()
        );
    }
    drop(herald);

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.lines().count() > 20, "debug logs were written: {logs}");
    assert!(
        logs.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('{')),
        "JSON logs"
    );
    let mut searched: Vec<&str> = secrets.to_vec();
    if let Some(k) = &new_key {
        searched.push(k);
    }
    for s in searched {
        for (n, l) in logs.lines().enumerate() {
            assert!(!l.contains(s), "secret {s} in log line {n}: {l}");
        }
        for (what, body) in &bodies {
            assert!(
                !body.contains(s),
                "secret {s} in the response to {what}: {body}"
            );
        }
    }
}
