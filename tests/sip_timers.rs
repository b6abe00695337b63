//! Session timers (RFC 4028) against SIPp callees, in fast time (a 2 s
//! session): herald offers them on the INVITE, refreshes with UPDATE within
//! each interval, hangs up when a refresh is answered 481, and asks again
//! with the callee's Min-SE after a 422. SIPp checks every header; its exit
//! code is the verdict on herald's side of each exchange.

mod common;
mod sipp;

use common::{app_for, expect_json, wait_call_final, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::SippUas;

/// One call to the SIPp callee with `script` as the agent; the call at its end.
async fn call(app: &TestApp, script: Value) -> Value {
    let agent = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "a", "kind": "script", "script": script}),
            StatusCode::CREATED,
        )
        .await;
    let mut rx = app.events().subscribe();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557650020", "agent_id": agent["id"]}),
            StatusCode::CREATED,
        )
        .await;
    let id = common::id_of(&call);
    wait_call_final(&mut rx, &id).await;
    expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await
}

/// Waits for a key that never comes: the call lasts until the callee or
/// the session timer ends it.
fn waits() -> Value {
    json!({"start": "wait", "steps": {
        "wait": {"gather": {"max_digits": 1, "timeout_ms": 60000}, "on": {"1": "done"}, "timeout": "done"},
        "done": {"result": "completed"}}})
}

const FAST: [(&str, &str); 2] = [
    ("HERALD__SIP__SESSION_EXPIRES_S", "2"),
    ("HERALD__SIP__MIN_SE_S", "1"),
];

#[tokio::test]
async fn herald_refreshes_the_session_before_each_interval_ends() {
    let uas = SippUas::start("uas_session_timer.xml", 1, &["-recv_timeout", "20s"]).await;
    let app = app_for(Db::Sqlite, uas.addr, &FAST).await.expect("sqlite");
    let c = call(&app, waits()).await;
    uas.finish().await.assert_success();
    assert_eq!(c["outcome"], "answered", "{c}");
    assert_eq!(c["hangup_by"], "callee", "{c}");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_refresh_ends_the_call_with_bye() {
    let uas = SippUas::start("uas_session_timer_481.xml", 1, &["-recv_timeout", "20s"]).await;
    let app = app_for(Db::Sqlite, uas.addr, &FAST).await.expect("sqlite");
    let c = call(&app, waits()).await;
    uas.finish().await.assert_success();
    assert_eq!(c["outcome"], "answered", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(reason.contains("session refresh failed: 481"), "{reason}");
    app.stop().await;
}

#[tokio::test]
async fn a_422_is_asked_again_with_the_callees_min_se() {
    let uas = SippUas::start("uas_session_timer_422.xml", 1, &["-recv_timeout", "20s"]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[]).await.expect("sqlite");
    let c = call(&app, common::hang_up_script()).await;
    uas.finish().await.assert_success();
    assert_eq!(c["outcome"], "answered", "{c}");
    app.stop().await;
}

#[tokio::test]
async fn the_callee_refreshes_and_when_it_stops_herald_hangs_up_before_expiry() {
    let uas = SippUas::start(
        "uas_session_timer_uas_refresher.xml",
        1,
        &["-recv_timeout", "20s"],
    )
    .await;
    let app = app_for(Db::Sqlite, uas.addr, &FAST).await.expect("sqlite");
    let c = call(&app, waits()).await;
    uas.finish().await.assert_success();
    assert_eq!(c["outcome"], "answered", "{c}");
    assert_eq!(c["hangup_by"], "timeout", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("session expired"),
        "{c}"
    );
    app.stop().await;
}
