//! The crash harness: a campaign against SIPp's mixed population (ringing,
//! busy, not found, answered calls that herald's script agent talks to and
//! hangs up), a webhook receiver taking every event, and `herald serve`
//! processes killed with SIGKILL at moments drawn from a seeded generator and
//! started again at once, on SQLite (one node) or PostgreSQL (two nodes; the
//! nodes are killed in turn). At the end an audit that must pass:
//!
//! - every target is terminal (finished or failed), no attempt is open;
//! - each target's try count equals its attempt rows;
//! - no target has two attempts overlapping in time;
//! - the campaign's events are numbered 1..N without a gap, every row of a
//!   target's history has its `target.transition` event, and replaying the
//!   history gives each target's state;
//! - every INVITE SIPp received (by Call-ID) belongs to one attempt, every
//!   attempt that recorded a Call-ID reached SIPp, and the INVITEs that
//!   belong to no recorded Call-ID are at most the attempts a kill
//!   interrupted (an attempt killed before its INVITE went out sent none);
//! - every event was delivered to the webhook at least once.
//!
//! `tests/chaos.rs` runs short versions in the suite; `benches/chaos.rs` the
//! long ones (sizes from the environment).
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::json;

use crate::process::HeraldProcess;
use crate::sipp::{SippUas, UasOptions};

/// What to run.
pub struct Plan {
    pub targets: usize,
    pub kills: usize,
    /// `sqlite://…` (one node) or `postgres://…` (`nodes` nodes).
    pub db_url: String,
    pub nodes: usize,
    pub calls_per_second: f64,
    pub seed: u64,
}

/// What happened, for the benchmark's notes.
#[derive(Debug)]
pub struct Report {
    pub elapsed: Duration,
    /// At each kill: ms since the start, the node, attempts open, events not yet delivered.
    pub kills: Vec<(u128, usize, i64, i64)>,
    pub attempts: i64,
    pub interrupted: i64,
    pub invites_at_sipp: usize,
    pub events: i64,
    pub deliveries: usize,
}

/// A fresh PostgreSQL schema for one run, dropped by [`PgSchema::drop`].
pub struct PgSchema {
    admin: sqlx::PgPool,
    name: String,
    /// A database URL whose search path is the schema.
    pub url: String,
}

