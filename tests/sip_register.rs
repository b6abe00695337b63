//! Trunk registration against SIPp as the registrar
//! (`scenarios/uas_registrar.xml`): a 401 challenge answered with the
//! trunk's MD5 credentials (verified by SIPp), a 2 s grant refreshed in time,
//! a 503 retried after the backoff, and the unregistering REGISTER at
//! shutdown; a campaign on a trunk whose registrar never answers waits with
//! `trunk_unregistered`. `GET /v1/trunks` and `/metrics` say where each
//! registration stands, and never the password.

mod common;
mod sipp;

use std::time::Duration;

use common::{expect_json, wait_status, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::SippUas;

async fn trunk(app: &TestApp, name: &str) -> Value {
    let all = expect_json(app.get("/v1/trunks").await, StatusCode::OK).await;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no trunk {name}: {all}"))
}

/// Polls `carrier`'s registration until `done` says so; returns it.
async fn until(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let t = trunk(app, "carrier").await;
        if done(&t["registration"]) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_trunk_registers_refreshes_recovers_from_a_503_and_unregisters() {
    let registrar = SippUas::start("uas_registrar.xml", 1, &["-recv_timeout", "30s"]).await;
    // Nothing answers at this address: its trunk never registers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let toml = format!(
        "[trunks.carrier]\nproxy = \"sip:{reg}\"\ntransport = \"udp\"\nfrom_user = \"herald-user\"\n\
         from_domain = \"herald.test\"\ncaller_id = \"+15550001111\"\nusername = \"herald-user\"\n\
         password = \"s3cret\"\npassword_env = \"\"\nmax_concurrent_calls = 10\nmax_calls_per_second = 10\n\
         register = true\nregister_expires_s = 3600\n\n\
         [trunks.silent]\nproxy = \"sip:{dead}\"\ntransport = \"udp\"\nfrom_user = \"x\"\n\
         from_domain = \"herald.test\"\ncaller_id = \"+15550001111\"\nusername = \"x\"\n\
         password = \"y\"\npassword_env = \"\"\nmax_concurrent_calls = 10\nmax_calls_per_second = 10\n\
         register = true\n",
        reg = registrar.addr,
        dead = silent.local_addr().unwrap(),
    );
    let Some(app) = common::spawn_app_toml(Db::Sqlite, &toml, &[]).await else {
        return;
    };
    // Registered with the 2 s the registrar granted.
    let first = until(&app, "registered", |r| r["state"] == "registered").await;
    let expires: chrono::DateTime<chrono::Utc> = first["registration"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = expires - chrono::Utc::now();
    assert!(left <= chrono::Duration::seconds(2), "{first}");
    assert_eq!(first["register"], true);
    assert_eq!(first["has_credentials"], true);
    assert!(!first.to_string().contains("s3cret"), "{first}");
    // The refresh met the 503: failed, with the registrar's answer …
    let failed = until(&app, "the 503", |r| r["state"] == "failed").await;
    assert_eq!(
        failed["registration"]["error"], "503 Service Unavailable",
        "{failed}"
    );
    // … and registered again after the backoff, for an hour this time.
    let again = until(&app, "registered again", |r| {
        r["state"] == "registered"
            && r["expires_at"].as_str().is_some_and(|e| {
                e.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
                    > chrono::Utc::now() + chrono::Duration::minutes(59)
            })
    })
    .await;
    assert_eq!(again["registration"]["error"], Value::Null, "{again}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("herald_trunk_registered{trunk=\"carrier\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_trunk_registered{trunk=\"silent\"} 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("s3cret"));

    // A campaign on the trunk that never registered waits, and says why.
    let od = common::id_of(
        &app.post_ok("/v1/outdials", &json!({"name": "l"}), StatusCode::CREATED)
            .await,
    );
    app.post_ok(
        &format!("/v1/outdials/{od}/targets"),
        &json!({"destinations": [{"type": "tel", "target": "+15557650001"}]}),
        StatusCode::CREATED,
    )
    .await;
    let op = common::id_of(
        &app.post_ok("/v1/outplans", &json!({"name": "p"}), StatusCode::CREATED)
            .await,
    );
    let ag = common::id_of(
        &app.post_ok(
            "/v1/agents",
            &json!({"name": "bot", "kind": "script", "script": common::hang_up_script()}),
            StatusCode::CREATED,
        )
        .await,
    );
    let c = common::id_of(
        &app.post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "trunk": "silent", "agent_id": ag}),
            StatusCode::CREATED,
        )
        .await,
    );
    // A one-off call on the same trunk waits too: no INVITE reaches it.
    let one_off = common::id_of(
        &app.post_ok(
            "/v1/calls",
            &json!({"to": "+15557770002", "trunk": "silent", "agent_id": ag}),
            StatusCode::CREATED,
        )
        .await,
    );
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "waiting", Duration::from_secs(20)).await;
    let shown = expect_json(app.get(&format!("/v1/campaigns/{c}")).await, StatusCode::OK).await;
    assert!(
        shown["status_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("trunk_unregistered: silent"),
        "{shown}"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await,
        0
    );
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut registers = 0;
    while let Ok(n) = silent.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.starts_with("INVITE"), "a call went out: {text}");
        registers += usize::from(text.starts_with("REGISTER"));
    }
    assert!(
        registers >= 1,
        "the silent trunk was never asked to register"
    );
    let call = expect_json(
        app.get(&format!("/v1/calls/{one_off}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        call["status"] != "failed" && call["status"] != "completed",
        "{call}"
    );
    // Shutdown unregisters (the registrar's last step: Expires: 0, verified).
    app.stop().await;
    registrar.finish().await.assert_success();
}

#[tokio::test]
async fn a_sha256_registrar_gets_sha256_answers_on_register_and_unregister() {
    let registrar = SippUas::start("uas_registrar_sha256.xml", 1, &["-recv_timeout", "30s"]).await;
    let toml = format!(
        "[trunks.carrier]\nproxy = \"sip:{reg}\"\ntransport = \"udp\"\nfrom_user = \"herald-user\"\n\
         from_domain = \"herald.test\"\ncaller_id = \"+15550001111\"\nusername = \"herald-user\"\n\
         password = \"s3cret\"\npassword_env = \"\"\nmax_concurrent_calls = 10\nmax_calls_per_second = 10\n\
         register = true\n",
        reg = registrar.addr,
    );
    let Some(app) = common::spawn_app_toml(Db::Sqlite, &toml, &[]).await else {
        return;
    };
    until(&app, "registered", |r| r["state"] == "registered").await;
    app.stop().await;
    registrar.finish().await.assert_success();
}
