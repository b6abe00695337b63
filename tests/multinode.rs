//! Two herald processes on one PostgreSQL database share a 2,000-target
//! campaign: no target is dialed twice at the same time; one node is killed
//! (-9) midway and the other closes its open attempts and finishes.

#[path = "common/pg.rs"]
mod pg;
#[path = "common/process.rs"]
mod process;
mod sipp;

use std::time::Duration;

use process::HeraldProcess;
use serde_json::json;
use sipp::{SippUas, UasOptions};

use pg::PG_ADMIN_URL as PG;

fn node(db_url: &str, proxy: &str) -> HeraldProcess {
    let dir = std::env::temp_dir();
    HeraldProcess::start(
        &dir,
        &[
            ("HERALD__DATABASE__URL", db_url),
            ("HERALD__TRUNKS__DEFAULT__PROXY", proxy),
            ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "1000"),
        ],
        false,
    )
}

#[tokio::test]
async fn two_nodes_share_a_campaign_and_one_survives_the_other() {
    let Ok(admin) = sqlx::PgPool::connect(PG).await else {
        pg::skip_without_postgres("the multi-node test");
        return;
    };
    let schema = format!("mn_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{PG}?options=-c%20search_path%3D{schema}");
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_ring_then_answer.xml",
        calls: None,
        extra: &[],
        timeout_s: 180,
        trace: false,
    })
    .await;
    let proxy = format!("sip:{}", uas.addr);
    let c = reqwest::Client::new();

    let a = node(&url, &proxy);
    let b = node(&url, &proxy);
    let od = a.post(&c, "/v1/outdials", json!({"name": "shared"})).await;
    let od = od["id"].as_str().unwrap().to_string();
    let mut csv = String::from("phone\n");
    for i in 0..2000 {
        csv.push_str(&format!("+1555{:07}\n", 5_000_000 + i));
    }
    let r = c
        .post(format!("{}/v1/outdials/{od}/targets", a.base))
        .header("x-api-key", &a.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let op = a
        .post(
            &c,
            "/v1/outplans",
            json!({"name": "p", "try_count_max": 3, "retry": {"failed_s": 0}}),
        )
        .await;
    let ag = a.post(&c, "/v1/agents", json!({"name": "a", "kind": "script", "script": {"start": "bye", "steps": {"bye": {"result": "completed"}}}, "max_concurrent_sessions": 1000})).await;
    let camp = a
        .post(
            &c,
            "/v1/campaigns",
            json!({"name": "shared", "outdial_id": od, "outplan_id": op["id"], "agent_id": ag["id"],
        "calls_per_second": 150, "max_concurrent_calls": 50}),
        )
        .await;
    let camp = camp["id"].as_str().unwrap().to_string();
    b.post(&c, &format!("/v1/campaigns/{camp}/start"), json!({}))
        .await;

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    // Wait (bounded) until both nodes have dialed and a good part of the list is done.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tick.tick().await;
            let (calls, nodes): (i64, i64) =
                sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT node_id) FROM calls")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            if calls >= 600 && nodes == 2 {
                break;
            }
        }
    })
    .await
    .expect("both nodes dial");
    let mut a = a;
    a.kill9();

    // The survivor finishes: it closes the dead node's attempts and dials the rest.
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            tick.tick().await;
            let s: String = sqlx::query_scalar("SELECT status FROM campaigns WHERE id = $1")
                .bind(&camp)
                .fetch_one(&db)
                .await
                .unwrap();
            if s == "finished" {
                break;
            }
        }
    })
    .await
    .expect("the surviving node finishes the campaign");

    let not_done: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM targets WHERE state <> 'finished'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(not_done, 0, "every target was reached");
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(open, 0);
    let overlaps: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM calls x JOIN calls y ON x.target_id = y.target_id AND x.id < y.id \
         WHERE y.created_at < x.ended_at AND x.created_at < y.ended_at",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "a target was dialed twice at the same time");
    let interrupted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE outcome = 'interrupted'")
            .fetch_one(&db)
            .await
            .unwrap();
    // Only the killed node's calls can end this way: the survivor ran to the end.
    assert!(
        interrupted > 0,
        "the dead node's open attempts were closed as interrupted"
    );
    let per_node: Vec<(String, i64)> =
        sqlx::query_as("SELECT node_id, COUNT(*) FROM calls GROUP BY node_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(per_node.len(), 2, "both nodes dialed: {per_node:?}");
    let tries: i64 = sqlx::query_scalar("SELECT SUM(try_count_current) FROM targets")
        .fetch_one(&db)
        .await
        .unwrap();
    let calls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tries, calls, "every dial counted once");
    let dials: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM target_events WHERE to_state = 'dialing'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(dials, calls, "every dial has its transition row");

    drop(b);
    db.close().await;
    uas.quit();
    let _ = uas.finish().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}