impl PgSchema {
    /// `None` when PostgreSQL is not reachable.
    pub async fn create() -> Option<PgSchema> {
        let admin = sqlx::PgPool::connect(crate::pg::PG_ADMIN_URL).await.ok()?;
        let name = format!("chaos_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("create the schema");
        let url = format!(
            "{}?options=-c%20search_path%3D{name}",
            crate::pg::PG_ADMIN_URL
        );
        Some(PgSchema { admin, name, url })
    }

    pub async fn drop(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await
            .ok();
    }
}

/// A tiny deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The audit's window onto the database, SQLite or PostgreSQL.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    async fn connect(url: &str) -> Db {
        if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqlitePool::connect(url).await.expect("open SQLite"))
        } else {
            Db::Pg(sqlx::PgPool::connect(url).await.expect("open PostgreSQL"))
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Db::Pg(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn text(&self, sql: &str) -> String {
        match self {
            Db::Sqlite(p) => sqlx::query_scalar::<_, String>(sql).fetch_one(p).await,
            Db::Pg(p) => sqlx::query_scalar::<_, String>(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of text columns (NULL as None).
    async fn rows(&self, sql: &str, cols: usize) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        match self {
            Db::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| (0..cols).map(|i| r.get::<Option<String>, _>(i)).collect())
                .collect(),
            Db::Pg(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| (0..cols).map(|i| r.get::<Option<String>, _>(i)).collect())
                .collect(),
        }
    }
}

/// The webhook receiver: every `Herald-Webhook-Id` answered 200.
#[derive(Default)]
struct Receiver {
    ids: Mutex<HashSet<String>>,
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let state = state.clone();
            async move {
                if let Some(id) = headers
                    .get("herald-webhook-id")
                    .and_then(|v| v.to_str().ok())
                {
                    state.ids.lock().unwrap().insert(id.to_string());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (r, url)
}

fn node(plan: &Plan, dir: &std::path::Path, proxy: &str) -> HeraldProcess {
    HeraldProcess::start(
        dir,
        &[
            ("HERALD__DATABASE__URL", &plan.db_url),
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy),
            ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "1000"),
            ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", "1000"),
            ("HERALD__WEBHOOKS__POLL_INTERVAL_MS", "50"),
        ],
        false,
    )
}

/// Polls (every 50 ms, at most `within`) until `done` says so.
async fn until<F, Fut>(within: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let ok = tokio::time::timeout(within, async {
        loop {
            tick.tick().await;
            if done().await {
                return;
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "{what} did not happen within {within:?}");
}

/// The Call-IDs of the INVITEs SIPp received (retransmissions counted once).
fn invite_call_ids(messages: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for chunk in messages.split("message received") {
        let mut lines = chunk.lines().map(str::trim).filter(|l| !l.is_empty());
        let _header_rest = lines.next();
        let Some(first) = lines.next() else { continue };
        if !first.starts_with("INVITE ") {
            continue;
        }
        for l in lines {
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower
                .strip_prefix("call-id:")
                .or_else(|| lower.strip_prefix("i:"))
            {
                let _ = v;
                let value = l.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
                ids.insert(value.to_string());
                break;
            }
        }
    }
    ids
}

pub async fn run(plan: Plan) -> Report {
    let began = Instant::now();
    let mut rng = Rng(plan.seed | 1);
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_mixed.xml",
        calls: None,
        extra: &[],
        timeout_s: 3600,
        trace: true,
    })
    .await;
    let proxy = format!("sip:{}", uas.addr);
    let (hook, hook_url) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let mut nodes: Vec<HeraldProcess> = (0..plan.nodes)
        .map(|_| node(&plan, dir.path(), &proxy))
        .collect();

    let a = &nodes[0];
    a.post(
        &c,
        "/v1/webhooks",
        json!({"url": hook_url, "secret": "chaos-secret-0123456789"}),
    )
    .await;
    let od = a.post(&c, "/v1/outdials", json!({"name": "chaos"})).await;
    let od = od["id"].as_str().unwrap().to_string();
    let mut csv = String::from("phone\n");
    for i in 0..plan.targets {
        csv.push_str(&format!("+1555{:07}\n", 6_000_000 + i));
    }
    let r = c
        .post(format!("{}/v1/outdials/{od}/targets", a.base))
        .header("x-api-key", &a.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let op = a
        .post(
            &c,
            "/v1/outplans",
            json!({"name": "twice", "try_count_max": 2, "dial_timeout_s": 10,
                   "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}}),
        )
        .await;
    // Answered calls hear a prompt (about a second), then herald hangs up.
    let ag = a
        .post(
            &c,
            "/v1/agents",
            json!({"name": "talker", "kind": "script", "max_concurrent_sessions": 1000,
                   "script": {"start": "hi", "steps": {"hi": {"result": "completed", "play": "goodbye.wav"}}}}),
        )
        .await;
    let camp = a
        .post(
            &c,
            "/v1/campaigns",
            json!({"name": "chaos", "outdial_id": od, "outplan_id": op["id"], "agent_id": ag["id"],
                   "calls_per_second": plan.calls_per_second, "max_concurrent_calls": 100}),
        )
        .await;
    let camp = camp["id"].as_str().unwrap().to_string();
    a.post(&c, &format!("/v1/campaigns/{camp}/start"), json!({}))
        .await;

    let db = Db::connect(&plan.db_url).await;
    // The k-th kill lands when the attempts placed so far cross a point
    // drawn from the k-th of `kills` equal stretches of the dialing (about
    // 1.2 attempts a target: some are tried twice), so kills follow the
    // campaign's progress whatever its speed on this backend.
    let span = plan.targets as f64 * 1.2;
    let mut kills = Vec::new();
    for k in 0..plan.kills {
        let stretch = span / plan.kills as f64;
        let point = (stretch * (k as f64 + rng.below(1000) as f64 / 1000.0)) as i64;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let placed = db.scalar("SELECT COUNT(*) FROM calls").await;
            let status = db
                .text(&format!("SELECT status FROM campaigns WHERE id = '{camp}'"))
                .await;
            if placed >= point || status == "finished" {
                break;
            }
        }
        let victim = k % nodes.len();
        nodes[victim].kill9();
        let open = db
            .scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .await;
        let seq = db
            .scalar(&format!(
                "SELECT event_seq FROM campaigns WHERE id = '{camp}'"
            ))
            .await;
        let undelivered = seq - hook.ids.lock().unwrap().len() as i64;
        kills.push((began.elapsed().as_millis(), victim, open, undelivered));
        nodes[victim] = node(&plan, dir.path(), &proxy);
    }

    // Two tries a target at the campaign's rate, four times over.
    let budget =
        Duration::from_secs_f64(plan.targets as f64 * 2.0 / plan.calls_per_second * 4.0 + 60.0);
    until(budget, "the campaign finishing", || async {
        db.text(&format!("SELECT status FROM campaigns WHERE id = '{camp}'"))
            .await
            == "finished"
    })
    .await;
    let events = db
        .scalar(&format!(
            "SELECT event_seq FROM campaigns WHERE id = '{camp}'"
        ))
        .await;
    until(Duration::from_secs(60), "every event delivered", || async {
        (1..=events).all(|s| hook.ids.lock().unwrap().contains(&format!("{camp}:{s}")))
    })
    .await;

    // The audit.
    let not_terminal = db
        .scalar("SELECT COUNT(*) FROM targets WHERE state NOT IN ('finished', 'failed')")
        .await;
    assert_eq!(not_terminal, 0, "targets left unfinished");
    let open = db
        .scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
        .await;
    assert_eq!(open, 0, "attempts left open");
    let wrong_tries = db
        .scalar(
            "SELECT COUNT(*) FROM targets t LEFT JOIN \
             (SELECT target_id, COUNT(*) AS n FROM calls GROUP BY target_id) c ON c.target_id = t.id \
             WHERE t.try_count_current <> COALESCE(c.n, 0)",
        )
        .await;
    assert_eq!(
        wrong_tries, 0,
        "targets whose try count is not their attempt rows"
    );
    let overlaps = db
        .scalar(
            "SELECT COUNT(*) FROM calls a JOIN calls b ON a.target_id = b.target_id AND a.id < b.id \
             WHERE b.created_at < a.ended_at AND a.created_at < b.ended_at",
        )
        .await;
    assert_eq!(overlaps, 0, "a target was dialed twice at once");
    let attempts = db.scalar("SELECT COUNT(*) FROM calls").await;
    let interrupted = db
        .scalar("SELECT COUNT(*) FROM calls WHERE outcome = 'interrupted'")
        .await;

    // Every transition has its event, numbered without a gap.
    let history = db
        .rows(
            "SELECT target_id, from_state, to_state FROM target_events ORDER BY id",
            3,
        )
        .await;
    let live = nodes.iter().find(|n| !n.base.is_empty()).unwrap();
    let mut stream = crate::sse::SseClient::connect(
        &c,
        &format!("{}/v1/campaigns/{camp}/events?after=0", live.base),
        &live.key,
        None,
    )
    .await;
    let mut expected_seq = 1;
    let mut transitions: HashMap<(String, String, String), i64> = HashMap::new();
    while expected_seq <= events {
        let m = stream
            .next(Duration::from_secs(30))
            .await
            .expect("the stream ended early");
        assert_eq!(m.seq(), expected_seq, "a gap in the event numbers");
        if m.event.as_deref() == Some("target.transition") {
            let d = m.json();
            let d = if d["data"].is_object() {
                d["data"].clone()
            } else {
                d
            };
            *transitions
                .entry((
                    d["target_id"].as_str().unwrap_or_default().to_string(),
                    d["from"].as_str().unwrap_or_default().to_string(),
                    d["to"].as_str().unwrap_or_default().to_string(),
                ))
                .or_default() += 1;
        }
        expected_seq += 1;
    }
    drop(stream);
    let mut rows: HashMap<(String, String, String), i64> = HashMap::new();
    let mut state: HashMap<String, String> = HashMap::new();
    for r in &history {
        let (t, from, to) = (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].clone().unwrap(),
        );
        let cur = state.entry(t.clone()).or_insert_with(|| "idle".into());
        assert_eq!(*cur, from, "target {t}: {from}->{to} after {cur}");
        *cur = to.clone();
        *rows.entry((t, from, to)).or_default() += 1;
    }
    assert_eq!(
        rows, transitions,
        "the history rows and the target.transition events differ"
    );
    for r in db.rows("SELECT id, state FROM targets", 2).await {
        let (t, st) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        assert_eq!(
            state.get(&t).map(String::as_str),
            Some(st.as_str()),
            "target {t}"
        );
    }

    // SIPp's INVITEs against the attempts.
    uas.quit();
    let log_dir = uas.log_dir().to_path_buf();
    let messages = std::fs::read_to_string(log_dir.join("messages.log")).unwrap_or_default();
    let at_sipp = invite_call_ids(&messages);
    let recorded: BTreeSet<String> = db
        .rows(
            "SELECT sip_call_id FROM calls WHERE sip_call_id IS NOT NULL",
            1,
        )
        .await
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    let missing: Vec<_> = recorded.difference(&at_sipp).take(5).collect();
    assert!(
        missing.is_empty(),
        "attempts whose INVITE SIPp never saw: {missing:?}"
    );
    let unrecorded = at_sipp.difference(&recorded).count() as i64;
    assert!(
        unrecorded <= interrupted,
        "{unrecorded} INVITEs belong to no attempt's Call-ID, more than the {interrupted} interrupted attempts"
    );
    assert!(
        at_sipp.len() as i64 <= attempts,
        "SIPp saw {} INVITEs for {attempts} attempts",
        at_sipp.len()
    );
    let _ = uas.finish().await;
    let deliveries = hook.ids.lock().unwrap().len();
    drop(nodes);
    Report {
        elapsed: began.elapsed(),
        kills,
        attempts,
        interrupted,
        invites_at_sipp: at_sipp.len(),
        events,
        deliveries,
    }
}
