//! CSV import benchmark: streams N generated rows into a real `herald serve`
//! process over HTTP and reports rows/s and the server's peak RSS (VmHWM).
//!
//!     cargo bench --bench import
//!     HERALD_BENCH_ROWS=100000,1000000 HERALD_BENCH_DB=sqlite cargo bench --bench import
//!
//! HERALD_BENCH_DB: sqlite, postgres or both (default both; PostgreSQL is
//! skipped with a message when 127.0.0.1:5432 is unreachable).

use std::time::Instant;

use futures::stream;
use process::HeraldProcess;

#[path = "../tests/common/process.rs"]
mod process;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const ROWS_PER_CHUNK: usize = 10_000;

fn start(db_url: &str, dir: &std::path::Path) -> HeraldProcess {
    HeraldProcess::start(dir, &[("HERALD__DATABASE__URL", db_url)], true)
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Row i of the synthetic list: a unique E.164 number, a name and two variables.
fn chunk(from: usize, to: usize) -> String {
    let mut s = String::with_capacity((to - from) * 64);
    for i in from..to {
        s.push_str(&format!(
            "+1{:010},Person {i},North,2026-11-22T15:00:00-05:00\n",
            2_000_000_000u64 + i as u64
        ));
    }
    s
}

async fn run(label: &str, db_url: &str, rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(db_url, dir.path());
    let c = reqwest::Client::new();
    let od: serde_json::Value = c
        .post(format!("{}/v1/outdials", server.base))
        .header("x-api-key", &server.key)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let od = od["id"].as_str().unwrap().to_string();
    let rss_before = peak_rss_mb(server.child.id());
    let header = stream::once(async {
        Ok::<_, std::io::Error>("phone,name,clinic,appointment_time\n".to_string())
    });
    let body = stream::iter(
        (0..rows)
            .step_by(ROWS_PER_CHUNK)
            .map(move |from| Ok(chunk(from, (from + ROWS_PER_CHUNK).min(rows)))),
    );
    let started = Instant::now();
    let resp = c
        .post(format!("{}/v1/outdials/{od}/targets", server.base))
        .header("x-api-key", &server.key)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(futures::StreamExt::chain(
            header, body,
        )))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let report: serde_json::Value = resp.json().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"].as_u64(), Some(rows as u64), "{report}");
    println!(
        "{label:<10} rows={rows:>9}  {secs:>7.2} s  {:>9.0} rows/s  peak RSS {:>6.1} MB (idle {:>5.1} MB)",
        rows as f64 / secs,
        peak_rss_mb(server.child.id()),
        rss_before
    );
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("HERALD_BENCH_ROWS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("HERALD_BENCH_ROWS: comma-separated row counts")
        })
        .collect();
    let which = std::env::var("HERALD_BENCH_DB").unwrap_or_else(|_| "both".into());
    for &rows in &sizes {
        if which == "sqlite" || which == "both" {
            let dir = tempfile::tempdir().unwrap();
            run(
                "sqlite",
                &format!("sqlite://{}/bench.db", dir.path().display()),
                rows,
            )
            .await;
        }
        if which == "postgres" || which == "both" {
            let Ok(admin) = sqlx::PgPool::connect(PG).await else {
                println!("postgres   SKIPPED: not reachable at 127.0.0.1:5432");
                continue;
            };
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            run(
                "postgres",
                &format!("{PG}?options=-c%20search_path%3D{schema}"),
                rows,
            )
            .await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}
