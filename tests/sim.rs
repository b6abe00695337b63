//! The callee simulator as herald's peer: its population's shares hold over
//! 2,000 calls placed by herald's call control, an answered call plays audio
//! and presses its key once, and `herald serve`'s default trunk dials it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald::config::{MediaConfig, Secret, SipConfig, TrunkConfig};
use herald::domain::Outcome;
use herald::media::MediaEvent;
use herald::sim::{CallPlan, Population, Simulator, SimulatorConfig};
use herald::sip::{CallControl, CallEnded, CallEvent, DialDestination, HangupBy, OriginateRequest};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Bounds every wait in these tests.
const GUARD: Duration = Duration::from_secs(60);

async fn simulator(population: &str, seed: u64) -> Simulator {
    common::init_logs();
    let population = Population::parse(population, "test population", None).unwrap();
    Simulator::start(SimulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        population,
        seed,
        rtp_port_min: 40000,
        rtp_port_max: 50000,
    })
    .await
    .expect("simulator starts")
}

async fn call_control(sim: &Simulator) -> (CallControl, CancellationToken) {
    let sip = SipConfig {
        listen: "127.0.0.1:0".into(),
        public_addr: String::new(),
        user_agent: "herald-test".into(),
        ..Default::default()
    };
    let media = MediaConfig {
        rtp_port_min: 20000,
        rtp_port_max: 40000,
        rtp_inactivity_timeout_s: 30,
        jitter_buffer_ms: 40,
    };
    let trunk = TrunkConfig {
        proxy: format!("sip:{}", sim.addr()),
        transport: "udp".into(),
        from_user: "herald".into(),
        from_domain: "herald.test".into(),
        caller_id: "+15550001111".into(),
        username: String::new(),
        password: Secret::default(),
        password_env: String::new(),
        max_concurrent_calls: 100_000,
        max_calls_per_second: 100_000,
        ..Default::default()
    };
    let mut trunks = BTreeMap::new();
    trunks.insert("sim".to_string(), trunk);
    let cancel = CancellationToken::new();
    let cc = CallControl::start(&sip, &media, &trunks, cancel.clone())
        .await
        .expect("call control starts");
    (cc, cancel)
}

fn request(i: usize, ring_timeout: Duration, max_duration: Duration) -> OriginateRequest {
    OriginateRequest {
        attempt_id: format!("sim-{i}"),
        destination: DialDestination::Tel {
            number: format!("+1555010{:04}", i % 10_000),
            trunk: "sim".into(),
        },
        caller_id: None,
        ring_timeout,
        max_duration,
        headers: Vec::new(),
    }
}

const MIXED: &str = r#"
name = "mixed"
ring_ms = 0
reject_ms = 0
talk_ms = 0
callee_hangs_up = 0.0
retry_after_s = 30
media = "none"

