//! The assembled engine's call rate: a campaign run through the REST API of
//! a real `herald serve` process (release build) against a SIPp callee that
//! answers every INVITE at once (`scenarios/uas_cps.xml`), and SIPp's own
//! UAC against the same callee in the same run for comparison.
//!
//! The campaign: `HERALD_ENGINE_TARGETS` `sip:` targets (distinct URIs at
//! the SIPp), priority `emergency`, `calls_per_second` `HERALD_ENGINE_CPS`,
//! `max_concurrent_calls` 20,000, a script agent that ends each call at once
//! (`{"start":"bye","steps":{"bye":{"result":"completed"}}}`,
//! `max_concurrent_sessions` 20,000), the default trunk's limits raised to
//! 20,000. Timing runs from `POST …/start` to the campaign's `finished`.
//!
//! Reported: answered calls/s end to end; herald's CPU per call and its
//! busiest threads (from /proc/PID/task); each core's use over the run (from
//! /proc/stat, whoever used it); SIPp's CPU; a once-a-second timeline from
//! `GET /v1/campaigns/{id}/stats`; and what was written (calls, target
//! transitions, logged events), read back from the database afterwards. Then
//! SIPp's UAC places the same number of calls at the same rate at the same
//! callee, and the ratio is printed.
//!
//!     cargo bench --bench engine_cps                       # 3,000 targets, SQLite and PostgreSQL
//!     HERALD_ENGINE_TARGETS=30000 cargo bench --bench engine_cps
//!
//! Environment: `HERALD_ENGINE_TARGETS` (default 3000), `HERALD_ENGINE_CPS`
//! (default 3000), `HERALD_BENCH_DB` (`sqlite`, `postgres` or `both`, the
//! default; PostgreSQL is skipped with a message when 127.0.0.1:5432 is
//! unreachable), `HERALD_ENGINE_UAC` (`0` skips SIPp's UAC run),
//! `HERALD_ENGINE_TIMELINE` (`0` hides the per-second lines),
//! `HERALD_ENGINE_BIN` (the herald binary to run, default this build's; to
//! compare two versions in interleaved runs). herald's pid is printed when
//! it starts, for `perf record -p`.

#[path = "../tests/sipp/mod.rs"]
mod sipp;

