//! What watching costs: a campaign dialing the built-in SIP callee
//! simulator at 200 calls/s, measured first with nobody watching, then with
//! 5 consoles (5 windows of one headless Chromium) on its live page. Prints
//! herald's CPU (the process's user + system time, which includes the
//! simulator) in each phase, the difference, and Chromium's CPU (every
//! `chromium` process) while it watches, with the call rate reached.
//!
//!     cargo bench --bench console_watch
//!     HERALD_BENCH_CPS=200 HERALD_BENCH_CONSOLES=5 HERALD_BENCH_PHASE_S=30 cargo bench --bench console_watch

#[path = "../tests/browser/mod.rs"]
mod browser;
mod support;

use std::time::Duration;

use serde_json::Value;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Clock ticks per second of /proc's times.
const HZ: f64 = 100.0;

/// utime + stime of a /proc/<pid>/stat, in seconds.
fn cpu_of(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / HZ)
}

fn herald_cpu() -> f64 {
    cpu_of(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap()
}

/// Each chromium process's CPU seconds, by pid.
fn chromium_cpu() -> std::collections::HashMap<u32, f64> {
    let mut out = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.trim().starts_with("chromium") && !comm.trim().starts_with("chrome") {
            continue;
        }
        if let Some(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| cpu_of(&s))
        {
            out.insert(pid, s);
        }
    }
    out
}

async fn attempts(c: &reqwest::Client, base: &str, key: &str, id: &str) -> i64 {
    let v: Value = c
        .get(format!("{base}/v1/campaigns/{id}/stats"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["attempts"]["total"].as_i64().unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let cps = env_or("HERALD_BENCH_CPS", 200);
    let consoles = env_or("HERALD_BENCH_CONSOLES", 5);
    let phase = Duration::from_secs(env_or("HERALD_BENCH_PHASE_S", 30));
    // Enough targets for every phase at the rate, with room to spare.
    let targets = cps * (phase.as_secs() * 3 + 60);
    let d = support::dialing(targets, cps, "warn").await;
    let (c, base, key, id) = (&d.client, &d.base, &d.key, &d.campaign);
    tokio::time::sleep(Duration::from_secs(10)).await; // reach the rate

    // Nobody watching.
    let (cpu0, n0, t0) = (
        herald_cpu(),
        attempts(c, base, key, id).await,
        std::time::Instant::now(),
    );
    tokio::time::sleep(phase).await;
    let (cpu1, n1, t1) = (herald_cpu(), attempts(c, base, key, id).await, t0.elapsed());
    let alone = (cpu1 - cpu0) / t1.as_secs_f64();
    let rate_alone = (n1 - n0) as f64 / t1.as_secs_f64();

    // The consoles: one Chromium, a window each, logged in, on the live page.
    let b = browser::Browser::start().await.expect("chromium");
    b.client.goto(&format!("{base}/ui/login")).await.unwrap();
    b.fill("key", key).await;
    b.click("button[type=submit]").await;
    b.shown("nav", Duration::from_secs(10)).await;
    let live = format!("{base}/ui/campaigns/{id}");
    b.client.goto(&live).await.unwrap();
    for _ in 1..consoles {
        let w = b.client.new_window(false).await.unwrap();
        b.client.switch_to_window(w.handle).await.unwrap();
        b.client.goto(&live).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (chrome0, cpu2, n2, t2) = (
        chromium_cpu(),
        herald_cpu(),
        attempts(c, base, key, id).await,
        std::time::Instant::now(),
    );
    tokio::time::sleep(phase).await;
    let (chrome1, cpu3, n3, t3) = (
        chromium_cpu(),
        herald_cpu(),
        attempts(c, base, key, id).await,
        t2.elapsed(),
    );
    let watched = (cpu3 - cpu2) / t3.as_secs_f64();
    let rate_watched = (n3 - n2) as f64 / t3.as_secs_f64();
    let chrome: f64 = chrome1
        .iter()
        .map(|(pid, s)| s - chrome0.get(pid).copied().unwrap_or(0.0))
        .sum::<f64>()
        / t3.as_secs_f64();
    let updates = b
        .client
        .execute(
            "return document.getElementById('chart').dataset.updates || '0';",
            vec![],
        )
        .await
        .unwrap();
    println!(
        "console_watch: {cps} calls/s asked, {consoles} consoles, {} s phases",
        phase.as_secs()
    );
    println!(
        "  nobody watching: herald {:.1} % of a core, {rate_alone:.0} calls/s",
        alone * 100.0
    );
    println!(
        "  {consoles} consoles:      herald {:.1} % of a core, {rate_watched:.0} calls/s",
        watched * 100.0
    );
    println!(
        "  herald's extra CPU for {consoles} consoles: {:.1} % of a core ({:.1} % each)",
        (watched - alone) * 100.0,
        (watched - alone) * 100.0 / consoles as f64
    );
    println!("  Chromium, {consoles} windows: {:.1} % of a core ({:.1} % each); chart draws in the last window: {updates}",
        chrome * 100.0, chrome * 100.0 / consoles as f64);
    b.close().await;
    d.app.shutdown().await;
}
