//! herald's call control against a real SIPp callee, one scenario per test
//! (see scenarios/README.md). Each test asserts SIPp's exit code and herald's
//! outcome, SIP code, who hung up and the timestamps.

mod sipp;

use std::collections::BTreeMap;
use std::time::Duration;

use herald::config::{MediaConfig, Secret, SipConfig, TrunkConfig};
use herald::domain::Outcome;
use herald::sip::{
    Call, CallControl, CallEnded, CallEvent, DialDestination, HangupBy, OriginateError,
    OriginateRequest,
};
use sipp::SippUas;
use tokio_util::sync::CancellationToken;

const GUARD: Duration = Duration::from_secs(30);

fn trunk(proxy: &str, username: &str, password: &str, max_calls: u32) -> TrunkConfig {
    TrunkConfig {
        proxy: proxy.to_string(),
        transport: "udp".into(),
        from_user: "herald".into(),
        from_domain: "herald.test".into(),
        caller_id: "+15550001111".into(),
        username: username.into(),
        password: Secret(password.into()),
        password_env: String::new(),
        max_concurrent_calls: max_calls,
        max_calls_per_second: 100,
        ..Default::default()
    }
}

async fn herald_with(trunk_cfg: TrunkConfig) -> (CallControl, CancellationToken) {
    let sip = SipConfig {
        listen: "127.0.0.1:0".into(),
        public_addr: String::new(),
        user_agent: "herald-test".into(),
        ..Default::default()
    };
    let media = MediaConfig {
        rtp_port_min: 20000,
        rtp_port_max: 30000,
        rtp_inactivity_timeout_s: 30,
        jitter_buffer_ms: 60,
    };
    let mut trunks = BTreeMap::new();
    trunks.insert("sipp".to_string(), trunk_cfg);
    let cancel = CancellationToken::new();
    let cc = CallControl::start(&sip, &media, &trunks, cancel.clone())
        .await
        .expect("call control starts");
    (cc, cancel)
}

async fn herald(sipp: &SippUas) -> (CallControl, CancellationToken) {
    herald_with(trunk(&format!("sip:{}", sipp.addr), "", "", 10)).await
}

fn tel(attempt: &str, ring_timeout: Duration, max_duration: Duration) -> OriginateRequest {
    OriginateRequest {
        attempt_id: attempt.to_string(),
        destination: DialDestination::Tel {
            number: "+15557654321".into(),
            trunk: "sipp".into(),
        },
        caller_id: None,
        ring_timeout,
        max_duration,
        headers: vec![("X-Herald-Campaign".into(), "c-1".into())],
    }
}

/// The event names in order, and the final `CallEnded`.
async fn run_to_end(mut call: Call) -> (Vec<&'static str>, CallEnded) {
    let mut names = Vec::new();
    let collect = async {
        while let Some(ev) = call.next_event().await {
            match ev {
                CallEvent::InviteSent { .. } => names.push("invite_sent"),
                CallEvent::Trying => names.push("trying"),
                CallEvent::Ringing { early_media, .. } => names.push(if early_media {
                    "early_media"
                } else {
                    "ringing"
                }),
                CallEvent::Answered { .. } => names.push("answered"),
                CallEvent::Ended(e) => return Some(e),
            }
        }
        None
    };
    let ended = tokio::time::timeout(GUARD, collect)
        .await
        .expect("the call did not end in time")
        .expect("the call's events ended without Ended");
    assert!(call.next_event().await.is_none(), "events after Ended");
    (names, ended)
}

fn assert_times_ordered(e: &CallEnded) {
    let sent = e.invite_sent_at.expect("invite_sent_at");
    if let Some(r) = e.ringing_at {
        assert!(sent <= r, "{e:?}");
    }
    if let Some(a) = e.answered_at {
        assert!(sent <= a && e.ringing_at.is_none_or(|r| r <= a), "{e:?}");
        assert!(a <= e.ended_at, "{e:?}");
    }
    assert!(sent <= e.ended_at, "{e:?}");
}

