//! Short crash runs (3 SIGKILLs, 500 targets) of the harness in
//! `tests/crash/mod.rs`: on SQLite with one node, and on PostgreSQL with two
//! nodes killed in turn. `benches/chaos.rs` runs the long ones.

mod crash;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/process.rs"]
mod process;
mod sipp;
#[path = "common/sse.rs"]
mod sse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kills_on_sqlite_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = crash::run(crash::Plan {
        targets: 500,
        kills: 3,
        db_url: format!("sqlite://{}/herald.db", dir.path().display()),
        nodes: 1,
        calls_per_second: 100.0,
        seed: 20261204,
    })
    .await;
    eprintln!("{report:#?}");
    assert_eq!(report.kills.len(), 3);
    assert!(report.attempts >= 500, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kills_of_two_nodes_on_postgres_lose_nothing() {
    let Some(schema) = crash::PgSchema::create().await else {
        pg::skip_without_postgres("the PostgreSQL crash run");
        return;
    };
    let report = crash::run(crash::Plan {
        targets: 500,
        kills: 3,
        db_url: schema.url.clone(),
        nodes: 2,
        calls_per_second: 100.0,
        seed: 4,
    })
    .await;
    eprintln!("{report:#?}");
    schema.drop().await;
    assert_eq!(report.kills.len(), 3);
    assert!(report.attempts >= 500, "{report:?}");
}
