//! RTP media cost: N concurrent calls on loopback, each a pair of herald RTP
//! sessions streaming G.711 both ways (20 ms packets, silence), every received
//! frame consumed through `next_event`.
//!
//! Run: `cargo bench --bench media_rtp -- [CALLS] [SECONDS] [srtp]` (default
//! 200 calls, 5 s; `srtp`: every call SDES-SRTP, AES_CM_128_HMAC_SHA1_80,
//! each end protecting what it sends and checking what it receives). Reports CPU per call from /proc/self/stat (user + system time of the
//! whole process, so both ends of each call are included), packets per second,
//! losses and sequence gaps, and RSS.

use herald::media::srtp::{new_master_key, SrtpKeys};
use herald::media::{Codec, MediaEvent, PortPool, RtpConfig, RtpSession, RtpStats};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let calls: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let srtp = args.get(2).is_some_and(|a| a == "srtp");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(calls, Duration::from_secs(seconds), srtp));
}

async fn run(calls: usize, duration: Duration, srtp: bool) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let pool = PortPool::new(20_000, 60_000);
    let cfg = RtpConfig {
        codec: Codec::Pcmu,
        inactivity_timeout: Duration::from_secs(60),
        ..RtpConfig::default()
    };
    let rss_before = rss_kib();
    let stop = CancellationToken::new();
    let window = CancellationToken::new();
    let mut tasks: JoinSet<(RtpStats, RtpStats, u64)> = JoinSet::new();
    for _ in 0..calls {
        let a = RtpSession::bind(&pool, ip)
            .await
            .expect("bind (raise ulimit -n?)");
        let b = RtpSession::bind(&pool, ip)
            .await
            .expect("bind (raise ulimit -n?)");
        let (la, lb) = (a.local_addr(), b.local_addr());
        let (mut ca, mut cb) = (cfg.clone(), cfg.clone());
        if srtp {
            let (ka, kb) = (new_master_key(), new_master_key());
            ca.srtp = Some(SrtpKeys {
                local: ka,
                remote: kb,
            });
            cb.srtp = Some(SrtpKeys {
                local: kb,
                remote: ka,
            });
        }
        for h in [a.start(lb, ca), b.start(la, cb)] {
            let stop = stop.clone();
            let window = window.clone();
            tasks.spawn(async move {
                let mut h = h;
                let mut frames = 0u64;
                let mut at_start: Option<RtpStats> = None;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = window.cancelled(), if at_start.is_none() => {
                            at_start = Some(h.stats());
                            frames = 0;
                        }
                        ev = h.next_event() => match ev {
                            Some(MediaEvent::Audio { .. }) => frames += 1,
                            Some(_) => {}
                            None => break,
                        },
                    }
                }
                let at_end = h.stats();
                h.stop().await;
                (at_start.unwrap_or_default(), at_end, frames)
            });
        }
    }
    // Let every session start, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    window.cancel();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(duration).await;
    let (cpu1, elapsed) = (cpu_seconds(), t0.elapsed());
    let rss = rss_kib();
    stop.cancel();
    let mut total = RtpStats::default();
    let mut frames = 0u64;
    while let Some(res) = tasks.join_next().await {
        let Ok((s0, s, f)) = res else { continue };
        // Counts inside the measured window only.
        frames += f;
        total.packets_sent += s.packets_sent - s0.packets_sent;
        total.packets_received += s.packets_received - s0.packets_received;
        total.lost += s.lost - s0.lost;
        total.sequence_gaps += s.sequence_gaps - s0.sequence_gaps;
        total.late += s.late - s0.late;
        total.skipped_slots += s.skipped_slots - s0.skipped_slots;
        total.audio_frames_dropped += s.audio_frames_dropped - s0.audio_frames_dropped;
        total.srtp_rejected += s.srtp_rejected - s0.srtp_rejected;
        total.jitter = total.jitter.max(s.jitter);
    }
    let cpu = cpu1 - cpu0;
    let secs = elapsed.as_secs_f64();
    let core_share = cpu / secs;
    let pps = 2.0 * 50.0 * calls as f64; // sent+received per side, both sides
    println!(
        "media_rtp: {calls} calls (2 sessions each{}), {secs:.1} s measured",
        if srtp { ", SRTP" } else { "" }
    );
    println!(
        "  cpu: {:.1}% of one core in total, {:.4}% of a core per call, {:.2} µs per packet handled",
        core_share * 100.0,
        core_share * 100.0 / calls as f64,
        cpu * 1e6 / (pps * 2.0 * secs)
    );
    println!(
        "  packets in the window: {} sent, {} received, {} audio events consumed (nominal {:.0} sent/s)",
        total.packets_sent, total.packets_received, frames, pps
    );
    println!(
        "  lost {}  sequence gaps {}  late {}  skipped send slots {}  dropped frames {}  jitter at the end (max) {:.2} ms",
        total.lost,
        total.sequence_gaps,
        total.late,
        total.skipped_slots,
        total.audio_frames_dropped,
        total.jitter_ms()
    );
    println!("  srtp packets rejected {}", total.srtp_rejected);
    println!(
        "  rss: {} KiB total, {:.1} KiB per call",
        rss,
        rss.saturating_sub(rss_before) as f64 / calls as f64
    );
}
