//! Shared test helpers: start the real herald on port 0 against a fresh
//! database (a temp SQLite file, or a fresh PostgreSQL schema), and talk HTTP.
#![allow(dead_code)]

pub mod capture;
pub mod pg;

use std::time::Duration;

use herald::app::App;
use herald::config::Config;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

pub use pg::{postgres_reachable, PG_ADMIN_URL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

/// Logs go to the test's captured output (shown when it fails).
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "herald=info".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

impl TestDb {
    /// `None` when PostgreSQL was asked for and is not reachable (the caller
    /// skips, loudly; with `HERALD_TEST_REQUIRE_PG=1` the test fails instead).
    pub async fn new(db: Db) -> Option<TestDb> {
        init_logs();
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/herald.db", dir.path().display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    schema: None,
                })
            }
            Db::Postgres => {
                if !postgres_reachable().await {
                    pg::skip_without_postgres("the PostgreSQL half of this test");
                    return None;
                }
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(PG_ADMIN_URL)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .expect("create schema");
                admin.close().await;
                let url = format!("{PG_ADMIN_URL}?options=-c%20search_path%3D{schema}");
                Some(TestDb {
                    url,
                    _dir: None,
                    schema: Some(schema),
                })
            }
        }
    }

    /// Drops the PostgreSQL schema (SQLite's temp dir goes away by itself).
    pub async fn cleanup(&self) {
        if let Some(schema) = &self.schema {
            if let Ok(admin) = sqlx::PgPool::connect(PG_ADMIN_URL).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
    }
}

/// A running herald and an HTTP client holding a valid API key.
pub struct TestApp {
    pub base: String,
    pub key: String,
    pub client: Client,
    pub db: TestDb,
    app: Option<App>,
}

/// The config every test app uses: port 0, the given database, nothing else changed.
pub fn test_config(db_url: &str, extra: &[(&str, &str)]) -> Config {
    Config::load_from(None, test_env(db_url, extra)).expect("test config")
}