#[path = "../tests/common/process.rs"]
mod process;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use process::HeraldProcess;
use serde_json::{json, Value};
use sipp::{run_uac, sipp_counter, SippUas, UasOptions};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The campaign's concurrency cap, the agent's sessions and the trunk's limits.
const LIMIT: u32 = 20_000;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a process or thread, from its `stat` file.
fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn process_cpu(pid: u32) -> f64 {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of each thread of `pid`, by thread id, with the thread's name.
fn thread_cpu(pid: u32) -> HashMap<String, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let base = format!("/proc/{pid}/task/{tid}");
        let name = std::fs::read_to_string(format!("{base}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.insert(tid, (name, stat_cpu(&format!("{base}/stat"))));
    }
    out
}

/// Per core: (busy, all) jiffies since boot, from /proc/stat (iowait counts as idle).
fn cores() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let all: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (all - idle, all)
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

struct Api<'a> {
    c: reqwest::Client,
    h: &'a HeraldProcess,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut r = self
            .c
            .request(method, format!("{}{path}", self.h.base))
            .header("x-api-key", &self.h.key);
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// What the database holds after the run.
struct Written {
    calls: i64,
    answered: i64,
    transitions: i64,
    events: i64,
    open_targets: i64,
}

async fn written(db_url: &str, campaign: &str, outdial: &str) -> Written {
    let q = [
        format!("SELECT COUNT(*) FROM calls WHERE campaign_id = '{campaign}'"),
        format!("SELECT COUNT(*) FROM calls WHERE campaign_id = '{campaign}' AND outcome = 'answered'"),
        format!("SELECT COUNT(*) FROM target_events WHERE campaign_id = '{campaign}'"),
        format!("SELECT event_seq FROM campaigns WHERE id = '{campaign}'"),
        format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{outdial}' AND state NOT IN ('finished', 'failed')"),
    ];
    let mut v = Vec::new();
    if db_url.starts_with("sqlite:") {
        let p = sqlx::SqlitePool::connect(db_url)
            .await
            .expect("open SQLite");
        for s in &q {
            v.push(
                sqlx::query_scalar::<_, i64>(s)
                    .fetch_one(&p)
                    .await
                    .expect(s),
            );
        }
        p.close().await;
    } else {
        let p = sqlx::PgPool::connect(db_url).await.expect("connect");
        for s in &q {
            v.push(
                sqlx::query_scalar::<_, i64>(s)
                    .fetch_one(&p)
                    .await
                    .expect(s),
            );
        }
        p.close().await;
    }
    Written {
        calls: v[0],
        answered: v[1],
        transitions: v[2],
        events: v[3],
        open_targets: v[4],
    }
}

async fn run(label: &str, db_url: &str, targets: usize, cps: u32) {
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_cps.xml",
        calls: None,
        extra: &[
            "-max_recv_loops",
            "10000",
            "-max_sched_loops",
            "10000",
            "-buff_size",
            "4194304",
        ],
        timeout_s: 3600,
        trace: false,
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = format!("sip:{}", uas.addr);
    let limit = LIMIT.to_string();
    let bin = std::env::var("HERALD_ENGINE_BIN").unwrap_or_else(|_| process::BIN.to_string());
    let herald = HeraldProcess::start_bin(
        &bin,
        dir.path(),
        &[
            ("HERALD__DATABASE__URL", db_url),
            ("HERALD__SIMULATOR__ENABLED", "false"),
            ("HERALD__TRUNKS__DEFAULT__PROXY", &proxy),
            ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", &limit),
            ("HERALD__TRUNKS__DEFAULT__MAX_CONCURRENT_CALLS", &limit),
            ("HERALD__MEDIA__RTP_PORT_MIN", "20000"),
            ("HERALD__MEDIA__RTP_PORT_MAX", "60000"),
        ],
        true,
    );
    let pid = herald.child.id();
    println!("{label}: herald pid {pid}, SIPp UAS at {}", uas.addr);
    let api = Api {
        c: reqwest::Client::new(),
        h: &herald,
    };

    let od = id(&api.post("/v1/outdials", json!({"name": "engine"})).await);
    let mut csv = String::with_capacity(targets * 40 + 16);
    csv.push_str("destination\n");
    for i in 0..targets {
        csv.push_str(&format!("sip:t{i}@{}\n", uas.addr));
    }
    let report: Value = api
        .c
        .post(format!("{}/v1/outdials/{od}/targets", herald.base))
        .header("x-api-key", &herald.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("import report");
    assert_eq!(report["created"].as_u64(), Some(targets as u64), "{report}");
    let op = id(&api
        .post("/v1/outplans", json!({"name": "once", "try_count_max": 1}))
        .await);
    let ag = id(&api
        .post(
            "/v1/agents",
            json!({"name": "bye", "kind": "script", "max_concurrent_sessions": LIMIT,
                   "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}}),
        )
        .await);
    let ca = id(&api
        .post(
            "/v1/campaigns",
            json!({"name": "engine", "outdial_id": od, "outplan_id": op, "agent_id": ag,
                   "trunk": "default", "priority": "emergency", "calls_per_second": cps,
                   "max_concurrent_calls": LIMIT}),
        )
        .await);

    let show_timeline = std::env::var("HERALD_ENGINE_TIMELINE").as_deref() != Ok("0");
    let threads0 = thread_cpu(pid);
    let cpu0 = process_cpu(pid);
    let sipp_pid = uas.sipp_pid().and_then(|p| p.parse::<u32>().ok());
    let sipp_cpu0 = sipp_pid.map_or(0.0, process_cpu);
    let cores0 = cores();
    let load0 = load_average();
    let started = Instant::now();
    api.post(&format!("/v1/campaigns/{ca}/start"), json!({}))
        .await;
    let mut next_sample = Duration::from_secs(1);
    let mut last = (0i64, cpu0);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let deadline = Duration::from_secs(60 + targets as u64 / 50);
    loop {
        poll.tick().await;
        let elapsed = started.elapsed();
        let c = api.get(&format!("/v1/campaigns/{ca}")).await;
        let status = c["status"].as_str().unwrap_or_default().to_string();
        if status == "finished" {
            break;
        }
        assert!(
            status == "running" || status == "waiting",
            "the campaign went {status}: {c}"
        );
        assert!(elapsed < deadline, "not finished after {elapsed:?}: {c}");
        if elapsed >= next_sample {
            next_sample += Duration::from_secs(1);
            let s = api.get(&format!("/v1/campaigns/{ca}/stats")).await;
            let total = s["attempts"]["total"].as_i64().unwrap_or(0);
            let cpu = process_cpu(pid);
            if show_timeline {
                println!(
                    "{label}: t={:>5.1}s  attempts {:>7} (+{:>5})  live {:>6}  dialing {:>6}  answered {:>6}  finished {:>7}  herald CPU {:>4.0}%",
                    elapsed.as_secs_f64(),
                    total,
                    total - last.0,
                    s["live_calls"],
                    s["targets"]["by_state"]["dialing"],
                    s["targets"]["by_state"]["answered"],
                    s["targets"]["by_state"]["finished"],
                    100.0 * (cpu - last.1),
                );
            }
            last = (total, cpu);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu(pid) - cpu0;
    let sipp_cpu = sipp_pid.map_or(0.0, process_cpu) - sipp_cpu0;
    let cores1 = cores();
    let load1 = load_average();
    let threads1 = thread_cpu(pid);

    let w = written(db_url, &ca, &od).await;
    let answered_cps = w.answered as f64 / secs;
    println!(
        "{label}: {targets} targets at {cps}/s offered: finished in {secs:.2} s; {} calls, {} answered = {answered_cps:.0} answered calls/s (load average {load0} → {load1})",
        w.calls, w.answered
    );
    println!(
        "{label}: herald CPU {cpu:.2} s = {:.0} µs per call, {:.0}% of one core on average; SIPp UAS CPU {sipp_cpu:.2} s ({:.0}%)",
        1e6 * cpu / (w.calls.max(1) as f64),
        100.0 * cpu / secs,
        100.0 * sipp_cpu / secs,
    );
    let per_core: Vec<String> = cores0
        .iter()
        .zip(&cores1)
        .enumerate()
        .map(|(i, (a, b))| {
            let all = (b.1 - a.1).max(1) as f64;
            format!("cpu{i} {:.0}%", 100.0 * (b.0 - a.0) as f64 / all)
        })
        .collect();
    println!(
        "{label}: cores busy (all processes): {}",
        per_core.join(", ")
    );
    // herald's threads, grouped by name, busiest first.
    let mut by_name: HashMap<String, (usize, f64)> = HashMap::new();
    for (tid, (name, c1)) in &threads1 {
        let c0 = threads0.get(tid).map_or(0.0, |(_, c)| *c);
        let e = by_name.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += c1 - c0;
    }
    let mut by_name: Vec<_> = by_name.into_iter().filter(|(_, (_, c))| *c > 0.0).collect();
    by_name.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let threads: Vec<String> = by_name
        .iter()
        .take(6)
        .map(|(n, (k, c))| format!("{n} ×{k} {:.0}%", 100.0 * c / secs))
        .collect();
    println!("{label}: herald threads: {}", threads.join(", "));
    println!(
        "{label}: written: {} calls, {} target transitions ({:.2} per call), {} logged events ({:.2} per call); {} targets left open",
        w.calls,
        w.transitions,
        w.transitions as f64 / w.calls.max(1) as f64,
        w.events,
        w.events as f64 / w.calls.max(1) as f64,
        w.open_targets,
    );
    assert_eq!(w.answered, targets as i64, "every target is answered once");
    assert_eq!(w.open_targets, 0);
    drop(herald);

    let mut summary = format!(
        "{label}: SUMMARY targets={targets} offered={cps}/s herald={answered_cps:.0} answered/s cpu={:.0} µs/call",
        1e6 * cpu / (w.calls.max(1) as f64)
    );
    if std::env::var("HERALD_ENGINE_UAC").as_deref() != Ok("0") {
        let t0 = Instant::now();
        let uac = run_uac(uas.addr, cps, targets as u32, 60 + targets as u32 / 100).await;
        let uac_secs = t0.elapsed().as_secs_f64();
        let ok = sipp_counter(&uac.stdout, "Successful call").unwrap_or(0);
        let failed = sipp_counter(&uac.stdout, "Failed call").unwrap_or(targets as u64);
        let uac_cps = ok as f64 / uac_secs;
        println!(
            "{label}: SIPp UAC: {ok} successful, {failed} failed in {uac_secs:.2} s = {uac_cps:.0} calls/s"
        );
        summary.push_str(&format!(
            " sipp_uac={uac_cps:.0}/s ratio={:.2}",
            answered_cps / uac_cps.max(1.0)
        ));
    }
    println!("{summary}");
    uas.quit();
    let _ = uas.finish().await;
}

#[tokio::main]
async fn main() {
    let targets: usize = env_num("HERALD_ENGINE_TARGETS", 3000);
    let cps: u32 = env_num("HERALD_ENGINE_CPS", 3000);
    let which = std::env::var("HERALD_BENCH_DB").unwrap_or_else(|_| "both".into());
    if which == "sqlite" || which == "both" {
        let dir = tempfile::tempdir().expect("temp dir");
        run(
            "sqlite",
            &format!("sqlite://{}/engine.db", dir.path().display()),
            targets,
            cps,
        )
        .await;
    }
    if which == "postgres" || which == "both" {
        let Ok(admin) = sqlx::PgPool::connect(PG).await else {
            println!("postgres: SKIPPED: not reachable at 127.0.0.1:5432");
            return;
        };
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        run(
            "postgres",
            &format!("{PG}?options=-c%20search_path%3D{schema}"),
            targets,
            cps,
        )
        .await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
    }
}
