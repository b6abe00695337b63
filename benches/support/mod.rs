//! What the benches that watch a dialing campaign share: a herald running
//! in-process on SQLite with the built-in SIP callee simulator on the
//! default trunk, and a campaign of `targets` numbers at `cps` with a
//! script agent that ends each answered call.
#![allow(dead_code)]

use herald::app::App;
use herald::config::{Config, SIMULATOR_PROXY};
use serde_json::{json, Value};

pub struct Dialing {
    pub app: App,
    pub base: String,
    pub key: String,
    pub campaign: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Dialing {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// The campaign's `GET …/stats`.
    pub async fn stats(&self) -> Value {
        self.client
            .get(format!(
                "{}/v1/campaigns/{}/stats",
                self.base, self.campaign
            ))
            .header("x-api-key", &self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Starts herald (logs at `log_level`) and a campaign of `targets` at
/// `cps`, started.
pub async fn dialing(targets: u64, cps: u64, log_level: &str) -> Dialing {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bench.db", dir.path().display());
    let env = [
        ("HERALD__DATABASE__URL", db.as_str()),
        ("HERALD__API__LISTEN", "127.0.0.1:0"),
        ("HERALD__TRUNKS__DEFAULT__PROXY", SIMULATOR_PROXY),
        ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "100000"),
        ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", "100000"),
        ("HERALD__LOG__LEVEL", log_level),
    ];
    let config = Config::load_from(
        None,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let app = App::start(&config, None).await.unwrap();
    let base = format!("http://{}", app.addr);
    let (_, key) = app.store.create_api_key("bench", 0).await.unwrap();
    let mut d = Dialing {
        app,
        base,
        key,
        campaign: String::new(),
        client: reqwest::Client::new(),
        _dir: dir,
    };
    let od = d.post("/v1/outdials", json!({"name": "watched"})).await;
    let od = od["id"].as_str().unwrap().to_string();
    let mut csv = String::from("phone\n");
    for i in 0..targets {
        csv.push_str(&format!("+1555{i:07}\n"));
    }
    let r = d
        .client
        .post(format!("{}/v1/outdials/{od}/targets", d.base))
        .header("x-api-key", &d.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let op = d
        .post("/v1/outplans", json!({"name": "once", "try_count_max": 1}))
        .await;
    let ag = d
        .post(
            "/v1/agents",
            json!({"name": "bye", "kind": "script", "max_concurrent_sessions": 100_000,
                   "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}}),
        )
        .await;
    let c = d
        .post(
            "/v1/campaigns",
            json!({"name": "bench", "outdial_id": od, "outplan_id": op["id"], "agent_id": ag["id"],
                   "calls_per_second": cps, "max_concurrent_calls": 5000}),
        )
        .await;
    d.campaign = c["id"].as_str().unwrap().to_string();
    d.post(&format!("/v1/campaigns/{}/start", d.campaign), json!({}))
        .await;
    d
}
