//! Script agents against real SIPp callees: herald plays WAV prompts, SIPp
//! presses keys (RFC 4733), the script branches, sets the result and hangs
//! up, and the target ends by the result: `completed` and dispositions
//! finish it, `retry` re-queues it by the outplan, `opted_out` finishes it
//! and puts the number on the DNC list.

mod common;
mod sipp;

use std::time::Duration;

use common::{expect_json, id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::{SippExit, SippUas};

/// An outdial with one target dialed at `uri`, an outplan, `agent`, and a
/// started campaign; returns (campaign, target).
async fn one_target_campaign(app: &TestApp, uri: &str, agent: Value) -> (String, String) {
    let od = id_of(
        &app.post_ok("/v1/outdials", &json!({"name": "l"}), StatusCode::CREATED)
            .await,
    );
    let rep = app
        .post_ok(
            &format!("/v1/outdials/{od}/targets"),
            &json!({"targets": [{"name": "Ada", "destinations": [{"type": "sip", "target": uri}], "variables": {"name": "Ada"}}]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(rep["invalid_count"], 0, "{rep}");
    let target = app
        .rows(&format!("SELECT id FROM targets WHERE outdial_id = '{od}'"))
        .await[0][0]
        .clone()
        .unwrap();
    let op = id_of(
        &app.post_ok(
            "/v1/outplans",
            &json!({"name": "p", "try_count_max": 3, "dial_timeout_s": 10, "retry": {"no_answer_s": 3600, "busy_s": 3600, "failed_s": 3600}}),
            StatusCode::CREATED,
        )
        .await,
    );
    let ag = id_of(&app.post_ok("/v1/agents", &agent, StatusCode::CREATED).await);
    let c = id_of(
        &app.post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag, "calls_per_second": 10, "max_concurrent_calls": 5}),
            StatusCode::CREATED,
        )
        .await,
    );
    app.campaign_verb(&c, "start", json!({})).await;
    (c, target)
}

/// Waits (bounded, on the event bus) until `n` attempts have been recorded.
async fn wait_recorded(app: &TestApp, n: i64) {
    let mut rx = app.events().subscribe();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let recorded = app
                .scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL")
                .await;
            if recorded >= n {
                return;
            }
            match rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    })
    .await;
    assert!(done.is_ok(), "{n} attempts were not recorded in time");
}

fn assert_sipp_ok(exit: &SippExit) {
    assert_eq!(
        exit.code,
        Some(0),
        "SIPp failed:\n{}\n{}",
        exit.stdout,
        exit.logs
    );
}

async fn target_row(app: &TestApp, target: &str) -> Vec<Option<String>> {
    app.rows(&format!(
        "SELECT state, try_count_current, next_attempt_at FROM targets WHERE id = '{target}'"
    ))
    .await
    .remove(0)
}

async fn call_row(app: &TestApp, target: &str) -> Vec<Option<String>> {
    app.rows(&format!(
        "SELECT outcome, result, hangup_by FROM calls WHERE target_id = '{target}'"
    ))
    .await
    .remove(0)
}

/// Four campaigns at once, one callee each:
/// - the shipped emergency acknowledgement, the callee presses 1 ⇒ `completed`, finished;
/// - the shipped appointment confirmation, the callee presses 1 ⇒ `confirmed`, finished;
/// - a short script, the callee presses nothing ⇒ `retry`, the target re-queued;
/// - a script whose 1 means opt out ⇒ `opted_out`, finished, the number on the DNC list.
async fn scripts_set_results_and_targets_end_by_them(db: Db) {
    let press_1 = SippUas::start("uas_dtmf.xml", 1, &[]).await;
    let press_1b = SippUas::start("uas_dtmf.xml", 1, &[]).await;
    let press_1c = SippUas::start("uas_dtmf.xml", 1, &[]).await;
    let silent = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    // The opt-out script plays a prompt from the configured prompt directory.
    let prompts = tempfile::tempdir().expect("prompt dir");
    std::fs::copy(
        sipp::crate_root().join("scenarios/audio/goodbye.wav"),
        prompts.path().join("farewell.wav"),
    )
    .expect("copy a prompt");
    let dir = prompts.path().to_str().expect("utf-8 path");
    let Some(app) = common::spawn_app_with(db, &[("HERALD__AGENTS__PROMPT_DIR", dir)], None).await
    else {
        return;
    };
    let (_, emergency) = one_target_campaign(
        &app,
        &press_1.uri(),
        json!({"name": "ack", "kind": "script", "script": "emergency-acknowledgement"}),
    )
    .await;
    let (_, appointment) = one_target_campaign(
        &app,
        &press_1b.uri(),
        json!({"name": "appt", "kind": "script", "script": "appointment-confirmation"}),
    )
    .await;
    let short_wait = json!({"start": "ask", "steps": {
        "ask": {"result": "retry", "play": "goodbye.wav", "gather": {"timeout_ms": 800}, "on": {"1": "done"}, "timeout": "ask"},
        "done": {"result": "completed"}
    }, "max_visits": 1});
    let (_, unanswered) = one_target_campaign(
        &app,
        &silent.uri(),
        json!({"name": "short", "kind": "script", "script": short_wait}),
    )
    .await;
    let opt_out = json!({"start": "ask", "steps": {
        "ask": {"play": "goodbye.wav", "gather": {"timeout_ms": 5000}, "on": {"1": "out"}},
        "out": {"result": "opted_out", "play": "farewell.wav"}
    }});
    let (_, opted) = one_target_campaign(
        &app,
        &press_1c.uri(),
        json!({"name": "optout", "kind": "script", "script": opt_out}),
    )
    .await;
    wait_recorded(&app, 4).await;

    // herald hung up each call (each SIPp scenario waits for herald's BYE).
    for s in [press_1, press_1b, press_1c, silent] {
        assert_sipp_ok(&s.finish().await);
    }
    let answered = |r: &[Option<String>], result: &str| {
        assert_eq!(r[0].as_deref(), Some("answered"), "{r:?}");
        assert_eq!(r[1].as_deref(), Some(result), "{r:?}");
        assert_eq!(r[2].as_deref(), Some("herald"), "{r:?}");
    };
    answered(&call_row(&app, &emergency).await, "completed");
    assert_eq!(
        target_row(&app, &emergency).await[0].as_deref(),
        Some("finished")
    );
    answered(&call_row(&app, &appointment).await, "confirmed");
    assert_eq!(
        target_row(&app, &appointment).await[0].as_deref(),
        Some("finished")
    );
    answered(&call_row(&app, &unanswered).await, "retry");
    let t = target_row(&app, &unanswered).await;
    assert_eq!(t[0].as_deref(), Some("idle"), "retry re-queues: {t:?}");
    let next: i64 = t[2].as_deref().expect("next_attempt_at").parse().unwrap();
    let wait_s = (next - chrono::Utc::now().timestamp_millis()) / 1000;
    assert!(
        (3000..=3600).contains(&wait_s),
        "the outplan's no_answer delay: {wait_s}s"
    );
    answered(&call_row(&app, &opted).await, "opted_out");
    assert_eq!(
        target_row(&app, &opted).await[0].as_deref(),
        Some("finished")
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM dnc WHERE reason = 'opted_out'")
            .await,
        1
    );
    app.stop().await;
}

