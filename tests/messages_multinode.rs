//! Two herald processes on one PostgreSQL database send the same queue of
//! SMS to one SMSC that is not herald's code (tests/peers/smsc.js): both
//! nodes claim and send, and the SMSC receives every message exactly once
//! (messages are claimed with leases, `FOR UPDATE SKIP LOCKED`).

#[path = "common/pg.rs"]
mod pg;
#[path = "common/process.rs"]
mod process;
#[path = "peers/smsc.rs"]
mod smsc;

use std::time::Duration;

use futures::StreamExt;
use process::HeraldProcess;
use serde_json::json;
use smsc::Smsc;

use pg::PG_ADMIN_URL as PG;

const MESSAGES: usize = 2_000;

fn node(db_url: &str, smpp_url: &str) -> HeraldProcess {
    HeraldProcess::start(
        &std::env::temp_dir(),
        &[
            ("HERALD__DATABASE__URL", db_url),
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", smpp_url),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", "0"),
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "off"),
        ],
        std::env::var("HERALD_TEST_LOGS").is_ok(),
    )
}

/// How many sends this node's SMS transport answered (`/metrics`).
async fn sends_by(node: &HeraldProcess, c: &reqwest::Client) -> u64 {
    let text = c
        .get(format!("{}/metrics", node.base))
        .header("x-api-key", &node.key)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("herald_message_send_seconds_count{") && l.contains("\"sms\""))
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse::<f64>().expect("a count") as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_one_queue_and_the_smsc_gets_each_message_once() {
    let Ok(admin) = sqlx::PgPool::connect(PG).await else {
        pg::skip_without_postgres("the multi-node messages test");
        return;
    };
    let schema = format!("mm_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{PG}?options=-c%20search_path%3D{schema}");
    let mut smsc = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let smpp = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let c = reqwest::Client::new();
    let a = node(&url, &smpp);
    let b = node(&url, &smpp);

    // Half the messages are posted to each node; either may send any.
    let nodes = [
        (a.base.clone(), a.key.clone()),
        (b.base.clone(), b.key.clone()),
    ];
    let answers: Vec<u16> = futures::stream::iter(0..MESSAGES)
        .map(|i| {
            let c = c.clone();
            let (base, key) = nodes[i % 2].clone();
            async move {
                // Numbers ending 1..9: the SMSC reports them delivered.
                let to = format!("+1555{:07}", 3_000_000 + i * 10 + 1 + i % 9);
                c.post(format!("{base}/v1/sms"))
                    .header("x-api-key", key)
                    .json(&json!({"to": to, "body": format!("shared {i}")}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 202), "every POST is accepted");

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .expect(sql)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let open = count("SELECT COUNT(*) FROM messages WHERE status NOT IN ('delivered', 'failed', 'bounced', 'cancelled')").await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} messages not delivered yet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").await,
        MESSAGES as i64,
        "every message is delivered"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM message_attempts").await,
        MESSAGES as i64,
        "one send each"
    );

    let s = smsc.stats(Duration::from_secs(10)).await;
    assert_eq!(s["binds"].as_u64(), Some(2), "both nodes bound: {s}");
    assert_eq!(
        s["unique_bodies"].as_u64(),
        Some(MESSAGES as u64),
        "the SMSC received every message: {s}"
    );
    assert_eq!(
        s["accepted"].as_u64(),
        Some(MESSAGES as u64),
        "the SMSC received each message exactly once: {s}"
    );
    let (by_a, by_b) = (sends_by(&a, &c).await, sends_by(&b, &c).await);
    eprintln!("node a sent {by_a}, node b sent {by_b}; SMSC: {s}");
    assert_eq!(by_a + by_b, MESSAGES as u64, "sends counted by the nodes");
    assert!(by_a > 0 && by_b > 0, "both nodes sent: {by_a} and {by_b}");

    drop((a, b));
    smsc.stop().await;
    db.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}
