//! A callee's re-INVITEs move herald's media: SIPp answers, streams a voice,
//! then re-INVITEs to a new port, puts the call on hold (`a=inactive`, its
//! own RTP paused longer than herald's inactivity timeout), and resumes on a
//! third port in PCMA (`scenarios/uas_reinvite_hold.xml`). The test listens
//! on the three ports itself: herald's RTP goes to each in turn, none while
//! held, PCMA after the switch; the call is not hung up for the silence of
//! the hold.

mod common;
mod sipp;

use std::sync::{Arc, Mutex};

use common::{app_for, expect_json, wait_call_final, Db};
use reqwest::StatusCode;
use serde_json::json;
use sipp::{crate_root, SippUas};
use tokio::net::UdpSocket;

/// Payload types of the RTP packets one port received, in order.
type Seen = Arc<Mutex<Vec<u8>>>;

async fn listener() -> (u16, Seen, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf).await {
            if n >= 12 && buf[0] >> 6 == 2 {
                into.lock().unwrap().push(buf[1] & 0x7f);
            }
        }
    });
    (port, seen, task)
}

#[tokio::test]
async fn media_follows_re_invites_to_new_ports_and_codecs_and_holds_without_hanging_up() {
    let (moved, moved_seen, t1) = listener().await;
    let (held, held_seen, t2) = listener().await;
    let (resumed, resumed_seen, t3) = listener().await;
    let template = std::fs::read_to_string(crate_root().join("scenarios/uas_reinvite_hold.xml"))
        .unwrap()
        .replace("PORT_MOVED", &moved.to_string())
        .replace("PORT_HELD", &held.to_string())
        .replace("PORT_RESUMED", &resumed.to_string());
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("reinvite.xml");
    std::fs::write(&scenario, template).unwrap();
    let uas = SippUas::start(scenario.to_str().unwrap(), 1, &["-recv_timeout", "30s"]).await;
    // A second without RTP is inactivity, except on hold.
    let app = app_for(
        Db::Sqlite,
        uas.addr,
        &[("HERALD__MEDIA__RTP_INACTIVITY_TIMEOUT_S", "1")],
    )
    .await
    .expect("sqlite app");
    // An agent that waits for a key that never comes: the callee hangs up.
    let agent = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "waits", "kind": "script", "script": {"start": "wait", "steps": {
                "wait": {"gather": {"max_digits": 1, "timeout_ms": 60000}, "on": {"1": "done"}, "timeout": "done"},
                "done": {"result": "completed"}}}}),
            StatusCode::CREATED,
        )
        .await;
    let mut rx = app.events().subscribe();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557650010", "agent_id": agent["id"]}),
            StatusCode::CREATED,
        )
        .await;
    let id = common::id_of(&call);
    wait_call_final(&mut rx, &id).await;
    let exit = uas.finish().await;
    exit.assert_success();
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["outcome"], "answered", "{c}");
    assert_eq!(
        c["hangup_by"], "callee",
        "not hung up for the hold's silence: {c}"
    );
    let (moved_pts, held_pts, resumed_pts) = (
        moved_seen.lock().unwrap().clone(),
        held_seen.lock().unwrap().clone(),
        resumed_seen.lock().unwrap().clone(),
    );
    // About a second at each port it was sent to (50 packets a second).
    assert!(
        moved_pts.len() >= 25,
        "{} packets after the move",
        moved_pts.len()
    );
    assert!(moved_pts.iter().all(|pt| *pt == 0), "PCMU after the move");
    assert!(
        held_pts.is_empty(),
        "{} packets sent on hold",
        held_pts.len()
    );
    assert!(
        resumed_pts.len() >= 25,
        "{} packets after the resume",
        resumed_pts.len()
    );
    assert!(
        resumed_pts.iter().all(|pt| *pt == 8),
        "PCMA after the switch: {resumed_pts:?}"
    );
    for t in [t1, t2, t3] {
        t.abort();
    }
    app.stop().await;
}
