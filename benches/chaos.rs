//! The long crash runs (the suite's short ones are tests/chaos.rs): a
//! campaign of HERALD_CHAOS_TARGETS (10,000) against SIPp's mixed
//! population, herald killed with SIGKILL HERALD_CHAOS_KILLS (20) times and
//! started again, on SQLite with one node and on PostgreSQL with two; the
//! audit of tests/crash/mod.rs must pass. Prints each run's report.
//!
//!   cargo bench --bench chaos
//!   HERALD_CHAOS_TARGETS=2000 HERALD_CHAOS_KILLS=5 cargo bench --bench chaos

#[path = "../tests/crash/mod.rs"]
mod crash;
#[path = "../tests/common/pg.rs"]
mod pg;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/sipp/mod.rs"]
mod sipp;
#[path = "../tests/common/sse.rs"]
mod sse;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let targets = var("HERALD_CHAOS_TARGETS", 10_000);
    let kills = var("HERALD_CHAOS_KILLS", 20);
    let cps = var("HERALD_CHAOS_CPS", 200) as f64;

    let dir = tempfile::tempdir().unwrap();
    println!("SQLite, one node: {targets} targets, {kills} kills at {cps} calls/s");
    let r = crash::run(crash::Plan {
        targets,
        kills,
        db_url: format!("sqlite://{}/herald.db", dir.path().display()),
        nodes: 1,
        calls_per_second: cps,
        seed: 1,
    })
    .await;
    print_report(&r);

    let Some(schema) = crash::PgSchema::create().await else {
        println!("PostgreSQL is not reachable at 127.0.0.1:5432: its run did not happen");
        return;
    };
    println!("PostgreSQL, two nodes: {targets} targets, {kills} kills at {cps} calls/s");
    let r = crash::run(crash::Plan {
        targets,
        kills,
        db_url: schema.url.clone(),
        nodes: 2,
        calls_per_second: cps,
        seed: 2,
    })
    .await;
    print_report(&r);
    schema.drop().await;
}

fn print_report(r: &crash::Report) {
    println!("  audit passed in {:.1} s", r.elapsed.as_secs_f64());
    for (at, node, open, undelivered) in &r.kills {
        println!(
            "  kill at {:>6.1} s (node {node}): {open} attempts open, {undelivered} events not yet delivered",
            *at as f64 / 1000.0
        );
    }
    println!(
        "  {} attempts ({} interrupted by kills), {} INVITEs at SIPp, {} events, {} delivered",
        r.attempts, r.interrupted, r.invites_at_sipp, r.events, r.deliveries
    );
}
