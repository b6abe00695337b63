//! Calls per second with the callee simulator as the peer: herald's call
//! control placing calls at the simulator's benchmark population (answer at
//! once, no media; herald hangs up), both in this one process, at rising
//! rates until more than 0.1% fail.
//!
//! Run: `cargo bench --bench sim_cps` (release build). Environment:
//! `HERALD_SIM_CPS_RATES` (default `1000,2000,3000`),
//! `HERALD_SIM_CPS_SECS` (seconds per step, default 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald::config::{MediaConfig, Secret, SipConfig, TrunkConfig};
use herald::domain::Outcome;
use herald::sim::{Population, Simulator, SimulatorConfig};
use herald::sip::{CallControl, CallEvent, DialDestination, OriginateRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// `None` when the call ended answered with 200, else why it did not.
async fn place(cc: CallControl, i: u64) -> Option<String> {
    let req = OriginateRequest {
        attempt_id: format!("sim-cps-{i}"),
        destination: DialDestination::Tel {
            number: "+15557654321".into(),
            trunk: "sim".into(),
        },
        caller_id: None,
        ring_timeout: Duration::from_secs(10),
        max_duration: Duration::ZERO,
        headers: Vec::new(),
    };
    let mut call = match cc.originate(req).await {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    while let Some(ev) = call.next_event().await {
        if let CallEvent::Ended(e) = ev {
            if e.outcome == Outcome::Answered && e.sip_code == Some(200) {
                return None;
            }
            return Some(format!("{} {:?}: {}", e.outcome, e.sip_code, e.reason));
        }
    }
    Some("no end".into())
}

#[tokio::main]
async fn main() {
    let rates: Vec<u32> = std::env::var("HERALD_SIM_CPS_RATES")
        .unwrap_or_else(|_| "1000,2000,3000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u32 = std::env::var("HERALD_SIM_CPS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let population = Population::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios/population/benchmark.toml"),
    )
    .expect("benchmark population");
    let sim = Simulator::start(SimulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        population,
        seed: 1,
        rtp_port_min: 40000,
        rtp_port_max: 50000,
    })
    .await
    .expect("simulator");
    let sip = SipConfig {
        listen: "127.0.0.1:0".into(),
        public_addr: String::new(),
        user_agent: "herald-bench".into(),
        ..Default::default()
    };
    let media = MediaConfig {
        rtp_port_min: 20000,
        rtp_port_max: 40000,
        rtp_inactivity_timeout_s: 30,
        jitter_buffer_ms: 40,
    };
    let mut trunks = BTreeMap::new();
    trunks.insert(
        "sim".to_string(),
        TrunkConfig {
            proxy: format!("sip:{}", sim.addr()),
            transport: "udp".into(),
            from_user: "herald".into(),
            from_domain: "herald.bench".into(),
            caller_id: "+15550001111".into(),
            username: String::new(),
            password: Secret::default(),
            password_env: String::new(),
            max_concurrent_calls: 1_000_000,
            max_calls_per_second: 1_000_000,
            ..Default::default()
        },
    );
    let cancel = CancellationToken::new();
    let cc = CallControl::start(&sip, &media, &trunks, cancel.clone())
        .await
        .expect("call control");

    println!(
        "| target CPS | answered/s | failed | CPU µs/call (herald + simulator) | simulator calls |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for rate in rates {
        let total = u64::from(rate) * u64::from(secs);
        let before = sim.counts().calls;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut calls = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut launched = 0u64;
        while launched < total {
            tick.tick().await;
            let due = (t0.elapsed().as_secs_f64() * f64::from(rate)).ceil() as u64;
            while launched < due.min(total) {
                calls.spawn(place(cc.clone(), launched));
                launched += 1;
            }
        }
        let launch = t0.elapsed().as_secs_f64();
        let mut failed = 0u64;
        let mut why: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(r) = calls.join_next().await {
            match r {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    failed += 1;
                    *why.entry(reason).or_default() += 1;
                }
                Err(e) => {
                    failed += 1;
                    *why.entry(e.to_string()).or_default() += 1;
                }
            }
        }
        let cpu = cpu_seconds() - cpu0;
        println!(
            "| {rate} | {:.0} | {failed} ({:.3}%) | {:.0} | {} |",
            (total - failed) as f64 / launch,
            100.0 * failed as f64 / total as f64,
            1e6 * cpu / total as f64,
            sim.counts().calls - before,
        );
        if failed as f64 > total as f64 * 0.001 {
            println!("failures passed 0.1% at {rate} CPS; stopping. Why: {why:?}");
            break;
        }
    }
    cancel.cancel();
    cc.stopped().await;
    sim.shutdown().await;
}
