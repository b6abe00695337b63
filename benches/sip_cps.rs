//! Calls per second: herald placing answer-and-hang-up calls at a SIPp UAS on
//! loopback, at rising rates until more than 0.1% fail; at each rate SIPp's own
//! UAC is run against the same UAS for comparison.
//!
//! Run: `cargo bench --bench sip_cps` (release build). Environment:
//! `HERALD_CPS_RATES` (default `500,1000,2000,3000,4000,5000`),
//! `HERALD_CPS_SECS` (seconds per step, default 5),
//! `HERALD_CPS_TRANSPORTS` (e.g. `udp,tcp,tls`: herald's trunk over each, in
//! turn at each rate, against its own SIPp; TCP is SIPp `-t t1`, TLS is socat's
//! OpenSSL in front of SIPp `-t t1`; SIPp's UAC is then not run).
//! `HERALD_CPS_WHY=1` prints why each failed call failed;
//! `HERALD_CPS_TRACE=1` logs to stderr under `RUST_LOG`.

#[path = "../tests/sipp/mod.rs"]
mod sipp;

use std::time::{Duration, Instant};

use herald::domain::Outcome;
use herald::sip::{CallControl, CallEvent, DialDestination, OriginateRequest};
use sipp::herald::{media_config, start, trunk};
use sipp::{run_uac, sipp_counter, SippUas, UasOptions};
use tokio::task::JoinSet;

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Step {
    attempted: u64,
    failed: u64,
    /// Launch window (s): calls were started at `rate` over this long.
    launch: f64,
    cpu: f64,
    /// Call durations (INVITE to the end of the BYE), sorted.
    durations: Vec<Duration>,
}

impl Step {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.durations.len() as f64 - 1.0) * p).round() as usize;
        self.durations
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Whether the call ended answered with 200, and how long it took end to end.
async fn place(cc: CallControl, i: u64) -> (bool, Duration) {
    let t0 = Instant::now();
    let ok = place_inner(cc, i).await;
    (ok, t0.elapsed())
}

async fn place_inner(cc: CallControl, i: u64) -> bool {
    let req = OriginateRequest {
        attempt_id: format!("cps-{i}"),
        destination: DialDestination::Tel {
            number: "+15557654321".into(),
            trunk: "sipp".into(),
        },
        caller_id: None,
        ring_timeout: Duration::from_secs(10),
        max_duration: Duration::ZERO,
        headers: Vec::new(),
    };
    let Ok(mut call) = cc.originate(req).await else {
        return false;
    };
    while let Some(ev) = call.next_event().await {
        if let CallEvent::Ended(e) = ev {
            let ok = e.outcome == Outcome::Answered && e.sip_code == Some(200);
            if !ok && std::env::var_os("HERALD_CPS_WHY").is_some() {
                eprintln!("call {i} failed: {} ({:?})", e.reason, e.outcome);
            }
            return ok;
        }
    }
    false
}

async fn herald_step(cc: &CallControl, rate: u32, secs: u32) -> Step {
    let total = u64::from(rate) * u64::from(secs);
    let mut calls = JoinSet::new();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
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
    let mut failed = 0;
    let mut durations = Vec::with_capacity(total as usize);
    while let Some(r) = calls.join_next().await {
        match r {
            Ok((true, d)) => durations.push(d),
            _ => failed += 1,
        }
    }
    durations.sort();
    Step {
        attempted: total,
        failed,
        launch,
        cpu: cpu_seconds() - cpu0,
        durations,
    }
}

/// A herald with one trunk over `transport` to its own SIPp UAS, and what
/// must stay alive for it.
struct Leg {
    transport: String,
    cc: CallControl,
    cancel: tokio_util::sync::CancellationToken,
    uas: SippUas,
    _front: Option<tokio::process::Child>,
    _dir: tempfile::TempDir,
}

const UAS_EXTRA: [&str; 6] = [
    "-max_recv_loops",
    "10000",
    "-max_sched_loops",
    "10000",
    "-buff_size",
    "4194304",
];

