//! Campaigns dialing a real SIPp callee through the default trunk: a mixed
//! population to the end, pause and resume, stop that drains, forced stop.

mod common;
mod sipp;

use std::time::Duration;

use common::{app_for, assert_event_chains, csv, wait_status, Db};
use herald::events::Event;
use reqwest::StatusCode;
use serde_json::json;
use sipp::{sipp_counter, SippUas, UasOptions};

/// The default trunk's limits these campaigns need.
const LIMITS: &[(&str, &str)] = &[
    ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "1000"),
    ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", "500"),
];

async fn uas(scenario: &str) -> SippUas {
    SippUas::start_with(UasOptions {
        scenario,
        calls: None,
        extra: &[],
        timeout_s: 120,
        trace: false,
    })
    .await
}

/// Waits (bounded) until at least `n` attempts were claimed for the campaign.
async fn wait_claimed(rx: &mut tokio::sync::broadcast::Receiver<Event>, campaign: &str, n: usize) {
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen < n {
            if let Ok(Event::AttemptsClaimed { campaign_id, count }) = rx.recv().await {
                if campaign_id == campaign {
                    seen += count;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {seen} of {n} attempts were claimed"));
}

fn sipp_calls(stdout: &str) -> u64 {
    sipp_counter(stdout, "Successful call").unwrap_or(0)
        + sipp_counter(stdout, "Failed call").unwrap_or(0)
}

async fn a_300_target_campaign_against_a_mixed_population_finishes(db: Db) {
    let uas = uas("uas_mixed.xml").await;
    let Some(app) = app_for(db, uas.addr, LIMITS).await else {
        return;
    };
    let plan = json!({"name": "2x", "try_count_max": 2, "dial_timeout_s": 10, "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}});
    let (c, od) = app
        .campaign(
            csv(300, 1_000_000),
            plan,
            json!({"calls_per_second": 200, "max_concurrent_calls": 50}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "finished", Duration::from_secs(90)).await;

    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state NOT IN ('finished', 'failed')")).await, 0);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND try_count_current > 2"
        ))
        .await,
        0,
        "budget exceeded"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .await,
        0
    );
    // 404s are never retried; busy ones are, up to the budget.
    assert!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND sip_code = 404"
        ))
        .await
            > 0
    );
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM calls a JOIN calls b ON a.target_id = b.target_id AND b.id > a.id \
        WHERE a.campaign_id = '{c}' AND a.outcome = 'invalid_destination'")).await, 0, "a 404 number is dialed again");
    assert!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND try_count_current = 2"
        ))
        .await
            > 0,
        "busy ones are retried"
    );
    let finished = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'finished'"
        ))
        .await;
    assert!(finished > 100, "about half answer: {finished}");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM targets t WHERE outdial_id = '{od}' AND state = 'finished' \
        AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.target_id = t.id AND c.outcome = 'answered' AND c.sip_code = 200)")).await, 0);
    assert_event_chains(&app, &od).await;
    let attempts = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    let invites = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND invite_sent_at IS NOT NULL"
        ))
        .await;
    assert_eq!(attempts, invites);
    uas.quit();
    let exit = uas.finish().await;
    exit.assert_success();
    assert_eq!(
        sipp_calls(&exit.stdout),
        attempts as u64,
        "SIPp's call count equals herald's attempts"
    );
    app.stop().await;
}
on_both_backends!(
    mixed_population,
    a_300_target_campaign_against_a_mixed_population_finishes
);

