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
    let Ok(admin) = sqlx::PgPool::connect(pg::PG_ADMIN_URL).await else {
        pg::skip_without_postgres("the PostgreSQL crash run");
        return;
    };
    let schema = format!("chaos_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let report = crash::run(crash::Plan {
        targets: 500,
        kills: 3,
        db_url: format!("{}?options=-c%20search_path%3D{schema}", pg::PG_ADMIN_URL),
        nodes: 2,
        calls_per_second: 100.0,
        seed: 4,
    })
    .await;
    eprintln!("{report:#?}");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .ok();
    assert_eq!(report.kills.len(), 3);
    assert!(report.attempts >= 500, "{report:?}");
}
