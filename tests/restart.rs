//! kill -9 of a real herald process mid-campaign, then a restart on the same
//! database: the open attempts are closed as interrupted (a try each), no
//! target stays in `dialing`, no target has two overlapping attempts, and the
//! campaign completes.

#[path = "common/process.rs"]
mod process;
mod sipp;

use std::time::Duration;

use process::HeraldProcess;
use serde_json::{json, Value};
use sipp::{SippUas, UasOptions};

fn start(dir: &std::path::Path, proxy: &str) -> HeraldProcess {
    let db = format!("sqlite://{}/herald.db", dir.display());
    HeraldProcess::start(
        dir,
        &[
            ("HERALD__DATABASE__URL", &db),
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy),
        ],
        false,
    )
}

/// Polls the stats (a separate process has no in-process events) until `ok`, for at most `within`.
async fn until(
    c: &reqwest::Client,
    h: &HeraldProcess,
    campaign: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(within, async {
        loop {
            tick.tick().await;
            let s = h.get(c, &format!("/v1/campaigns/{campaign}/stats")).await;
            if ok(&s) {
                return s;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("campaign {campaign} did not get there within {within:?}"))
}

#[tokio::test]
async fn kill_9_mid_campaign_then_restart_completes_with_nothing_stuck() {
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_ring_no_answer.xml",
        calls: None,
        extra: &[],
        timeout_s: 120,
        trace: false,
    })
    .await;
    let proxy = format!("sip:{}", uas.addr);
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();

    let mut h = start(dir.path(), &proxy);
    let od = h.post(&c, "/v1/outdials", json!({"name": "crash"})).await;
    let od = od["id"].as_str().unwrap().to_string();
    let targets: Vec<Value> = (0..30).map(|i| json!({"destination": {"type": "tel", "target": format!("+1555{:07}", 4_000_000 + i)}})).collect();
    h.post(
        &c,
        &format!("/v1/outdials/{od}/targets"),
        json!({"targets": targets}),
    )
    .await;
    let op = h.post(&c, "/v1/outplans", json!({"name": "p", "try_count_max": 2, "dial_timeout_s": 5, "retry": {"no_answer_s": 0, "failed_s": 0}})).await;
    let ag = h
        .post(
            &c,
            "/v1/agents",
            json!({"name": "a", "kind": "script", "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}}),
        )
        .await;
    let camp = h
        .post(
            &c,
            "/v1/campaigns",
            json!({"name": "crash", "outdial_id": od, "outplan_id": op["id"], "agent_id": ag["id"],
        "calls_per_second": 100, "max_concurrent_calls": 10}),
        )
        .await;
    let camp = camp["id"].as_str().unwrap().to_string();
    h.post(&c, &format!("/v1/campaigns/{camp}/start"), json!({}))
        .await;
    until(&c, &h, &camp, Duration::from_secs(20), |s| {
        s["live_calls"].as_i64() >= Some(10)
    })
    .await;

    // kill -9: no chance to clean up.
    h.kill9();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/herald.db", dir.path().display()))
        .await
        .unwrap();
    let open_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    let dialing_before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM targets WHERE state = 'dialing'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        open_before >= 10 && dialing_before >= 10,
        "the crash left calls open ({open_before}) and targets dialing ({dialing_before})"
    );

    h = start(dir.path(), &proxy);
    let done = until(&c, &h, &camp, Duration::from_secs(60), |s| {
        s["status"] == "finished"
    })
    .await;
    assert_eq!(done["targets"]["by_state"]["dialing"], 0);

    let stuck: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM targets WHERE state IN ('dialing', 'answered', 'idle')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(stuck, 0, "every target ended");
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(open, 0, "no attempt left open");
    let interrupted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE outcome = 'interrupted'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        interrupted, open_before,
        "each open attempt was closed as interrupted"
    );
    let over_budget: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM targets WHERE try_count_current > 2")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        over_budget, 0,
        "an interrupted attempt counts as a try, within the budget"
    );
    let tries: i64 = sqlx::query_scalar("SELECT SUM(try_count_current) FROM targets")
        .fetch_one(&db)
        .await
        .unwrap();
    let calls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tries, calls);
    // No target has two attempts overlapping in time.
    let overlaps: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM calls a JOIN calls b ON a.target_id = b.target_id AND a.id < b.id \
         WHERE b.created_at < a.ended_at AND a.created_at < b.ended_at",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "a target was dialed twice at once");
    // Every transition has its row: replaying the events gives each target's state.
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT target_id, from_state, to_state FROM target_events ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    let mut at = std::collections::HashMap::new();
    for (t, from, to) in rows {
        let cur = at.entry(t.clone()).or_insert_with(|| "idle".to_string());
        assert_eq!(*cur, from, "target {t}: {from}->{to} after {cur}");
        *cur = to;
    }
    let states: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM targets")
        .fetch_all(&db)
        .await
        .unwrap();
    for (t, st) in states {
        assert_eq!(
            at.get(&t).map(String::as_str),
            Some(st.as_str()),
            "target {t}"
        );
    }
    drop(h);
    uas.quit();
    let _ = uas.finish().await;
}
