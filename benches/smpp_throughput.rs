//! SMS per second through herald's SMPP transport to the smsc.js peer (the
//! npm `smpp` package; tests/peers/smsc.js), and, in the same run, a bare
//! rusmppc client loop with the same window (no herald transport) as the
//! baseline. Every message gets a receipt; the run counts receipts matched
//! to accepted ids, and lost and duplicated messages as the SMSC saw them.
//! Reports are consumed while sending, as the store does: a sink that is
//! not drained holds receipts unanswered (by design) and, once full, slowed
//! herald's run about tenfold (377 msg/s) in an earlier version of this bench.
//!
//! Run: `cargo bench --bench smpp_throughput`. Environment:
//! `HERALD_SMPP_MESSAGES` (default 20000), `HERALD_SMPP_WINDOW` (default 10),
//! `HERALD_SMPP_SENDERS` (concurrent callers of `send`, default 100).

/// The allocator of the herald binary (src/main.rs): herald runs in this
/// process, and is measured as it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/peers/smsc.rs"]
mod smsc;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::config::Secret;
use herald::message::smpp::{normalise_id, SmppSettings, SmppTransport};
use herald::message::transport::{Outbound, ReportKey, ReportSink, SendResult, Sms, Transport};
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandId, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use serde_json::Value;
use smsc::Smsc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    label: &'static str,
    sent: usize,
    accepted: usize,
    not_accepted: usize,
    secs: f64,
    receipts_matched: usize,
    receipts_unmatched: usize,
    receipt_secs: f64,
    smsc: Value,
}

impl Run {
    fn print(&self) {
        let submits = self.smsc["submits"].as_u64().unwrap_or(0) as usize;
        let unique = self.smsc["unique_bodies"].as_u64().unwrap_or(0) as usize;
        println!(
            "{:<18} {:>7} sent {:>7} accepted {:>5} not  {:>9.0} msg/s  receipts matched {:>7} unmatched {:>3} (all in {:.2} s)  SMSC: {} submits, lost {}, duplicated {}",
            self.label,
            self.sent,
            self.accepted,
            self.not_accepted,
            self.accepted as f64 / self.secs,
            self.receipts_matched,
            self.receipts_unmatched,
            self.receipt_secs,
            submits,
            self.sent.saturating_sub(unique),
            submits.saturating_sub(unique),
        );
    }
}

async fn herald_run(n: usize, window: usize, senders: usize) -> Run {
    let mut peer = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let mut settings = SmppSettings::new("127.0.0.1", peer.port, "herald", Secret("secret".into()));
    settings.window = window;
    let (reports_tx, mut reports) = ReportSink::channel(4096);
    let transport = Arc::new(SmppTransport::start(settings, reports_tx, None));
    assert!(
        transport.wait_bound(Duration::from_secs(10)).await,
        "no bind"
    );

    // The report consumer runs alongside the senders, as the store would.
    let collector = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut keys = Vec::with_capacity(n);
        while keys.len() < n {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => keys.push(report.kept().key),
                _ => break,
            }
        }
        (keys, Instant::now())
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..senders {
        let transport = transport.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut ids = Vec::new();
            let mut not = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let msg = Outbound::Sms(Sms {
                    id: uuid::Uuid::now_v7(),
                    from: "+15551234567".into(),
                    to: "+15557654321".into(),
                    body: format!("bench message {i}"),
                });
                match transport.send(&msg).await {
                    SendResult::Accepted {
                        provider_id: Some(id),
                        ..
                    } => ids.push(id),
                    _ => not += 1,
                }
            }
            (ids, not)
        });
    }
    let mut accepted = HashSet::new();
    let mut not_accepted = 0;
    while let Some(r) = set.join_next().await {
        let (ids, not) = r.expect("sender task");
        accepted.extend(ids);
        not_accepted += not;
    }
    let secs = started.elapsed().as_secs_f64();

    let (keys, last) = collector.await.expect("report collector");
    let receipt_secs = last.duration_since(started).as_secs_f64();
    let mut matched = HashSet::new();
    let mut unmatched = 0;
    for key in keys {
        match key {
            ReportKey::Provider(id) if accepted.contains(&id) => {
                if !matched.insert(id) {
                    unmatched += 1;
                }
            }
            _ => unmatched += 1,
        }
    }
    transport.close().await;
    let stats = peer.stats(Duration::from_secs(10)).await;
    peer.stop().await;
    Run {
        label: "herald transport",
        sent: n,
        accepted: accepted.len(),
        not_accepted,
        secs,
        receipts_matched: matched.len(),
        receipts_unmatched: unmatched,
        receipt_secs,
        smsc: stats,
    }
}