[outcomes]
answer = 0.5
busy = 0.2
no_answer = 0.1
invalid_number = 0.1
temporary_failure = 0.1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_shares_hold_over_two_thousand_calls_from_call_control() {
    const CALLS: usize = 2000;
    const SEED: u64 = 42;
    let sim = simulator(MIXED, SEED).await;
    let (cc, cancel) = call_control(&sim).await;
    // What the seed says the 2,000 arrivals are, whatever order they arrive in.
    let population = Population::parse(MIXED, "mixed", None).unwrap();
    let mut planned: HashMap<&str, usize> = HashMap::new();
    for i in 0..CALLS as u64 {
        *planned.entry(population.plan(SEED, i).kind()).or_default() += 1;
    }

    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let mut call = cc
            // A ring timeout well above the simulator's answer time under
            // load, so only planned no-answers are cancelled.
            .originate(request(i, Duration::from_secs(3), Duration::ZERO))
            .await
            .unwrap();
        calls.spawn(async move {
            let _permit = permit;
            loop {
                if let Some(CallEvent::Ended(e)) = call.next_event().await {
                    return e;
                }
            }
        });
    }
    let mut got: HashMap<Outcome, Vec<CallEnded>> = HashMap::new();
    while let Some(e) = tokio::time::timeout(GUARD, calls.join_next())
        .await
        .unwrap()
    {
        let e = e.unwrap();
        got.entry(e.outcome).or_default().push(e);
    }
    let count = |o: Outcome| got.get(&o).map_or(0, Vec::len);
    let counts: BTreeMap<&str, usize> = got.iter().map(|(o, v)| (o.as_str(), v.len())).collect();
    assert_eq!(
        got.values().map(Vec::len).sum::<usize>(),
        CALLS,
        "every call ended"
    );
    // Exactly what the seed planned (every arrival index is used once) ...
    assert_eq!(
        count(Outcome::Answered),
        planned["answer"],
        "{counts:?} vs {planned:?}"
    );
    assert_eq!(count(Outcome::Busy), planned["busy"]);
    assert_eq!(count(Outcome::NoAnswer), planned["no_answer"]);
    assert_eq!(
        count(Outcome::InvalidDestination),
        planned["invalid_number"]
    );
    assert_eq!(
        count(Outcome::TemporaryFailure),
        planned["temporary_failure"]
    );
    // ... and within a few percent of the file's shares.
    for (o, share) in [
        (Outcome::Answered, 0.5),
        (Outcome::Busy, 0.2),
        (Outcome::NoAnswer, 0.1),
        (Outcome::InvalidDestination, 0.1),
        (Outcome::TemporaryFailure, 0.1),
    ] {
        let seen = count(o) as f64 / CALLS as f64;
        assert!((seen - share).abs() < 0.03, "{o}: {seen} vs {share}");
    }
    // The SIP on the wire: codes, Q.850 causes, Retry-After, ringing before CANCEL.
    for e in &got[&Outcome::Busy] {
        assert_eq!((e.sip_code, e.q850_cause), (Some(486), Some(17)), "{e:?}");
    }
    for e in &got[&Outcome::InvalidDestination] {
        assert_eq!((e.sip_code, e.q850_cause), (Some(404), Some(1)), "{e:?}");
    }
    for e in &got[&Outcome::TemporaryFailure] {
        assert_eq!(e.sip_code, Some(503), "{e:?}");
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)), "{e:?}");
    }
    for e in &got[&Outcome::NoAnswer] {
        assert_eq!(e.sip_code, Some(487), "{e:?}");
        assert!(e.ringing_at.is_some(), "{e:?}");
        assert_eq!(e.hangup_by, HangupBy::Timeout);
    }
    for e in &got[&Outcome::Answered] {
        assert_eq!(e.sip_code, Some(200), "{e:?}");
        assert_eq!(
            e.hangup_by,
            HangupBy::Timeout,
            "herald's max duration ends it"
        );
    }
    // The simulator saw the same calls, and nothing is left behind.
    let c = sim.counts();
    assert_eq!(c.calls, CALLS as u64);
    assert_eq!(c.answered as usize, planned["answer"]);
    assert_eq!(c.busy as usize, planned["busy"]);
    assert_eq!(c.cancelled as usize, planned["no_answer"]);
    assert_eq!(cc.sip_dialogs(), 0);
    let settled = tokio::time::timeout(GUARD, async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while sim.counts().live > 0 || sim.dialogs() > 0 {
            tick.tick().await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "simulator calls linger: {:?}",
        sim.counts()
    );
    assert_eq!(sim.counts().caller_hangups as usize, planned["answer"]);
    cancel.cancel();
    cc.stopped().await;
    sim.shutdown().await;
}

const TALKER: &str = r#"
name = "talker"
ring_ms = 100
talk_ms = 1500
callee_hangs_up = 1.0
media = "rtp"
audio = "tone"

[outcomes]
answer = 1

[[dtmf]]
digits = "1"
share = 1.0
at_ms = 300
"#;