#[tokio::test]
async fn pause_stops_new_invites_and_resume_and_stop_drain() {
    let uas = uas("uas_cps.xml").await;
    let Some(app) = app_for(Db::Sqlite, uas.addr, LIMITS).await else {
        return;
    };
    let plan = json!({"name": "1x", "try_count_max": 1, "dial_timeout_s": 10});
    let (c, od) = app
        .campaign(
            csv(400, 2_000_000),
            plan,
            json!({"calls_per_second": 25, "max_concurrent_calls": 20}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_claimed(&mut rx, &c, 10).await;
    let paused = app.campaign_verb(&c, "pause", json!({})).await;
    assert_eq!(paused["status"], "paused");
    let paused_at = chrono::Utc::now().timestamp_millis();
    // Claims made before the pause may still be queued for this receiver.
    while rx.try_recv().is_ok() {}
    // Proving an absence takes a window: no claim for this campaign for 1.5 s
    // (at 25 calls/s a running one would claim dozens), then the rows agree.
    let claimed_while_paused = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            if let Ok(Event::AttemptsClaimed { campaign_id, .. }) = rx.recv().await {
                if campaign_id == c {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        claimed_while_paused.is_err(),
        "a paused campaign claimed targets"
    );
    let late = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND created_at > {}",
            paused_at + 1000
        ))
        .await;
    assert_eq!(late, 0, "no INVITE later than a second after the pause");
    let before_resume = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    app.campaign_verb(&c, "resume", json!({})).await;
    wait_claimed(&mut rx, &c, 10).await;
    let stopped = app.campaign_verb(&c, "stop", json!({})).await;
    assert_eq!(stopped["status"], "stopping");
    wait_status(&mut rx, &c, "stopped", Duration::from_secs(30)).await;
    let after = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert!(after > before_resume, "resume dialed again");
    assert!(after < 400, "stop ended the campaign early");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .await,
        0,
        "stop drains live calls"
    );
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state IN ('dialing', 'answered')")).await, 0);
    assert_event_chains(&app, &od).await;
    uas.quit();
    let exit = uas.finish().await;
    exit.assert_success();
    assert_eq!(sipp_calls(&exit.stdout), after as u64);
    app.stop().await;
}

#[tokio::test]
async fn force_stop_hangs_up_ringing_calls_as_interrupted() {
    let uas = uas("uas_ring_no_answer.xml").await;
    let Some(app) = app_for(Db::Sqlite, uas.addr, LIMITS).await else {
        return;
    };
    let plan = json!({"name": "ring", "try_count_max": 3, "dial_timeout_s": 120});
    let (c, od) = app
        .campaign(
            csv(12, 3_000_000),
            plan,
            json!({"calls_per_second": 100, "max_concurrent_calls": 12}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_claimed(&mut rx, &c, 12).await;
    let r = app.campaign_verb(&c, "stop", json!({"force": true})).await;
    assert_eq!(r["status_reason"], "force");
    wait_status(&mut rx, &c, "stopped", Duration::from_secs(30)).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND outcome = 'interrupted'"
        ))
        .await,
        12
    );
    // Interrupted counts as a try and is retried: the targets wait, idle.
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'idle' AND try_count_current = 1")).await, 12);
    assert_event_chains(&app, &od).await;
    uas.quit();
    let exit = uas.finish().await;
    exit.assert_success();
    app.stop().await;
}

#[tokio::test]
async fn an_agents_session_limit_holds_across_the_campaigns_sharing_it() {
    let uas = uas("uas_ring_no_answer.xml").await;
    let Some(app) = app_for(Db::Sqlite, uas.addr, LIMITS).await else {
        return;
    };
    let agent = app
        .post_ok("/v1/agents", &json!({"name": "desk", "kind": "script", "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}, "max_concurrent_sessions": 5}), StatusCode::CREATED)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let plan = json!({"name": "ring", "try_count_max": 1, "dial_timeout_s": 60});
    let mut rx = app.events().subscribe();
    let mut campaigns = Vec::new();
    for base in [6_000_000, 7_000_000] {
        let (c, _) = app
            .campaign(
                csv(10, base),
                plan.clone(),
                json!({"agent_id": agent, "calls_per_second": 100, "max_concurrent_calls": 10}),
            )
            .await;
        app.campaign_verb(&c, "start", json!({})).await;
        campaigns.push(c);
    }
    // Five calls start, then nothing more while they ring: a window with no claims.
    let mut claimed = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while claimed < 5 {
            if let Ok(Event::AttemptsClaimed { count, .. }) = rx.recv().await {
                claimed += count;
            }
        }
    })
    .await
    .expect("five calls start");
    let more = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            if let Ok(Event::AttemptsClaimed { .. }) = rx.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        more.is_err(),
        "a sixth call started beyond the agent's 5 sessions"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .await,
        5
    );
    // One receiver per campaign, subscribed before its stop: a wait must not
    // swallow the other campaign's event.
    let mut waits = Vec::new();
    for c in &campaigns {
        let rx = app.events().subscribe();
        app.campaign_verb(c, "stop", json!({"force": true})).await;
        waits.push((c, rx));
    }
    for (c, mut rx) in waits {
        wait_status(&mut rx, c, "stopped", Duration::from_secs(30)).await;
    }
    uas.quit();
    uas.finish().await.assert_success();
    app.stop().await;
}