/// The environment of [`test_config`].
fn test_env(db_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("HERALD__DATABASE__URL".to_string(), db_url.to_string()),
        ("HERALD__API__LISTEN".to_string(), "127.0.0.1:0".to_string()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// As [`spawn_app_with`], with `toml` as the config file (arrays of tables
/// such as `[[channels.sms.providers]]` cannot be set from the environment).
pub async fn spawn_app_toml(db: Db, toml: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let db = TestDb::new(db).await?;
    let file = tempfile::NamedTempFile::new().expect("a temporary config file");
    std::fs::write(file.path(), toml).expect("writing the config file");
    let config =
        Config::load_from(Some(file.path()), test_env(&db.url, extra)).expect("test config");
    start(
        db,
        config,
        None,
        herald::app::TelephonyChoice::Sip,
        herald::clock::Clock::system(),
    )
    .await
}

/// Herald whose default trunk dials `trunk` (a SIPp callee's address), with
/// `extra` settings on top.
pub async fn app_for(
    db: Db,
    trunk: std::net::SocketAddr,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let proxy = format!("sip:{trunk}");
    let mut settings = vec![("HERALD__TRUNKS__DEFAULT__PROXY", proxy.as_str())];
    settings.extend_from_slice(extra);
    spawn_app_with(db, &settings, None).await
}

/// A `phone` CSV of `n` numbers `+1555…` counting up from `base`.
pub fn csv(n: usize, base: u64) -> String {
    let numbers: Vec<String> = (base..base + n as u64)
        .map(|i| format!("+1555{i:07}"))
        .collect();
    csv_of(&numbers)
}

/// A `phone` CSV of the given numbers.
pub fn csv_of(numbers: &[String]) -> String {
    let mut s = String::from("phone\n");
    for n in numbers {
        s.push_str(n);
        s.push('\n');
    }
    s
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, &[], None).await
}

pub async fn spawn_app_with(
    db: Db,
    extra: &[(&str, &str)],
    bootstrap: Option<&str>,
) -> Option<TestApp> {
    spawn(db, extra, bootstrap, herald::app::TelephonyChoice::Sip).await
}

/// Starts herald on a fresh database with `extra` settings and `telephony`,
/// and creates an API key for the client.
async fn spawn(
    db: Db,
    extra: &[(&str, &str)],
    bootstrap: Option<&str>,
    telephony: herald::app::TelephonyChoice,
) -> Option<TestApp> {
    spawn_clocked(
        db,
        extra,
        bootstrap,
        telephony,
        herald::clock::Clock::system(),
    )
    .await
}

/// As [`spawn`], with the scheduler reading `clock`.
async fn spawn_clocked(
    db: Db,
    extra: &[(&str, &str)],
    bootstrap: Option<&str>,
    telephony: herald::app::TelephonyChoice,
    clock: herald::clock::Clock,
) -> Option<TestApp> {
    let db = TestDb::new(db).await?;
    let config = test_config(&db.url, extra);
    start(db, config, bootstrap, telephony, clock).await
}

/// Starts herald with `config` on `db` and creates an API key for the client.
async fn start(
    db: TestDb,
    config: Config,
    bootstrap: Option<&str>,
    telephony: herald::app::TelephonyChoice,
    clock: herald::clock::Clock,
) -> Option<TestApp> {
    let app = App::start_with_clock(&config, bootstrap.map(str::to_string), telephony, clock)
        .await
        .expect("herald starts");
    let (_, key) = app.store.create_api_key("test", 0).await.expect("api key");
    Some(TestApp {
        base: format!("http://{}", app.addr),
        key,
        client: Client::new(),
        db,
        app: Some(app),
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn store(&self) -> &herald::store::Store {
        &self.app.as_ref().expect("running").store
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("x-api-key", &self.key)
            .send()
            .await
            .expect("GET")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .header("x-api-key", &self.key)
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("x-api-key", &self.key)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .header("x-api-key", &self.key)
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn post_csv(&self, path: &str, csv: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(self.url(path))
            .header("x-api-key", &self.key)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .expect("POST csv")
    }

    /// POSTs and expects `status`, returning the JSON body.
    pub async fn post_ok(&self, path: &str, body: &Value, status: StatusCode) -> Value {
        let r = self.post(path, body).await;
        expect_json(r, status).await
    }

    /// Creates an empty outdial named "leads"; returns its id.
    pub async fn outdial(&self) -> String {
        id_of(
            &self
                .post_ok(
                    "/v1/outdials",
                    &serde_json::json!({"name": "leads"}),
                    StatusCode::CREATED,
                )
                .await,
        )
    }

    /// Creates an outdial, an outplan and an agent; returns their ids.
    pub async fn fixtures(&self) -> (String, String, String) {
        let od = self
            .post_ok(
                "/v1/outdials",
                &serde_json::json!({"name": "leads"}),
                StatusCode::CREATED,
            )
            .await;
        let op = self
            .post_ok(
                "/v1/outplans",
                &serde_json::json!({"name": "3x"}),
                StatusCode::CREATED,
            )
            .await;
        let ag = self
            .post_ok(
                "/v1/agents",
                &serde_json::json!({"name": "bot", "kind": "media_stream", "url": "ws://127.0.0.1:9/stream"}),
                StatusCode::CREATED,
            )
            .await;
        (id_of(&od), id_of(&op), id_of(&ag))
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.db.cleanup().await;
    }
}

pub fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Asserts the status (printing the body when it differs) and returns the JSON body.
pub async fn expect_json(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    }
}

/// Asserts an API error: status, code, and that the message mentions `needle`.
pub async fn expect_error(r: Response, status: StatusCode, code: &str, needle: &str) -> Value {
    let body = expect_json(r, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "error message {msg:?} does not mention {needle:?}"
    );
    body
}

/// Runs an async test body on SQLite and on PostgreSQL (skipping loudly when
/// unreachable, failing instead with `HERALD_TEST_REQUIRE_PG=1`).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                $body(common::Db::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                $body(common::Db::Postgres).await;
            }
        }
    };
}