/// The whole path: `POST /v1/sms` to an in-process herald (SQLite in a
/// temporary directory, transport smpp to the same kind of SMSC), its
/// sender, the SMSC's receipts, and the store, until every message is
/// `delivered`. Time runs from the first POST to the last delivery.
async fn end_to_end_run(n: usize, window: usize, senders: usize) -> Run {
    let mut peer = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        (
            "HERALD__DATABASE__URL".to_string(),
            format!("sqlite://{}/herald.db", dir.path().display()),
        ),
        ("HERALD__API__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("HERALD__SIMULATOR__ENABLED".to_string(), "true".to_string()),
        (
            "HERALD__CHANNELS__EMAIL__TRANSPORT".to_string(),
            "off".to_string(),
        ),
        (
            "HERALD__CHANNELS__SMS__SMPP_URL".to_string(),
            format!("smpp://herald@127.0.0.1:{}", peer.port),
        ),
        (
            "HERALD__CHANNELS__SMS__PASSWORD".to_string(),
            "secret".to_string(),
        ),
        (
            "HERALD__CHANNELS__SMS__WINDOW".to_string(),
            window.to_string(),
        ),
        (
            "HERALD__CHANNELS__SMS__MAX_PER_SECOND".to_string(),
            "0".to_string(),
        ),
    ];
    let config = herald::config::Config::load_from(None, env).expect("config");
    let app = herald::app::App::start(&config, None)
        .await
        .expect("herald starts");
    let (_, key) = app.store.create_api_key("bench", 0).await.expect("api key");
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..senders {
        let (client, base, key, next) = (client.clone(), base.clone(), key.clone(), next.clone());
        set.spawn(async move {
            let mut not = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = client
                    .post(format!("{base}/v1/sms"))
                    .header("x-api-key", &key)
                    .json(&serde_json::json!({"to": format!("+1555{:07}", 1_000_000 + i * 10 + 1 + i % 9), "body": format!("bench message {i}")}))
                    .send()
                    .await;
                if !matches!(r, Ok(ref r) if r.status().as_u16() == 202) {
                    not += 1;
                }
            }
            not
        });
    }
    let mut not_accepted = 0;
    while let Some(r) = set.join_next().await {
        not_accepted += r.expect("poster task");
    }
    let accept_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    let delivered = loop {
        let counts = app.store.message_counts().await.expect("counts");
        let of = |st: &str| {
            counts
                .iter()
                .filter(|(_, s, _)| s == st)
                .map(|(_, _, k)| *k)
                .sum::<i64>()
        };
        let (delivered, open) = (of("delivered"), of("queued") + of("sending") + of("sent"));
        if open == 0 || Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "end to end: {n} accepted by POST /v1/sms in {accept_secs:.2} s ({:.0}/s)",
        n as f64 / accept_secs
    );
    app.shutdown().await;
    let stats = peer.stats(Duration::from_secs(10)).await;
    peer.stop().await;
    Run {
        label: "herald end to end",
        sent: n,
        accepted: n - not_accepted,
        not_accepted,
        secs,
        receipts_matched: delivered as usize,
        receipts_unmatched: 0,
        receipt_secs: secs,
        smsc: stats,
    }
}

