//! Scheduler + store throughput with the instant-outcome telephony (a test
//! double below the call-control interface): attempts per second through
//! claim → place → record on a large outdial, and the claim query's latency
//! as the list grows.
//!
//!     cargo bench --bench scheduler
//!     HERALD_BENCH_TARGETS=1000000 HERALD_BENCH_DB=sqlite cargo bench --bench scheduler
//!
//! Outcomes follow each number's last two digits (70% answered, 10% busy,
//! 10% no answer, 5% temporary failure, 5% invalid); retries are immediate
//! and the budget is 3 tries, so a list of N makes about 1.5 N attempts.

/// The allocator of the herald binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::app::{App, TelephonyChoice};
use herald::config::Config;
use herald::domain::specs::{AgentSpec, CampaignSpec, Outplan};
use herald::domain::target::parse_target;
use herald::events::Event;
use herald::sim::InstantTelephony;
use herald::store::campaigns::CampaignFields;
use herald::store::documents::{AGENTS, OUTDIALS, OUTPLANS};
use herald::store::{new_id, Store};
use serde_json::json;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn fill(store: &Store, outdial: &str, n: usize, base: u64) {
    let mut batch = Vec::with_capacity(5000);
    for i in 0..n as u64 {
        let t = json!({"destinations": [{"type": "tel", "target": format!("+1{:010}", base + i)}]});
        batch.push(parse_target(&t, new_id()).unwrap());
        if batch.len() == 5000 {
            store.insert_targets(outdial, &batch, 0).await.unwrap();
            batch.clear();
        }
    }
    store.insert_targets(outdial, &batch, 0).await.unwrap();
}

