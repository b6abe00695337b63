//! 1,000 concurrent answered calls with RTP both ways: herald places the calls
//! at a SIPp UAS that echoes every RTP packet (`-rtp_echo`), reads every frame
//! it gets back, and reports CPU and RSS per call and RTP gaps.
//!
//! One SIPp echoes at most ~10k packets/s without dropping on this machine,
//! so the calls are spread over several SIPp processes (`HERALD_SIPPS`,
//! default 5), dialed directly by SIP URI.
//!
//! Run: `cargo bench --bench sip_concurrent`. Environment: `HERALD_CALLS`
//! (default 1000), `HERALD_HOLD_SECS` (measured window, default 10),
//! `HERALD_SIPPS` (default 5).

#[path = "../tests/sipp/mod.rs"]
mod sipp;

use std::time::{Duration, Instant};

use herald::domain::Outcome;
use herald::sip::{CallControl, CallEvent, DialDestination, OriginateRequest};
use sipp::herald::{media_config, start, trunk};
use sipp::{SippUas, UasOptions};
use tokio::task::JoinSet;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct CallResult {
    answered: bool,
    frames: u64,
    received: u64,
    sent: u64,
    lost: u64,
    gaps: u64,
}

async fn call(cc: CallControl, i: usize, uri: String, hold: Duration) -> CallResult {
    let req = OriginateRequest {
        attempt_id: format!("conc-{i}"),
        destination: DialDestination::Sip { uri },
        caller_id: None,
        ring_timeout: Duration::from_secs(20),
        max_duration: hold,
        headers: Vec::new(),
    };
    let mut r = CallResult::default();
    let Ok(mut c) = cc.originate(req).await else {
        return r;
    };
    while let Some(ev) = c.next_event().await {
        match ev {
            CallEvent::Answered { mut media, .. } => {
                // An agent's read loop: take every frame until the call ends.
                while let Some(m) = media.next_event().await {
                    if matches!(m, herald::media::MediaEvent::Audio { .. }) {
                        r.frames += 1;
                    }
                }
            }
            CallEvent::Ended(e) => {
                r.answered = e.outcome == Outcome::Answered;
                if let Some(s) = e.media_stats {
                    r.received = s.packets_received;
                    r.sent = s.packets_sent;
                    r.lost = s.lost;
                    r.gaps = s.sequence_gaps;
                }
            }
            _ => {}
        }
    }
    r
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("HERALD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let hold_secs: u64 = std::env::var("HERALD_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let sipps: usize = std::env::var("HERALD_SIPPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut uases = Vec::new();
    for k in 0..sipps {
        let calls = (n / sipps + usize::from(k < n % sipps)) as u32;
        uases.push(
            SippUas::start_with(UasOptions {
                scenario: "uas_answer_echo.xml",
                calls: Some(calls),
                extra: &["-rtp_echo", "-max_recv_loops", "10000"],
                timeout_s: 120,
                trace: false,
            })
            .await,
        );
    }
    let uris: Vec<String> = uases.iter().map(|u| u.uri()).collect();
    let mut media = media_config(30);
    media.rtp_port_min = 20000;
    media.rtp_port_max = 60000;
    let (cc, cancel) = start(trunk("sip:127.0.0.1:9", "", "", 1), media).await;
    let rss0 = rss_kb();
    // Ramp up at 500 calls/s; every call lasts the ramp + the window + 2 s.
    let ramp = Duration::from_millis((n as u64 * 1000).div_ceil(500));
    let hold = ramp + Duration::from_secs(hold_secs + 2);
    let mut calls = JoinSet::new();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut launched = 0;
    while launched < n {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * 500.0).ceil() as usize).min(n);
        while launched < due {
            let uri = uris[launched % uris.len()].clone();
            calls.spawn(call(cc.clone(), launched, uri, hold));
            launched += 1;
        }
    }
    // Measure over a fixed window once every call is up (the window is the
    // measurement itself, not a wait for an event).
    tokio::time::sleep_until((t0 + ramp + Duration::from_secs(1)).into()).await;
    let live = cc.live_calls();
    let cpu0 = cpu_seconds();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let cpu = cpu_seconds() - cpu0;
    let window = w0.elapsed().as_secs_f64();
    let rss1 = rss_kb();
    let mut answered = 0;
    let mut t = CallResult::default();
    while let Some(r) = calls.join_next().await {
        let Ok(r) = r else { continue };
        answered += usize::from(r.answered);
        t.frames += r.frames;
        t.received += r.received;
        t.sent += r.sent;
        t.lost += r.lost;
        t.gaps += r.gaps;
    }
    cancel.cancel();
    let mut sipp_exits = Vec::new();
    for u in uases {
        sipp_exits.push(u.finish().await.code);
    }
    println!("| calls | live in window | answered | herald CPU (% of one core) | per call | RSS per call | RTP sent | RTP received | frames read | lost | sequence gaps | SIPp exits |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {live} | {answered} | {:.1}% | {:.4}% | {:.1} KB | {} | {} | {} | {} | {} | {:?} |",
        100.0 * cpu / window,
        100.0 * cpu / window / live.max(1) as f64,
        rss1.saturating_sub(rss0) as f64 / live.max(1) as f64,
        t.sent,
        t.received,
        t.frames,
        t.lost,
        t.gaps,
        sipp_exits,
    );
}