#[tokio::test]
async fn answered_call_is_hung_up_by_herald_at_max_duration() {
    let sipp = SippUas::start("uas_answer_rtp.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let call = cc
        .originate(tel(
            "a-answer",
            Duration::from_secs(10),
            Duration::from_millis(800),
        ))
        .await
        .unwrap();
    assert!(call.call_id().ends_with("@herald"));
    let (names, e) = run_to_end(call).await;
    sipp.finish().await.assert_success();
    assert_eq!(names, ["invite_sent", "ringing", "answered"], "{e:?}");
    assert_eq!(e.outcome, Outcome::Answered);
    assert_eq!(e.sip_code, Some(200));
    assert_eq!(e.hangup_by, HangupBy::Timeout, "{e:?}");
    assert!(e.answered_at.is_some() && e.ringing_at.is_some());
    let talk = e.ended_at - e.answered_at.unwrap();
    assert!(talk >= chrono::Duration::milliseconds(790), "{talk:?}");
    assert_times_ordered(&e);
    assert_eq!(cc.live_calls(), 0);
    assert_eq!(cc.sip_dialogs(), 0);
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn callee_bye_ends_the_call_with_its_q850_cause() {
    let sipp = SippUas::start("uas_answer_then_bye.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let req = OriginateRequest {
        destination: DialDestination::Sip { uri: sipp.uri() },
        ..tel("a-bye", Duration::from_secs(10), Duration::from_secs(20))
    };
    let call = cc.originate(req).await.unwrap();
    let (names, e) = run_to_end(call).await;
    sipp.finish().await.assert_success();
    assert_eq!(names, ["invite_sent", "ringing", "answered"]);
    assert_eq!(e.outcome, Outcome::Answered);
    assert_eq!(e.hangup_by, HangupBy::Callee, "{e:?}");
    assert_eq!(e.q850_cause, Some(16));
    assert_times_ordered(&e);
    assert_eq!(cc.sip_dialogs(), 0);
    cancel.cancel();
}

async fn rejected(scenario: &str) -> CallEnded {
    let sipp = SippUas::start(scenario, 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let (names, e) = run_to_end(
        cc.originate(tel(
            scenario,
            Duration::from_secs(10),
            Duration::from_secs(10),
        ))
        .await
        .unwrap(),
    )
    .await;
    sipp.finish().await.assert_success();
    assert_eq!(
        names,
        ["invite_sent", "trying", "ringing"],
        "{scenario}: {e:?}"
    );
    assert_eq!(e.hangup_by, HangupBy::Callee, "{e:?}");
    assert!(e.answered_at.is_none() && e.ringing_at.is_some(), "{e:?}");
    assert_times_ordered(&e);
    cancel.cancel();
    e
}

#[tokio::test]
async fn busy_486_is_busy_with_its_q850_cause() {
    let e = rejected("uas_busy_486.xml").await;
    assert_eq!((e.outcome, e.sip_code), (Outcome::Busy, Some(486)));
    assert_eq!(e.q850_cause, Some(17));
}

#[tokio::test]
async fn unavailable_480_is_no_answer() {
    let e = rejected("uas_unavailable_480.xml").await;
    assert_eq!((e.outcome, e.sip_code), (Outcome::NoAnswer, Some(480)));
}

#[tokio::test]
async fn not_found_404_is_an_invalid_destination() {
    let e = rejected("uas_not_found_404.xml").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::InvalidDestination, Some(404))
    );
}

#[tokio::test]
async fn unavailable_503_is_a_temporary_failure_with_retry_after() {
    let e = rejected("uas_unavailable_503.xml").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::TemporaryFailure, Some(503))
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn decline_603_is_rejected() {
    let e = rejected("uas_decline_603.xml").await;
    assert_eq!((e.outcome, e.sip_code), (Outcome::Rejected, Some(603)));
    assert_eq!(e.q850_cause, Some(21));
}

#[tokio::test]
async fn ring_timeout_cancels_and_ends_as_no_answer() {
    let sipp = SippUas::start("uas_ring_no_answer.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let (names, e) = run_to_end(
        cc.originate(tel(
            "a-ring",
            Duration::from_millis(700),
            Duration::from_secs(10),
        ))
        .await
        .unwrap(),
    )
    .await;
    sipp.finish().await.assert_success();
    assert_eq!(names, ["invite_sent", "ringing"]);
    assert_eq!((e.outcome, e.sip_code), (Outcome::NoAnswer, Some(487)));
    assert_eq!(e.hangup_by, HangupBy::Timeout, "{e:?}");
    assert!(e.answered_at.is_none());
    let rang_for = e.ended_at - e.invite_sent_at.unwrap();
    assert!(
        rang_for >= chrono::Duration::milliseconds(690),
        "{rang_for:?}"
    );
    assert_times_ordered(&e);
    cancel.cancel();
}

#[tokio::test]
async fn hangup_while_ringing_cancels_and_trunk_limit_refuses_a_second_call() {
    let sipp = SippUas::start("uas_ring_no_answer.xml", 1, &[]).await;
    let (cc, cancel) = herald_with(trunk(&format!("sip:{}", sipp.addr), "", "", 1)).await;
    let mut call = cc
        .originate(tel(
            "a-hangup",
            Duration::from_secs(20),
            Duration::from_secs(20),
        ))
        .await
        .unwrap();
    // Wait until it rings, then refuse a second call on the full trunk.
    loop {
        match tokio::time::timeout(GUARD, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Ringing { .. }) => break,
            Some(CallEvent::Ended(e)) => panic!("ended early: {e:?}"),
            Some(_) => {}
            None => panic!("no events"),
        }
    }
    let second = cc
        .originate(tel(
            "a-second",
            Duration::from_secs(1),
            Duration::from_secs(1),
        ))
        .await;
    assert!(
        matches!(second, Err(OriginateError::TrunkBusy { limit: 1, .. })),
        "{:?}",
        second.err()
    );
    let stats = cc.trunk_stats("sipp").unwrap();
    assert_eq!((stats.live_calls, stats.refused), (1, 1));
    call.hangup();
    call.hangup();
    let (_, e) = run_to_end(call).await;
    sipp.finish().await.assert_success();
    assert_eq!((e.outcome, e.sip_code), (Outcome::NoAnswer, Some(487)));
    assert_eq!(e.hangup_by, HangupBy::Herald);
    assert_eq!(cc.trunk_stats("sipp").unwrap().live_calls, 0);
    cancel.cancel();
}

