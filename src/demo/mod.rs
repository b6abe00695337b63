//! `herald demo`: a temporary herald (SQLite in a temporary directory, the
//! embedded callee simulator), an appointment-confirmation campaign to
//! synthetic people in several time zones, live progress, and a summary.
//!
//! Owns: the demo's configuration, creating its resources over the real
//! REST API, following the campaign, stopping it on Ctrl-C, and cleaning
//! up. Must not: reach past the REST API and the database it created, or
//! leave a process, a port or (without `--db`) a file behind.

mod people;
mod report;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::app::{shutdown_signal, App};
use crate::cli::DemoArgs;
use crate::config::{Config, SIMULATOR_PROXY};

/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The trunk the demo adds, dialing the simulator with room for the campaign.
const DEMO_TRUNK: &str = "demo";

/// Runs the demo; returns the process exit code.
pub async fn run(base: Config, args: DemoArgs) -> anyhow::Result<u8> {
    if args.targets == 0 || args.targets > people::MAX_PEOPLE {
        bail!("--targets must be between 1 and {}", people::MAX_PEOPLE);
    }
    if !args.cps.is_finite() || args.cps <= 0.0 || args.concurrency == 0 {
        bail!("--cps and --concurrency must be above 0");
    }
    let scratch =
        std::env::temp_dir().join(format!("herald-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let db_path = match &args.db {
        Some(p) => absolute(p)?,
        None => scratch.join("herald.db"),
    };
    let result = run_in(base, &args, &db_path).await;
    std::fs::remove_dir_all(&scratch).ok();
    result
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(p))
}

fn demo_config(mut config: Config, args: &DemoArgs, db_path: &std::path::Path) -> Config {
    config.database.url = format!("sqlite://{}", db_path.display());
    config.api.listen = "127.0.0.1:0".into();
    config.simulator.enabled = true;
    config.simulator.seed = args.seed;
    config.channels.email.transport = "file".into();
    config.channels.email.outbox_dir = db_path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("outbox")
        .display()
        .to_string();
    config.channels.sms.transport = "simulator".into();
    let mut trunk = config
        .trunks
        .get("default")
        .cloned()
        .expect("the embedded config has a default trunk");
    trunk.proxy = SIMULATOR_PROXY.into();
    trunk.max_concurrent_calls = args.concurrency.max(1);
    trunk.max_calls_per_second = args.cps.ceil().max(1.0) as u32;
    config.trunks.insert(DEMO_TRUNK.into(), trunk);
    config
}

async fn run_in(base: Config, args: &DemoArgs, db_path: &std::path::Path) -> anyhow::Result<u8> {
    let config = demo_config(base, args, db_path);
    let signal = shutdown_signal();
    let app = App::start(&config, None).await.context("starting herald")?;
    let now = chrono::Utc::now();
    let (_, key) = app
        .store
        .create_api_key("demo", now.timestamp_millis())
        .await?;
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", app.addr),
        key,
        store: app.store.clone(),
    };
    println!(
        "herald demo: herald on {}, callee simulator on {}",
        api.base,
        app.simulator_addr
            .map(|a| format!("sip:{a}"))
            .unwrap_or_default()
    );
    println!("database: {}", db_path.display());
    tokio::pin!(signal);
    let outcome = drive(&api, args, now, signal.as_mut()).await;
    let code = match outcome {
        Ok((ids, started, interrupted)) => {
            if !interrupted {
                report::wait_messages_settled(&app.store, Duration::from_secs(20)).await;
            }
            let summary = report::Summary::load(&app.store, &ids, started.elapsed()).await?;
            println!();
            summary.print(interrupted);
            report::print_urls(&api.base, &api.key, &ids, args.keep && !interrupted);
            if args.keep && !interrupted {
                signal.await;
            }
            if interrupted {
                EXIT_INTERRUPTED
            } else {
                0
            }
        }
        Err(e) => {
            app.shutdown().await;
            return Err(e);
        }
    };
    app.shutdown().await;
    Ok(code)
}

/// The ids the summary and the URLs need.
pub(crate) struct Ids {
    pub campaign: String,
    pub outdial: String,
}

