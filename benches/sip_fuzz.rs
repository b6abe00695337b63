//! The SIP fuzzer's long run: 1,000,000 mutated datagrams
//! (tests/fuzz/sip.rs) at herald's SIP port and at the built-in simulator's
//! while a campaign dials the simulator. Prints the datagrams sent and their
//! rate, panics (a hook counts them in any task), herald's resident memory
//! before, at every 100,000 and after, and the campaign's outcomes.
//!
//!     cargo bench --bench sip_fuzz
//!     HERALD_FUZZ_DATAGRAMS=1000000 HERALD_FUZZ_RATE=20000 cargo bench --bench sip_fuzz

#[path = "../tests/fuzz/sip.rs"]
mod fuzz;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let total = env_or("HERALD_FUZZ_DATAGRAMS", 1_000_000);
    let rate = env_or("HERALD_FUZZ_RATE", 20_000);
    // A campaign that dials for the whole run: 20 calls/s.
    let seconds = (total / rate + 30) as u64;
    let d = support::dialing(20 * seconds, 20, "error").await;
    let app = &d.app;
    let herald_sip = app.sip_addr.unwrap();
    let sim_sip = app.simulator_addr.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sock.local_addr().unwrap();
    let mut f = fuzz::SipFuzzer::new(20_261_203);
    let batch = (rate / 100).max(1);
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let rss_before = rss_mib();
    let mut marks = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while i < total {
        pace.tick().await;
        if i % 2_000 < batch {
            // In-dialog requests carry the Call-IDs of live calls.
            if let herald::store::Pool::Sqlite(p) = &app.store.pool {
                f.call_ids = sqlx::query_scalar::<_, String>(
                    "SELECT sip_call_id FROM calls WHERE ended_at IS NULL AND sip_call_id IS NOT NULL",
                )
                .fetch_all(p)
                .await
                .unwrap_or_default();
            }
        }
        for _ in 0..batch {
            let to = if i % 2 == 0 { herald_sip } else { sim_sip };
            let _ = sock.send_to(&f.next(to, from), to).await;
            i += 1;
            if i % 100_000 == 0 {
                marks.push(format!("{:.0}", rss_mib()));
            }
        }
    }
    let took = started.elapsed();
    let stats = d.stats().await;
    println!(
        "sip_fuzz: {i} datagrams in {:.1} s ({:.0}/s), half to herald, half to the simulator",
        took.as_secs_f64(),
        i as f64 / took.as_secs_f64()
    );
    println!("  panics: {}", PANICS.load(Ordering::SeqCst));
    println!(
        "  herald RSS: {rss_before:.0} MiB before, every 100,000: {} MiB, {:.0} MiB after",
        marks.join(" / "),
        rss_mib()
    );
    println!(
        "  campaign meanwhile: {} attempts, by outcome {}",
        stats["attempts"]["total"], stats["attempts"]["by_outcome"]
    );
    d.app.shutdown().await;
}