#[tokio::test]
async fn an_answered_call_plays_its_audio_presses_its_key_once_and_hangs_up() {
    let sim = simulator(TALKER, 7).await;
    assert!(matches!(
        Population::parse(TALKER, "t", None).unwrap().plan(7, 0),
        CallPlan::Answer { .. }
    ));
    let (cc, cancel) = call_control(&sim).await;
    let mut call = cc
        .originate(request(0, Duration::from_secs(5), Duration::from_secs(30)))
        .await
        .unwrap();
    let mut media = loop {
        match tokio::time::timeout(GUARD, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Answered { media, .. }) => break media,
            Some(CallEvent::Ended(e)) => panic!("not answered: {e:?}"),
            Some(_) => {}
            None => panic!("no events"),
        }
    };
    let (mut digits, mut tone_frames) = (Vec::new(), 0);
    while let Some(ev) = tokio::time::timeout(GUARD, media.next_event())
        .await
        .unwrap()
    {
        match ev {
            MediaEvent::Dtmf(d) => digits.push(d),
            // μ-law silence is 0xFF (or 0x7F); the tone is anything but.
            MediaEvent::Audio { ulaw, .. } if ulaw.iter().any(|&b| b != 0xFF && b != 0x7F) => {
                tone_frames += 1
            }
            _ => {}
        }
    }
    let ended = loop {
        match tokio::time::timeout(GUARD, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Ended(e)) => break e,
            Some(_) => {}
            None => panic!("no end"),
        }
    };
    assert_eq!(digits, vec!['1'], "the key arrives once");
    assert!(
        tone_frames >= 40,
        "about a second of tone arrives: {tone_frames} frames"
    );
    assert_eq!(ended.outcome, Outcome::Answered);
    assert_eq!(ended.hangup_by, HangupBy::Callee, "{ended:?}");
    let c = sim.counts();
    assert_eq!((c.dtmf_sent, c.callee_hangups), (1, 1), "{c:?}");
    cancel.cancel();
    cc.stopped().await;
    sim.shutdown().await;
}

async fn the_default_trunk_dials_the_embedded_simulator(db: common::Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let sim_calls_before = app.simulator_counts().calls;
    let created = StatusCode::CREATED;
    let od = common::id_of(
        &app.post_ok("/v1/outdials", &json!({"name": "sim"}), created)
            .await,
    );
    let targets: Vec<_> = (0..40)
        .map(|i| json!({"destination": {"type": "tel", "target": format!("+1555020{i:04}")}}))
        .collect();
    common::expect_json(
        app.post(
            &format!("/v1/outdials/{od}/targets"),
            &json!({"targets": targets}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let op = common::id_of(
        &app.post_ok(
            "/v1/outplans",
            &json!({"name": "once", "try_count_max": 1, "dial_timeout_s": 5}),
            created,
        )
        .await,
    );
    let ag = common::id_of(
        &app.post_ok(
            "/v1/agents",
            &json!({"name": "appointment-confirmation", "kind": "script", "script": "appointment-confirmation"}),
            created,
        )
        .await,
    );
    let ca = common::id_of(
        &app.post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag,
                    "calls_per_second": 100, "max_concurrent_calls": 100}),
            created,
        )
        .await,
    );
    let mut rx = app.events().subscribe();
    app.post_ok(
        &format!("/v1/campaigns/{ca}/start"),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    common::wait_status(&mut rx, &ca, "finished", GUARD).await;
    let rows = app
        .rows(&format!(
            "SELECT outcome, sip_code FROM calls WHERE campaign_id = '{ca}'"
        ))
        .await;
    assert_eq!(rows.len(), 40);
    let mut outcomes = BTreeMap::new();
    for r in &rows {
        let (outcome, code) = (r[0].clone().unwrap(), r[1].clone());
        let expected = match outcome.as_str() {
            "answered" => "200",
            "busy" => "486",
            "no_answer" => "487",
            "invalid_destination" => "404",
            "temporary_failure" => "503",
            other => panic!("unexpected outcome {other}"),
        };
        assert_eq!(code.as_deref(), Some(expected), "{outcome}");
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    assert!(
        outcomes.get("answered").copied().unwrap_or(0) >= 15,
        "the default population answers most calls: {outcomes:?}"
    );
    assert!(outcomes.len() >= 2, "{outcomes:?}");
    assert_eq!(app.simulator_counts().calls - sim_calls_before, 40);
    app.stop().await;
}

on_both_backends!(
    default_trunk_dials_the_embedded_simulator,
    the_default_trunk_dials_the_embedded_simulator
);