/// Creates everything, starts the campaign and follows it to its end (or Ctrl-C).
async fn drive(
    api: &Api,
    args: &DemoArgs,
    now: chrono::DateTime<chrono::Utc>,
    mut signal: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> anyhow::Result<(Ids, Instant, bool)> {
    let agent = api
        .post(
            "/v1/agents",
            json!({"name": "appointment-confirmation", "kind": "script",
                   "script": "appointment-confirmation", "max_concurrent_sessions": args.concurrency}),
        )
        .await?;
    let outdial = api
        .post(
            "/v1/outdials",
            json!({"name": "demo: appointment reminders"}),
        )
        .await?;
    let outdial_id = id(&outdial)?;
    let people = people::synthetic(args.targets, now);
    for chunk in people.chunks(500) {
        let rep = api
            .post(
                &format!("/v1/outdials/{outdial_id}/targets"),
                json!({"targets": chunk}),
            )
            .await?;
        if rep["invalid_count"].as_u64().unwrap_or(0) > 0 {
            bail!("the demo's own targets were refused: {rep}");
        }
    }
    let outplan = api
        .post(
            "/v1/outplans",
            json!({"name": "demo: 3 tries, quick retries", "caller_id": "+15550001111",
                   "dial_timeout_s": 5, "try_count_max": 3,
                   "retry": {"busy_s": 3, "no_answer_s": 4, "failed_s": 3, "backoff": 1.5, "jitter_s": 1},
                   "max_call_duration_s": 60}),
        )
        .await?;
    // Emergency priority: calling windows do not apply, so the demo runs at any hour.
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "demo: confirm tomorrow's appointments",
                   "outdial_id": outdial_id, "outplan_id": id(&outplan)?, "agent_id": id(&agent)?,
                   "trunk": DEMO_TRUNK, "calls_per_second": args.cps,
                   "max_concurrent_calls": args.concurrency, "priority": "emergency",
                   "end_handle": "stop"}),
        )
        .await?;
    let ids = Ids {
        campaign: id(&campaign)?,
        outdial: outdial_id,
    };
    // The day-before SMS reminder, from a shipped template, to everyone.
    for t in [REMINDER_TEMPLATE, CONFIRMED_TEMPLATE] {
        let body: Value = serde_json::from_str(t).context("a shipped template")?;
        let t = api.post("/v1/templates", body).await?;
        api.post(&format!("/v1/templates/{}/activate", id(&t)?), json!({}))
            .await?;
    }
    let reminders: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"to": p["destination"]["target"], "template_id": "appointment_reminder",
                   "template_variables": p["variables"], "idempotency_key": format!("demo-reminder-{i}")})
        })
        .collect();
    send_all(api, "/v1/sms", reminders).await?;
    println!(
        "sent {} SMS reminders (template appointment_reminder)",
        people.len()
    );
    println!(
        "campaign {}: {} people in 8 time zones, {} calls/s, {} at once, up to 3 tries (priority emergency: no calling window)",
        ids.campaign, args.targets, args.cps, args.concurrency
    );
    if args.keep {
        println!(
            "console: {}/ui/login (log in with the API key {}), then {}/ui/campaigns/{} to watch it",
            api.base, api.key, api.base, ids.campaign
        );
    }
    let started = Instant::now();
    api.post(&format!("/v1/campaigns/{}/start", ids.campaign), json!({}))
        .await?;
    let tty = std::io::stdout().is_terminal();
    let mut progress = report::Progress::new(tty, args.targets);
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(2)
    };
    let stats_path = format!("/v1/campaigns/{}/stats", ids.campaign);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = signal.as_mut() => {
                progress.finish();
                println!("interrupted: stopping the campaign (live calls are hung up)");
                stop(api, &ids.campaign).await;
                return Ok((ids, started, true));
            }
            _ = tick.tick() => {
                let stats = api.get(&stats_path).await?;
                progress.show(&stats, started.elapsed());
                let status = stats["status"].as_str().unwrap_or_default();
                if matches!(status, "finished" | "stopped") {
                    progress.finish();
                    confirm_by_email(api, &ids).await?;
                    return Ok((ids, started, false));
                }
                if status == "paused" {
                    progress.finish();
                    bail!("the campaign paused: {}", stats["status_reason"]);
                }
            }
        }
    }
}

/// The shipped message templates.
const REMINDER_TEMPLATE: &str =
    include_str!("../../scenarios/templates/appointment_reminder.sms.json");
const CONFIRMED_TEMPLATE: &str =
    include_str!("../../scenarios/templates/appointment_confirmed.email.json");

/// POSTs each body to `path`, 16 at a time.
async fn send_all(api: &Api, path: &str, bodies: Vec<Value>) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let mut sends = futures::stream::iter(bodies)
        .map(|b| api.post(path, b))
        .buffer_unordered(16);
    while let Some(r) = sends.next().await {
        r?;
    }
    Ok(())
}

/// An e-mail to each person who confirmed on the call.
async fn confirm_by_email(api: &Api, ids: &Ids) -> anyhow::Result<()> {
    let confirmed = api
        .store
        .targets_with_result(&ids.campaign, "confirmed")
        .await?;
    let mails: Vec<Value> = confirmed
        .iter()
        .filter_map(|v| serde_json::from_str::<Value>(v).ok())
        .map(|v| {
            json!({"to": [{"email": v["email"], "name": v["name"]}], "template_id": "appointment_confirmed",
                   "template_variables": {"name": v["name"], "appointment": v["appointment"], "clinic": v["clinic"]}})
        })
        .collect();
    let n = mails.len();
    send_all(api, "/v1/emails", mails).await?;
    println!("sent {n} confirmation e-mails (template appointment_confirmed)");
    Ok(())
}

/// Force-stops the campaign and waits (bounded) until it has stopped.
async fn stop(api: &Api, campaign: &str) {
    if let Err(e) = api
        .post(
            &format!("/v1/campaigns/{campaign}/stop"),
            json!({"force": true}),
        )
        .await
    {
        eprintln!("stopping the campaign: {e:#}");
        return;
    }
    let path = format!("/v1/campaigns/{campaign}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match api.get(&path).await {
            Ok(c) if c["status"] == "stopped" => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
}

fn id(v: &Value) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no id in {v}"))
}

/// The demo's REST client.
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    /// The demo's own database (for the follow-up e-mails' recipients).
    store: crate::store::Store,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        answer(r, "POST", path).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        answer(r, "GET", path).await
    }
}

async fn answer(r: reqwest::Response, method: &str, path: &str) -> anyhow::Result<Value> {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{method} {path} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
}
