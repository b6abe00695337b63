//! SIP agents: SIPp callee ↔ herald ↔ SIPp agent. The agent leg carries the
//! target's variables as `X-Herald-*` headers; audio and key presses cross
//! the bridge both ways (checked on the wire with a loopback capture); either
//! side hanging up ends both.

mod common;
mod sipp;

use std::time::Duration;

use common::capture::{flows_carrying, Capture, Payloads};
use common::{id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use sipp::{SippExit, SippUas};

/// A one-target campaign dialing `callee`, bridged to the SIP agent `agent`.
async fn bridge_campaign(app: &TestApp, callee: &str, agent: &str) -> String {
    let od = id_of(
        &app.post_ok("/v1/outdials", &json!({"name": "l"}), StatusCode::CREATED)
            .await,
    );
    app.post_ok(
        &format!("/v1/outdials/{od}/targets"),
        &json!({"targets": [{"destinations": [{"type": "sip", "target": callee}], "variables": {"name": "Ada"}}]}),
        StatusCode::OK,
    )
    .await;
    let op = id_of(
        &app.post_ok(
            "/v1/outplans",
            &json!({"name": "p", "try_count_max": 1, "dial_timeout_s": 10}),
            StatusCode::CREATED,
        )
        .await,
    );
    let ag = id_of(
        &app.post_ok(
            "/v1/agents",
            &json!({"name": "desk", "kind": "sip", "url": agent, "parameters": {"queue": "reminders"}}),
            StatusCode::CREATED,
        )
        .await,
    );
    let c = id_of(
        &app.post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag}),
            StatusCode::CREATED,
        )
        .await,
    );
    app.campaign_verb(&c, "start", json!({})).await;
    c
}

async fn wait_finished(app: &TestApp, c: &str) {
    let mut rx = app.events().subscribe();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let open = app
                .scalar(&format!(
                    "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND ended_at IS NULL"
                ))
                .await;
            let all = app
                .scalar(&format!(
                    "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
                ))
                .await;
            if all > 0 && open == 0 {
                return;
            }
            let _ = rx.recv().await;
        }
    })
    .await;
    assert!(done.is_ok(), "the bridged call did not end in time");
}

fn assert_sipp_ok(who: &str, exit: &SippExit) {
    assert_eq!(
        exit.code,
        Some(0),
        "{who} SIPp failed:\n{}\n{}",
        exit.stdout,
        exit.logs
    );
}

/// Whether herald relayed `received` to the peer that sent `sent`: a flow
/// from one of herald's RTP ports carries `received` to the port from which
/// a flow not from herald carries `sent`.
fn relayed_to_sender_of(p: &Payloads, sent: &[u8], received: &[u8]) -> bool {
    let media = common::test_config("sqlite::memory:", &[]).media;
    let herald = |port: &u16| (media.rtp_port_min..=media.rtp_port_max).contains(port);
    let peers: Vec<u16> = flows_carrying(p, sent)
        .into_iter()
        .filter(|(src, _)| !herald(src))
        .map(|(src, _)| src)
        .collect();
    flows_carrying(p, received)
        .iter()
        .any(|(src, dst)| herald(src) && peers.contains(dst))
}