/// Like [`spawn_app_with`], with the instant-outcome telephony below the call-control interface.
pub async fn spawn_instant_app(db: Db, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut settings = vec![
        ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "100000"),
        ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", "100000"),
    ];
    settings.extend_from_slice(extra);
    let telephony = std::sync::Arc::new(herald::sim::InstantTelephony::default());
    spawn(
        db,
        &settings,
        None,
        herald::app::TelephonyChoice::Custom(telephony),
    )
    .await
}

/// Like [`spawn_instant_app`], with the scheduler on a manual clock standing
/// at `start`; the returned handle moves it.
pub async fn spawn_instant_app_at(
    db: Db,
    start: chrono::DateTime<chrono::Utc>,
) -> Option<(TestApp, herald::clock::ManualClock)> {
    let settings = [
        ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "100000"),
        ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", "100000"),
    ];
    let (clock, hand) = herald::clock::Clock::manual(start);
    let telephony = std::sync::Arc::new(herald::sim::InstantTelephony::default());
    let app = spawn_clocked(
        db,
        &settings,
        None,
        herald::app::TelephonyChoice::Custom(telephony),
        clock,
    )
    .await?;
    Some((app, hand))
}

/// As [`spawn_app_toml`], its scheduler and message senders on a manual
/// clock standing at `start`.
pub async fn spawn_app_toml_at(
    db: Db,
    toml: &str,
    extra: &[(&str, &str)],
    at: chrono::DateTime<chrono::Utc>,
) -> Option<(TestApp, herald::clock::ManualClock)> {
    let db = TestDb::new(db).await?;
    let file = tempfile::NamedTempFile::new().expect("a temporary config file");
    std::fs::write(file.path(), toml).expect("writing the config file");
    let config =
        Config::load_from(Some(file.path()), test_env(&db.url, extra)).expect("test config");
    let (clock, hand) = herald::clock::Clock::manual(at);
    let app = start(db, config, None, herald::app::TelephonyChoice::Sip, clock).await?;
    Some((app, hand))
}

/// Waits (bounded) until the scheduler has read `clock` `n` more times: it
/// has looked at the time since the test last moved it.
pub async fn wait_clock_reads(clock: &herald::clock::ManualClock, n: u64) {
    let from = clock.reads();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while clock.reads() < from + n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler did not read the clock {n} times within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl TestApp {
    /// The embedded callee simulator's counters (zeros when it does not run).
    pub fn simulator_counts(&self) -> herald::sim::SimCounts {
        self.app
            .as_ref()
            .and_then(|a| a.simulator())
            .map(|s| s.counts())
            .unwrap_or_default()
    }

    /// Where herald receives e-mail delivery reports, when it does.
    /// herald's SIP address (where phones send requests).
    pub fn sip_addr(&self) -> Option<std::net::SocketAddr> {
        self.app.as_ref().and_then(|a| a.sip_addr)
    }

    /// The embedded callee simulator's SIP address, when it runs.
    pub fn simulator_addr(&self) -> Option<std::net::SocketAddr> {
        self.app.as_ref().and_then(|a| a.simulator_addr)
    }

    pub fn bounce_addr(&self) -> Option<std::net::SocketAddr> {
        self.app.as_ref().and_then(|a| a.bounce_addr)
    }

    pub fn events(&self) -> herald::events::EventBus {
        self.app.as_ref().expect("running").events.clone()
    }

    /// Runs `sql` (a single scalar) on the app's database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match &self.store().pool {
            herald::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            herald::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// Rows of columns as text (integers rendered as decimal).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        macro_rules! cells {
            ($r:expr) => {
                (0..$r.len())
                    .map(|i| {
                        $r.try_get::<Option<String>, _>(i)
                            .or_else(|_| {
                                $r.try_get::<Option<i64>, _>(i)
                                    .map(|v| v.map(|n| n.to_string()))
                            })
                            .or_else(|_| {
                                $r.try_get::<Option<i32>, _>(i)
                                    .map(|v| v.map(|n| n.to_string()))
                            })
                            .unwrap()
                    })
                    .collect()
            };
        }
        match &self.store().pool {
            herald::store::Pool::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| cells!(r))
                .collect(),
            herald::store::Pool::Postgres(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| cells!(r))
                .collect(),
        }
    }

    /// `POST /v1/campaigns/{c}/{verb}` with `body`; expects 200.
    pub async fn campaign_verb(&self, c: &str, verb: &str, body: Value) -> Value {
        self.post_ok(&format!("/v1/campaigns/{c}/{verb}"), &body, StatusCode::OK)
            .await
    }

    /// Creates an outdial with `csv` targets, an outplan and an agent, and a
    /// campaign over them (with `campaign` fields merged in); returns (campaign, outdial).
    pub async fn campaign(&self, csv: String, outplan: Value, campaign: Value) -> (String, String) {
        let od = id_of(
            &self
                .post_ok(
                    "/v1/outdials",
                    &serde_json::json!({"name": "list"}),
                    StatusCode::CREATED,
                )
                .await,
        );
        let rep = expect_json(
            self.post_csv(&format!("/v1/outdials/{od}/targets"), csv)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(rep["invalid_count"], 0, "{rep}");
        let op = id_of(
            &self
                .post_ok("/v1/outplans", &outplan, StatusCode::CREATED)
                .await,
        );
        let ag = id_of(
            &self.post_ok("/v1/agents", &serde_json::json!({"name": "bot", "kind": "script", "script": hang_up_script(), "max_concurrent_sessions": 1000}), StatusCode::CREATED).await,
        );
        let mut body =
            serde_json::json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag});
        herald::domain::fields::merge_patch(&mut body, &campaign);
        let c = self
            .post_ok("/v1/campaigns", &body, StatusCode::CREATED)
            .await;
        (id_of(&c), od)
    }
}

