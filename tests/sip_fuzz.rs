//! Structure-aware SIP fuzzing (tests/fuzz/sip.rs) while a campaign dials
//! the built-in callee simulator: 100,000 mutated datagrams (set
//! HERALD_FUZZ_DATAGRAMS for more) at herald's SIP port and at the
//! simulator's, some carrying the Call-ID of a live call. Nothing panics
//! (a panic hook counts them, in any task), every target of the campaign
//! ends with an outcome the simulator gave (no trunk error, no interrupted
//! call), and herald still answers over HTTP and dials afterwards.

mod common;
#[path = "fuzz/sip.rs"]
mod fuzz;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{expect_json, id_of, Db};
use reqwest::StatusCode;
use serde_json::json;

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn the_same_seed_gives_the_same_datagrams() {
    let a: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let (mut x, mut y) = (fuzz::SipFuzzer::new(7), fuzz::SipFuzzer::new(7));
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..1000 {
        let d = x.next(a, a);
        assert_eq!(d, y.next(a, a));
        kinds.insert(d.get(..3).map(<[u8]>::to_vec));
    }
    assert!(kinds.len() > 20, "varied datagrams: {}", kinds.len());
}

/// Waits (bounded) until the campaign is finished: at each event on the
/// bus, and at least every second (the fuzzer's MESSAGEs are events too, so
/// the bus may lag past the status change), its status is read.
async fn wait_finished(
    app: &common::TestApp,
    rx: &mut tokio::sync::broadcast::Receiver<herald::events::Event>,
    id: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let c = expect_json(
            app.get(&format!("/v1/campaigns/{id}")).await,
            StatusCode::OK,
        )
        .await;
        if c["status"] == "finished" {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let stats = expect_json(
                app.get(&format!("/v1/campaigns/{id}/stats")).await,
                StatusCode::OK,
            )
            .await;
            let open = expect_json(
                app.get("/v1/calls?status=in_progress").await,
                StatusCode::OK,
            )
            .await;
            panic!("not finished: {c}\nstats: {stats}\ncalls in progress: {open}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sip_datagrams_neither_panic_herald_nor_disturb_its_calls() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let herald_sip = app.sip_addr().expect("herald's SIP address");
    let sim_sip = app.simulator_addr().expect("the simulator's address");
    let targets = 300;
    let od = app
        .post_ok(
            "/v1/outdials",
            &json!({"name": "fuzzed"}),
            StatusCode::CREATED,
        )
        .await;
    let od = id_of(&od);
    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            common::csv(targets, 15_550_300_000),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let op = app
        .post_ok(
            "/v1/outplans",
            &json!({"name": "once", "try_count_max": 1, "dial_timeout_s": 5}),
            StatusCode::CREATED,
        )
        .await;
    let ag = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "bye", "kind": "script", "script": common::hang_up_script(),
                    "max_concurrent_sessions": 1000}),
            StatusCode::CREATED,
        )
        .await;
    let c = app
        .post_ok(
            "/v1/campaigns",
            &json!({"name": "under fire", "outdial_id": od, "outplan_id": id_of(&op),
                    "agent_id": id_of(&ag), "calls_per_second": 30, "max_concurrent_calls": 100}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&c);
    let mut rx = app.events().subscribe();
    app.post_ok(
        &format!("/v1/campaigns/{id}/start"),
        &json!({}),
        StatusCode::OK,
    )
    .await;

    // The fuzzer, paced at about 20,000 datagrams a second, the Call-IDs of
    // live calls refreshed as it goes.
    let total: usize = std::env::var("HERALD_FUZZ_DATAGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let store = app.store().clone();
    let sent = Arc::new(AtomicUsize::new(0));
    let fuzzing = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let from = sock.local_addr().unwrap();
            let mut f = fuzz::SipFuzzer::new(20_261_203);
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            let mut i = 0;
            while i < total {
                pace.tick().await;
                if i % 2_000 == 0 {
                    if let herald::store::Pool::Sqlite(p) = &store.pool {
                        f.call_ids = sqlx::query_scalar::<_, String>(
                            "SELECT sip_call_id FROM calls WHERE ended_at IS NULL AND sip_call_id IS NOT NULL",
                        )
                        .fetch_all(p)
                        .await
                        .unwrap_or_default();
                    }
                }
                for _ in 0..200 {
                    let to = if i % 2 == 0 { herald_sip } else { sim_sip };
                    let d = f.next(to, from);
                    // Oversized or refused sends are fine: the point is what arrives.
                    let _ = sock.send_to(&d, to).await;
                    i += 1;
                }
                sent.store(i, Ordering::Relaxed);
            }
        })
    };

    wait_finished(&app, &mut rx, &id).await;
    fuzzing.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) >= total);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic while fuzzing");

    // Every target ended with an outcome the simulator gave.
    let by_state = expect_json(
        app.get(&format!("/v1/campaigns/{id}/stats")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_state["targets"]["by_state"]["idle"], 0, "{by_state}");
    assert_eq!(by_state["targets"]["by_state"]["dialing"], 0, "{by_state}");
    assert_eq!(by_state["attempts"]["total"], targets, "{by_state}");
    for bad in [
        "trunk_error",
        "interrupted",
        "agent_unavailable",
        "abandoned",
    ] {
        assert!(
            by_state["attempts"]["by_outcome"].get(bad).is_none(),
            "{bad} under fuzzing: {by_state}"
        );
    }
    assert!(
        by_state["attempts"]["by_outcome"]["answered"]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "{by_state}"
    );

    // Still serving, still dialing.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            common::csv(5, 15_550_400_000),
        )
        .await;
    assert!(r.status().is_success());
    app.post_ok(
        &format!("/v1/campaigns/{id}/start"),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    wait_finished(&app, &mut rx, &id).await;
    let after = expect_json(
        app.get(&format!("/v1/campaigns/{id}/stats")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["attempts"]["total"], targets + 5, "{after}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    app.stop().await;
}