/// The callee streams a voice, the agent a tone; each hears the other's
/// audio byte for byte. The agent hangs up after 3 s and herald hangs up the
/// callee (whose scenario waits for that BYE).
async fn audio_crosses_the_bridge_both_ways(db: Db) {
    let callee = SippUas::start("uas_stream_voice.xml", 1, &[]).await;
    let agent = SippUas::start("uas_agent_tone_then_bye.xml", 1, &[]).await;
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let capture = Capture::start();
    let c = bridge_campaign(&app, &callee.uri(), &agent.uri()).await;
    wait_finished(&app, &c).await;
    let agent_exit = agent.finish().await;
    let callee_exit = callee.finish().await;
    let seen = capture.finish();
    assert_sipp_ok("agent", &agent_exit);
    assert_sipp_ok("callee", &callee_exit);

    let root = sipp::crate_root().join("scenarios/audio");
    let voice = std::fs::read(root.join("voice_2s.ulaw")).unwrap();
    let tone = std::fs::read(root.join("tone440_1s.ulaw")).unwrap();
    // 60 ms of each, from well inside the files.
    let (voice, tone) = (&voice[3200..3680], &tone[1600..2080]);
    assert!(
        relayed_to_sender_of(&seen, tone, voice),
        "the agent never received the callee's voice; flows with voice: {:?}, with tone: {:?}",
        flows_carrying(&seen, voice),
        flows_carrying(&seen, tone)
    );
    assert!(
        relayed_to_sender_of(&seen, voice, tone),
        "the callee never received the agent's tone; flows with voice: {:?}, with tone: {:?}",
        flows_carrying(&seen, voice),
        flows_carrying(&seen, tone)
    );
    let row = app
        .rows(&format!(
            "SELECT outcome, hangup_by FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert_eq!(row[0][0].as_deref(), Some("answered"), "{row:?}");
    assert_eq!(
        row[0][1].as_deref(),
        Some("herald"),
        "herald hung up the callee after the agent left: {row:?}"
    );
    app.stop().await;
}

on_both_backends!(audio_both_ways, audio_crosses_the_bridge_both_ways);

/// The callee presses 1 and hangs up: the agent receives the key press as
/// RFC 4733 events, and herald hangs up the agent leg (its scenario waits
/// for that BYE).
#[tokio::test]
async fn key_presses_cross_the_bridge_and_the_callee_hanging_up_ends_both() {
    let callee = SippUas::start("uas_dtmf_then_bye.xml", 1, &[]).await;
    let agent = SippUas::start("uas_agent_answer_dtmf.xml", 1, &[]).await;
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let capture = Capture::start();
    let c = bridge_campaign(&app, &callee.uri(), &agent.uri()).await;
    wait_finished(&app, &c).await;
    let agent_port = agent.media_port;
    let agent_exit = agent.finish().await;
    let callee_exit = callee.finish().await;
    let seen = capture.finish();
    assert_sipp_ok("callee", &callee_exit);
    assert_sipp_ok("agent", &agent_exit);
    // RFC 4733 events for digit 1 (event code 1) sent to the agent's media port.
    let to_agent: Vec<_> = seen
        .iter()
        .filter(|((_, dst), _)| *dst == agent_port)
        .flat_map(|(_, pkts)| pkts.iter())
        .filter(|(pt, payload)| *pt == 101 && payload.first() == Some(&1))
        .collect();
    assert!(
        !to_agent.is_empty(),
        "no telephone-event for 1 reached the agent (port {}); flows: {:?}",
        agent_port,
        seen.keys().collect::<Vec<_>>()
    );
    let row = app
        .rows(&format!(
            "SELECT outcome, hangup_by FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert_eq!(row[0][0].as_deref(), Some("answered"), "{row:?}");
    assert_eq!(row[0][1].as_deref(), Some("callee"), "{row:?}");
    app.stop().await;
}

/// An agent that does not answer makes the attempt `abandoned` (a person
/// answered with nobody to take the call), and the callee is hung up.
#[tokio::test]
async fn an_agent_that_does_not_answer_makes_the_attempt_abandoned() {
    let callee = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    let agent = SippUas::start("uas_busy_486.xml", 1, &[]).await;
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let c = bridge_campaign(&app, &callee.uri(), &agent.uri()).await;
    wait_finished(&app, &c).await;
    assert_sipp_ok("callee", &callee.finish().await);
    let row = app
        .rows(&format!(
            "SELECT outcome, reason FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert_eq!(row[0][0].as_deref(), Some("abandoned"), "{row:?}");
    assert!(
        row[0][1].as_deref().unwrap_or_default().contains("486"),
        "{row:?}"
    );
    drop(agent);
    app.stop().await;
}