/// A script agent's script that ends the call at once with `completed`:
/// campaigns whose tests are about dialing, not about agents.
pub fn hang_up_script() -> Value {
    serde_json::json!({"start": "bye", "steps": {"bye": {"result": "completed"}}})
}

/// Waits (bounded) for the campaign to reach `status` on the event bus.
pub async fn wait_status(
    rx: &mut tokio::sync::broadcast::Receiver<herald::events::Event>,
    campaign: &str,
    status: &str,
    within: Duration,
) {
    let found = tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(herald::events::Event::CampaignStatusChanged {
                    campaign_id,
                    status: s,
                }) if campaign_id == campaign && s == status => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "campaign {campaign} did not become {status} within {within:?}"
    );
}

/// Waits (bounded) for a one-off call to reach its final status, which it returns.
pub async fn wait_call_final(
    rx: &mut tokio::sync::broadcast::Receiver<herald::events::Event>,
    id: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(herald::events::Event::CallFinished { call_id, status }) = rx.recv().await {
                if call_id == id && status != "scheduled" && status != "pending" {
                    return status;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("call {id} did not finish in time"))
}

/// Checks every target's event chain: it starts at idle, each step starts where
/// the last ended, and it ends at the target's current state.
pub async fn assert_event_chains(app: &TestApp, outdial: &str) {
    let targets = app
        .rows(&format!(
            "SELECT id, state FROM targets WHERE outdial_id = '{outdial}'"
        ))
        .await;
    let events = app.rows(&format!(
        "SELECT e.target_id, e.from_state, e.to_state FROM target_events e JOIN targets t ON t.id = e.target_id \
         WHERE t.outdial_id = '{outdial}' ORDER BY e.id")).await;
    let mut at: std::collections::HashMap<String, String> = targets
        .iter()
        .map(|r| (r[0].clone().unwrap(), "idle".to_string()))
        .collect();
    for e in &events {
        let (t, from, to) = (
            e[0].clone().unwrap(),
            e[1].clone().unwrap(),
            e[2].clone().unwrap(),
        );
        let cur = at.get_mut(&t).expect("event of a known target");
        assert_eq!(
            *cur, from,
            "target {t}: event {from}->{to} does not start where it was ({cur})"
        );
        *cur = to;
    }
    for r in &targets {
        let id = r[0].as_ref().unwrap();
        assert_eq!(
            at[id].as_str(),
            r[1].as_deref().unwrap(),
            "target {id}: events end at {} but the row says {:?}",
            at[id],
            r[1]
        );
    }
}