#[tokio::test]
async fn originate_refuses_bad_destinations_without_sending() {
    let (cc, cancel) = herald_with(trunk("sip:127.0.0.1:9", "", "", 1)).await;
    let bad = |d: DialDestination| OriginateRequest {
        destination: d,
        ..tel("a-bad", Duration::from_secs(1), Duration::from_secs(1))
    };
    let r = cc
        .originate(bad(DialDestination::Tel {
            number: "+1555".into(),
            trunk: "nope".into(),
        }))
        .await;
    assert!(matches!(r, Err(OriginateError::UnknownTrunk(_))));
    let r = cc
        .originate(bad(DialDestination::Tel {
            number: "555-CALL-NOW".into(),
            trunk: "sipp".into(),
        }))
        .await;
    assert!(matches!(r, Err(OriginateError::InvalidDestination(_))));
    let r = cc
        .originate(bad(DialDestination::Sip {
            uri: "mailto:x@y".into(),
        }))
        .await;
    assert!(matches!(r, Err(OriginateError::InvalidDestination(_))));
    assert_eq!(cc.live_calls(), 0);
    cancel.cancel();
    cc.stopped().await;
}

async fn authenticated(scenario: &str, password: &str) -> (Vec<&'static str>, CallEnded) {
    let sipp = SippUas::start(scenario, 1, &[]).await;
    let (cc, cancel) = herald_with(trunk(
        &format!("sip:{}", sipp.addr),
        "herald-user",
        password,
        10,
    ))
    .await;
    let out = run_to_end(
        cc.originate(tel(
            scenario,
            Duration::from_secs(10),
            Duration::from_millis(300),
        ))
        .await
        .unwrap(),
    )
    .await;
    sipp.finish().await.assert_success();
    cancel.cancel();
    out
}

#[tokio::test]
async fn a_401_md5_challenge_is_answered() {
    let (names, e) = authenticated("uas_auth_401_md5.xml", "s3cret").await;
    assert_eq!(names, ["invite_sent", "answered"], "{e:?}");
    assert_eq!((e.outcome, e.sip_code), (Outcome::Answered, Some(200)));
}

#[tokio::test]
async fn a_407_qop_auth_challenge_is_answered() {
    let (_, e) = authenticated("uas_auth_407_qop.xml", "s3cret").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::Answered, Some(200)),
        "{e:?}"
    );
}

#[tokio::test]
async fn md5_is_chosen_when_sha256_is_offered_first() {
    let (_, e) = authenticated("uas_auth_sha256_then_md5.xml", "s3cret").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::Answered, Some(200)),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_sha256_only_challenge_is_answered_with_sha256() {
    let (_, e) = authenticated("uas_auth_sha256_only.xml", "s3cret").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::Answered, Some(200)),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_rejected_password_is_a_trunk_error_after_one_retry() {
    let (names, e) = authenticated("uas_auth_rejected.xml", "wrong").await;
    assert_eq!(names, ["invite_sent"]);
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::TrunkError, Some(401)),
        "{e:?}"
    );
    assert_eq!(e.hangup_by, HangupBy::Callee);
}