on_both_backends!(
    scripts_set_results,
    scripts_set_results_and_targets_end_by_them
);

/// A script that does not load is refused when the agent is created, naming the field.
#[tokio::test]
async fn a_broken_script_is_refused_naming_the_field() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let r = app
        .post(
            "/v1/agents",
            &json!({"name": "x", "kind": "script", "script": {"start": "a", "steps": {"a": {"gather": {}, "on": {"1": "nowhere"}}}}}),
        )
        .await;
    let body = common::expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "no step named",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["field"], "script.steps.a.on.1",
        "{body}"
    );
    let r = app
        .post(
            "/v1/agents",
            &json!({"name": "x", "kind": "script", "script": "no-such-script"}),
        )
        .await;
    common::expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "appointment-confirmation",
    )
    .await;
    app.stop().await;
}

/// A script's `play` reads nothing outside the prompt directory: a file
/// elsewhere, a `..` path, a symlink out of the directory and a missing file
/// all get the same answer, which does not say whether the file exists; a
/// file inside it (named relatively or absolutely) is taken.
#[tokio::test]
async fn prompts_outside_the_prompt_dir_are_refused_alike() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("prompts");
    std::fs::create_dir(&dir).unwrap();
    let goodbye = sipp::crate_root().join("scenarios/audio/goodbye.wav");
    std::fs::copy(&goodbye, dir.join("mine.wav")).unwrap();
    std::fs::copy(&goodbye, root.path().join("outside.wav")).unwrap();
    std::os::unix::fs::symlink(root.path().join("outside.wav"), dir.join("out.wav")).unwrap();
    let dir_s = dir.to_str().expect("utf-8 path").to_string();
    let Some(app) = common::spawn_app_with(
        Db::Sqlite,
        &[("HERALD__AGENTS__PROMPT_DIR", dir_s.as_str())],
        None,
    )
    .await
    else {
        return;
    };
    let agent = |play: &str| json!({"name": "p", "kind": "script", "script": {"start": "a", "steps": {"a": {"play": [play], "result": "completed"}}}});
    let mut messages = Vec::new();
    for play in [
        "/etc/hostname",
        "../../etc/passwd",
        "out.wav",
        "missing.wav",
    ] {
        let r = app.post("/v1/agents", &agent(play)).await;
        let body = common::expect_error(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "script.steps.a.play[0]",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "script.steps.a.play[0]");
        messages.push(body["error"]["message"].as_str().unwrap().to_string());
    }
    assert!(
        messages.iter().all(|m| *m == messages[0]),
        "one message for all: {messages:#?}"
    );
    assert!(!messages[0].contains("truncated") && !messages[0].contains("No such file"));
    // The same for a change made with PATCH.
    let ok = app
        .post_ok("/v1/agents", &agent("mine.wav"), StatusCode::CREATED)
        .await;
    let r = app
        .patch(
            &format!("/v1/agents/{}", id_of(&ok)),
            &json!({"script": {"steps": {"a": {"play": ["out.wav"]}}}}),
        )
        .await;
    let body = expect_json(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["message"], messages[0].as_str());
    let abs = dir.join("mine.wav");
    app.post_ok(
        "/v1/agents",
        &agent(abs.to_str().unwrap()),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM agents").await, 2);
    app.stop().await;
}

/// A result for a call that is not live is refused with 409 and the call's
/// status; unknown calls are 404; bad values name the field.
#[tokio::test]
async fn results_are_only_taken_for_live_calls() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let r = app
        .post(
            "/v1/calls/0190a0a0-0000-7000-8000-000000000000/result",
            &json!({"result": "completed"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15550001111", "schedule_type": "scheduled", "scheduled_at": "2099-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&call);
    let r = app
        .post(
            &format!("/v1/calls/{id}/result"),
            &json!({"result": "completed"}),
        )
        .await;
    common::expect_error(r, StatusCode::CONFLICT, "call_not_live", "scheduled").await;
    let r = app
        .post(&format!("/v1/calls/{id}/result"), &json!({"reslt": "x"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