async fn bare_run(n: usize, window: usize, senders: usize) -> Run {
    let mut peer = Smsc::start(&[("SMSC_LOG", "count")]).await;
    let (client, mut events) = ConnectionBuilder::new()
        .disable_interface_version_check()
        .connect(format!("smpp://127.0.0.1:{}", peer.port))
        .await
        .expect("connect");
    client
        .bind_transceiver(
            BindTransceiver::builder()
                .system_id(COctetString::from_str("herald").expect("id"))
                .password(COctetString::from_str("secret").expect("pw"))
                .interface_version(InterfaceVersion::Smpp3_4)
                .build(),
        )
        .await
        .expect("bind");
    // Receipts: answer each and collect its id (TLV receipted_message_id).
    let (receipt_tx, mut receipt_rx) = mpsc::unbounded_channel::<String>();
    let answering = client.clone();
    let receipts_task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let Event::Incoming(command) = event else {
                continue;
            };
            if command.id() != CommandId::DeliverSm {
                continue;
            }
            if let Some(Pdu::DeliverSm(d)) = command.pdu() {
                for tlv in d.tlvs() {
                    if let Some(rusmpp::tlvs::TlvValue::ReceiptedMessageId(id)) = tlv.value() {
                        let _ = receipt_tx.send(normalise_id(id.as_str()));
                    }
                }
            }
            let _ = answering
                .deliver_sm_resp(command.sequence_number(), DeliverSmResp::default())
                .await;
        }
    });

    let window = Arc::new(Semaphore::new(window));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..senders {
        let client = client.clone();
        let window = window.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut ids = Vec::new();
            let mut not = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let sm = SubmitSm::builder()
                    .source_addr_ton(Ton::International)
                    .source_addr_npi(Npi::Isdn)
                    .source_addr(COctetString::from_str("15551234567").expect("src"))
                    .dest_addr_ton(Ton::International)
                    .dest_addr_npi(Npi::Isdn)
                    .destination_addr(COctetString::from_str("15557654321").expect("dst"))
                    .registered_delivery(RegisteredDelivery::from(1u8))
                    .short_message(
                        OctetString::from_str(&format!("bench message {i}")).expect("text"),
                    )
                    .build();
                let Ok(_permit) = window.acquire().await else {
                    break;
                };
                match client.submit_sm(sm).await {
                    Ok(resp) => ids.push(normalise_id(resp.message_id().as_str())),
                    Err(_) => not += 1,
                }
            }
            (ids, not)
        });
    }
    let mut accepted = HashSet::new();
    let mut not_accepted = 0;
    while let Some(r) = set.join_next().await {
        let (ids, not) = r.expect("sender task");
        accepted.extend(ids);
        not_accepted += not;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut matched = HashSet::new();
    let mut unmatched = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while matched.len() < accepted.len() {
        match tokio::time::timeout_at(deadline, receipt_rx.recv()).await {
            Ok(Some(id)) if accepted.contains(&id) => {
                if !matched.insert(id) {
                    unmatched += 1;
                }
            }
            Ok(Some(_)) => unmatched += 1,
            _ => break,
        }
    }
    let receipt_secs = started.elapsed().as_secs_f64();
    let _ = client.unbind().await;
    let _ = client.close_and_wait().await;
    let _ = receipts_task.await;
    let stats = peer.stats(Duration::from_secs(10)).await;
    peer.stop().await;
    Run {
        label: "bare rusmppc",
        sent: n,
        accepted: accepted.len(),
        not_accepted,
        secs,
        receipts_matched: matched.len(),
        receipts_unmatched: unmatched,
        receipt_secs,
        smsc: stats,
    }
}

fn main() {
    let n = env_usize("HERALD_SMPP_MESSAGES", 20_000);
    let window = env_usize("HERALD_SMPP_WINDOW", 10);
    let senders = env_usize("HERALD_SMPP_SENDERS", 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("smpp_throughput: {n} messages, window {window}, {senders} concurrent senders, peer smsc.js (node)");
    rt.block_on(async {
        let herald = herald_run(n, window, senders).await;
        herald.print();
        let whole = end_to_end_run(n, window, senders.min(64)).await;
        whole.print();
        let bare = bare_run(n, window, senders).await;
        bare.print();
        let rate = |r: &Run| r.accepted as f64 / r.secs;
        println!(
            "herald transport / bare: {:.2}",
            rate(&herald) / rate(&bare)
        );
        println!(
            "herald end to end (delivered) / bare: {:.2}",
            rate(&whole) / rate(&bare)
        );
    });
}