/// Median time of the claim query (the SELECT a claim starts with) on an outdial of `n`.
async fn claim_query_latency(store: &Store, outdial: &str) -> Duration {
    let sql = "SELECT id, destinations FROM targets WHERE outdial_id = $1 AND state = 'idle' \
               AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT 100";
    let mut times = Vec::new();
    for _ in 0..51 {
        let t = Instant::now();
        let rows = match &store.pool {
            herald::store::Pool::Sqlite(p) => sqlx::query(sql)
                .bind(outdial)
                .bind(i64::MAX)
                .fetch_all(p)
                .await
                .unwrap()
                .len(),
            herald::store::Pool::Postgres(p) => sqlx::query(sql)
                .bind(outdial)
                .bind(i64::MAX)
                .fetch_all(p)
                .await
                .unwrap()
                .len(),
        };
        assert_eq!(rows, 100);
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

async fn run(label: &str, url: &str, targets: usize) {
    let env = vec![
        ("HERALD__DATABASE__URL".to_string(), url.to_string()),
        ("HERALD__API__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND".to_string(),
            "1000000".to_string(),
        ),
        (
            "HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS".to_string(),
            "1000000".to_string(),
        ),
    ];
    let config = Config::load_from(None, env).unwrap();
    let app = App::start_with(
        &config,
        None,
        TelephonyChoice::Custom(Arc::new(InstantTelephony::default())),
    )
    .await
    .unwrap();
    let store = app.store.clone();

    // Claim latency on lists of 10k, 100k and the full size.
    let mut latencies = Vec::new();
    for (i, n) in [10_000usize, 100_000]
        .into_iter()
        .filter(|n| *n < targets)
        .enumerate()
    {
        let od = store
            .insert_doc(OUTDIALS, "probe", &json!({"name": "probe"}), 0)
            .await
            .unwrap();
        fill(&store, &od.id, n, 9_000_000_000 + (i as u64) * 1_000_000).await;
        latencies.push((n, claim_query_latency(&store, &od.id).await));
    }
    let od = store
        .insert_doc(OUTDIALS, "bench", &json!({"name": "bench"}), 0)
        .await
        .unwrap();
    let started = Instant::now();
    fill(&store, &od.id, targets, 2_000_000_000).await;
    let fill_s = started.elapsed().as_secs_f64();
    latencies.push((targets, claim_query_latency(&store, &od.id).await));

    let plan = json!({"name": "p", "try_count_max": 3, "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}});
    let op = store
        .insert_doc(
            OUTPLANS,
            "p",
            &herald::domain::specs::to_document(&Outplan::parse(&plan).unwrap()),
            0,
        )
        .await
        .unwrap();
    let ag = store
        .insert_doc(
            AGENTS,
            "a",
            &herald::domain::specs::to_document(
                &AgentSpec::parse(&json!({
                    "name": "a", "kind": "script", "max_concurrent_sessions": 100_000,
                    "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}},
                }))
                .unwrap(),
            ),
            0,
        )
        .await
        .unwrap();
    let spec = CampaignSpec {
        name: "bench".into(),
        outdial_id: od.id.clone(),
        outplan_id: op.id.clone(),
        agent_id: ag.id.clone(),
        max_concurrent_calls: 5000,
        calls_per_second: 100_000.0,
        ..CampaignSpec::default()
    };
    let c = store
        .insert_campaign(
            &CampaignFields {
                name: "bench",
                outdial_id: &od.id,
                outplan_id: &op.id,
                agent_id: Some(&ag.id),
                spec: &spec,
            },
            0,
        )
        .await
        .unwrap();
    let mut rx = app.events.subscribe();
    let started = Instant::now();
    store
        .change_campaign_status(
            &c.id,
            &herald::domain::StatusChange {
                m: herald::domain::StatusMove::Start,
                reason: None,
                cause: None,
                by: "api:bench",
            },
            0,
        )
        .await
        .unwrap();
    loop {
        match rx.recv().await {
            Ok(Event::CampaignStatusChanged {
                campaign_id,
                status,
            }) if campaign_id == c.id && status == "finished" => break,
            Ok(Event::CampaignStatusChanged {
                campaign_id,
                status,
            }) if campaign_id == c.id && (status == "paused" || status == "stopped") => {
                let row = store.get_campaign(&c.id).await.unwrap();
                panic!("the campaign went {status}: {row:?}");
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (by_outcome, live) = store.campaign_call_stats(&c.id).await.unwrap();
    let attempts: i64 = by_outcome.iter().map(|(_, n)| n).sum();
    assert_eq!(live, 0);
    println!(
        "{label:<9} targets={targets:>8} (filled in {fill_s:.1} s)  attempts={attempts:>8} in {secs:>6.1} s = {:>7.0} attempts/s",
        attempts as f64 / secs
    );
    // Time spent in the store's writes (lock wait included), from /metrics.
    let text = store.metrics().render(&Default::default());
    let stat = |op: &str, what: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("herald_store_query_seconds_{what}{{op=\"{op}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    for op in ["claim", "record"] {
        let (n, sum) = (stat(op, "count"), stat(op, "sum"));
        println!(
            "{label:<9}   {op:<6} transactions: {n:>6.0}, {:>6.2} s in all, {:>6.2} ms each",
            sum,
            if n > 0.0 { sum * 1000.0 / n } else { 0.0 }
        );
    }
    for (n, d) in latencies {
        println!(
            "{label:<9}   claim query (LIMIT 100) on {n:>8} targets: {:>7.2} ms median",
            d.as_secs_f64() * 1000.0
        );
    }
    app.shutdown().await;
}

#[tokio::main]
async fn main() {
    let targets: usize = std::env::var("HERALD_BENCH_TARGETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let which = std::env::var("HERALD_BENCH_DB").unwrap_or_else(|_| "both".into());
    if which == "sqlite" || which == "both" {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            &format!("sqlite://{}/bench.db", dir.path().display()),
            targets,
        )
        .await;
    }
    if which == "postgres" || which == "both" {
        let Ok(admin) = sqlx::PgPool::connect(PG).await else {
            println!("postgres  SKIPPED: not reachable at 127.0.0.1:5432");
            return;
        };
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        run(
            "postgres",
            &format!("{PG}?options=-c%20search_path%3D{schema}"),
            targets,
        )
        .await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    }
}