async fn leg(transport: &str) -> Leg {
    let dir = tempfile::tempdir().unwrap();
    let mut media = media_config(30);
    media.rtp_port_min = 20000;
    media.rtp_port_max = 60000;
    let (uas, front, mut cfg) = match transport {
        "tls" => {
            sipp::tls::make_certs(dir.path(), &["127.0.0.1"]);
            let (uas, front, port) =
                sipp::tls::sipp_behind_tls(dir.path(), "uas_cps.xml", &UAS_EXTRA, None, 600, false)
                    .await;
            let mut cfg = trunk(&format!("sips:127.0.0.1:{port}"), "", "", 1_000_000);
            cfg.tls_ca_file = dir.path().join("ca.pem").display().to_string();
            (uas, Some(front), cfg)
        }
        _ => {
            let mut extra = UAS_EXTRA.to_vec();
            if transport == "tcp" {
                extra.extend(["-t", "t1"]);
            }
            let uas = SippUas::start_with(UasOptions {
                scenario: "uas_cps.xml",
                calls: None,
                extra: &extra,
                timeout_s: 600,
                trace: false,
            })
            .await;
            let cfg = trunk(&format!("sip:{}", uas.addr), "", "", 1_000_000);
            (uas, None, cfg)
        }
    };
    cfg.transport = transport.to_string();
    let (cc, cancel) = start(cfg, media).await;
    Leg {
        transport: transport.to_string(),
        cc,
        cancel,
        uas,
        _front: front,
        _dir: dir,
    }
}

/// Each rate over each transport, in turn.
async fn by_transport(transports: &[String], rates: &[u32], secs: u32) {
    let mut legs = Vec::new();
    for t in transports {
        legs.push(leg(t).await);
    }
    println!("| transport | target CPS | herald answered/s | herald failed | call time p50 / p99 / max (ms) | herald CPU µs/call |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &rate in rates {
        for l in &legs {
            let h = herald_step(&l.cc, rate, secs).await;
            println!(
                "| {} | {rate} | {:.0} | {} ({:.3}%) | {:.0} / {:.0} / {:.0} | {:.0} |",
                l.transport,
                (h.attempted - h.failed) as f64 / h.launch,
                h.failed,
                100.0 * h.failed as f64 / h.attempted as f64,
                h.pct(0.5),
                h.pct(0.99),
                h.pct(1.0),
                1e6 * h.cpu / h.attempted as f64,
            );
        }
    }
    for l in legs {
        l.cancel.cancel();
        l.uas.quit();
        let _ = l.uas.finish().await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::var_os("HERALD_CPS_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rates: Vec<u32> = std::env::var("HERALD_CPS_RATES")
        .unwrap_or_else(|_| "500,1000,2000,3000,4000,5000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u32 = std::env::var("HERALD_CPS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let transports: Vec<String> = std::env::var("HERALD_CPS_TRANSPORTS")
        .unwrap_or_else(|_| "udp".into())
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if transports != ["udp"] {
        by_transport(&transports, &rates, secs).await;
        return;
    }
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
        timeout_s: 600,
        trace: false,
    })
    .await;
    let mut media = media_config(30);
    media.rtp_port_min = 20000;
    media.rtp_port_max = 60000;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", uas.addr), "", "", 1_000_000),
        media,
    )
    .await;

    println!("| target CPS | herald answered/s | herald failed | call time p50 / p99 / max (ms) | herald CPU µs/call | herald RSS after (MB) | SIPp uac answered/s | SIPp uac failed | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for rate in rates {
        let h = herald_step(&cc, rate, secs).await;
        // Successful calls per second of the launch window.
        let herald_cps = (h.attempted - h.failed) as f64 / h.launch;
        let total = rate * secs;
        let t0 = Instant::now();
        let uac = run_uac(uas.addr, rate, total, secs * 4 + 30).await;
        let uac_elapsed = t0.elapsed().as_secs_f64();
        let uac_ok = sipp_counter(&uac.stdout, "Successful call").unwrap_or(0);
        let uac_failed = sipp_counter(&uac.stdout, "Failed call").unwrap_or(u64::from(total));
        let uac_cps = uac_ok as f64 / uac_elapsed;
        println!(
            "| {rate} | {herald_cps:.0} | {} ({:.3}%) | {:.0} / {:.0} / {:.0} | {:.0} | {:.0} | {uac_cps:.0} | {uac_failed} | {:.2} |",
            h.failed,
            100.0 * h.failed as f64 / h.attempted as f64,
            h.pct(0.5),
            h.pct(0.99),
            h.pct(1.0),
            1e6 * h.cpu / h.attempted as f64,
            rss_mb(),
            herald_cps / uac_cps.max(1.0),
        );
        if h.failed as f64 > h.attempted as f64 * 0.001 {
            println!("herald failures passed 0.1% at {rate} CPS; stopping.");
            break;
        }
    }
    cancel.cancel();
    uas.quit();
    let _ = uas.finish().await;
}