#[tokio::test]
async fn an_answer_racing_the_cancel_is_acked_hung_up_and_no_answer() {
    let sipp = SippUas::start("uas_answer_races_cancel.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let (names, e) = run_to_end(
        cc.originate(tel(
            "a-race",
            Duration::from_millis(500),
            Duration::from_secs(10),
        ))
        .await
        .unwrap(),
    )
    .await;
    // SIPp only succeeds if herald ACKed the 200 and sent BYE.
    sipp.finish().await.assert_success();
    assert_eq!(names, ["invite_sent", "ringing"], "{e:?}");
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::NoAnswer, Some(200)),
        "{e:?}"
    );
    assert_eq!(e.hangup_by, HangupBy::Timeout);
    assert!(e.answered_at.is_none());
    cancel.cancel();
}

#[tokio::test]
async fn a_mixed_population_gets_every_outcome_right() {
    const CALLS: usize = 60;
    let sipp = SippUas::start("uas_mixed.xml", CALLS as u32, &[]).await;
    let (cc, cancel) = herald_with(trunk(&format!("sip:{}", sipp.addr), "", "", 100)).await;
    let mut running = Vec::new();
    for i in 0..CALLS {
        let call = cc
            .originate(tel(
                &format!("a-mix-{i}"),
                Duration::from_secs(10),
                Duration::from_millis(200),
            ))
            .await
            .unwrap();
        running.push(tokio::spawn(run_to_end(call)));
    }
    let exit = sipp.finish().await;
    let mut counts = BTreeMap::new();
    for r in running {
        let (_, e) = r.await.unwrap();
        let expected_code = match e.outcome {
            Outcome::Answered => 200,
            Outcome::Busy => 486,
            Outcome::InvalidDestination => 404,
            other => panic!("unexpected outcome {other}: {e:?}"),
        };
        assert_eq!(e.sip_code, Some(expected_code), "{e:?}");
        assert_times_ordered(&e);
        *counts.entry(e.outcome.as_str()).or_insert(0usize) += 1;
    }
    exit.assert_success();
    assert_eq!(counts.values().sum::<usize>(), CALLS);
    assert_eq!(counts.len(), 3, "all three branches seen: {counts:?}");
    assert_eq!(cc.live_calls(), 0);
    assert_eq!(cc.sip_dialogs(), 0, "every dialog was removed");
    cancel.cancel();
}

#[tokio::test]
async fn shutdown_hangs_up_live_calls_as_interrupted_and_stops_every_task() {
    let sipp = SippUas::start("uas_answer_rtp.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let mut call = cc
        .originate(tel(
            "a-shutdown",
            Duration::from_secs(10),
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(GUARD, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Answered { .. }) => break,
            Some(CallEvent::Ended(e)) => panic!("ended early: {e:?}"),
            Some(_) => {}
            None => panic!("no events"),
        }
    }
    cancel.cancel();
    let (_, e) = run_to_end(call).await;
    // SIPp only succeeds if herald sent BYE.
    sipp.finish().await.assert_success();
    assert_eq!(
        (e.outcome, e.hangup_by),
        (Outcome::Interrupted, HangupBy::Herald),
        "{e:?}"
    );
    tokio::time::timeout(GUARD, cc.stopped())
        .await
        .expect("every task stops");
    let refused = cc
        .originate(tel(
            "a-late",
            Duration::from_secs(1),
            Duration::from_secs(1),
        ))
        .await;
    assert!(matches!(refused, Err(OriginateError::ShuttingDown)));
}

#[tokio::test]
async fn a_stale_nonce_is_answered_again_with_the_fresh_one() {
    let (_, e) = authenticated("uas_auth_stale_nonce.xml", "s3cret").await;
    assert_eq!(
        (e.outcome, e.sip_code),
        (Outcome::Answered, Some(200)),
        "{e:?}"
    );
}

#[tokio::test]
async fn in_dialog_options_and_info_from_the_callee_are_answered() {
    let sipp = SippUas::start("uas_in_dialog_requests.xml", 1, &[]).await;
    let (cc, cancel) = herald(&sipp).await;
    let (names, e) = run_to_end(
        cc.originate(tel(
            "a-indialog",
            Duration::from_secs(10),
            Duration::from_secs(20),
        ))
        .await
        .unwrap(),
    )
    .await;
    // SIPp fails unless both requests got a 200 and its BYE was answered.
    sipp.finish().await.assert_success();
    assert_eq!(names, ["invite_sent", "ringing", "answered"]);
    assert_eq!(
        (e.outcome, e.hangup_by),
        (Outcome::Answered, HangupBy::Callee)
    );
    assert_eq!(cc.sip_dialogs(), 0);
    cancel.cancel();
}
