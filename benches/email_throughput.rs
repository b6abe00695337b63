//! E-mail per second through herald, against an aiosmtpd server
//! (tests/peers/smtp_sink.py, not herald's code), three runs on one server:
//!
//! 1. end to end: `POST /v1/emails` from a template to an in-process herald
//!    (SQLite in a temporary directory, transport smtp), timed from the
//!    first POST until the server has received every message;
//! 2. herald's `SmtpTransport` alone: the same messages handed to
//!    `Transport::send` by 200 concurrent callers (the sender's `in_flight`);
//! 3. a bare client: lettre's `AsyncSmtpConnection` on as many connections
//!    as herald's pool, each sending one message after the other (MAIL,
//!    RCPT, DATA, the body; nothing else), i.e. what the server takes at all.
//!
//! Lost and duplicated messages are counted by their Message-ID at the
//! server, which is read while the messages are sent (a server whose output
//! is not read stops answering).
//!
//!     cargo bench --bench email_throughput
//!     # HERALD_EMAIL_MESSAGES (5000), HERALD_EMAIL_POSTERS (64),
//!     # HERALD_EMAIL_POOL (4: herald's SMTP connections, and the bare client's),
//!     # HERALD_EMAIL_BARE_NODELAY (1; 0: the bare client's sockets keep Nagle's algorithm),
//!     # HERALD_EMAIL_BARE_NOOP (0; 1: the bare client sends NOOP before each message)

/// The allocator of the herald binary (src/main.rs): herald runs in this
/// process, and is measured as it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/peers/mod.rs"]
mod peers;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::message::email_message::build_message;
use herald::message::smtp::{SmtpSettings, SmtpTransport};
use herald::message::transport::{Email, Mailbox, Outbound, SendResult, Transport};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use peers::SmtpSink;
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// Concurrent callers of the transport in run 2 (the sender's default `in_flight`).
const CALLERS: usize = 200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_usize("HERALD_EMAIL_MESSAGES", 5_000);
    let posters = env_usize("HERALD_EMAIL_POSTERS", 64);
    let pool = env_usize("HERALD_EMAIL_POOL", 4);
    let bare = Bare {
        nodelay: env_usize("HERALD_EMAIL_BARE_NODELAY", 1) != 0,
        noop: env_usize("HERALD_EMAIL_BARE_NOOP", 0) != 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n, posters, pool, bare));
}

/// How the bare client of run 3 sends.
#[derive(Clone, Copy)]
struct Bare {
    /// TCP_NODELAY on its sockets.
    nodelay: bool,
    /// A NOOP before each message.
    noop: bool,
}

/// What the server received in one run.
struct Tally {
    received: usize,
    distinct: usize,
    /// When the last message was read.
    last: Instant,
}

/// Reads `count` messages from the sink in a task of its own, from now on.
fn collect(mut sink: SmtpSink, count: usize) -> JoinHandle<(SmtpSink, Tally)> {
    tokio::spawn(async move {
        let mut ids = HashSet::new();
        for _ in 0..count {
            let m = sink.next_message().await;
            if let Some(line) = m
                .data
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            {
                ids.insert(line.to_string());
            }
        }
        let tally = Tally {
            received: count,
            distinct: ids.len(),
            last: Instant::now(),
        };
        (sink, tally)
    })
}

fn report(run: &str, sent: usize, started: Instant, t: &Tally) -> f64 {
    let secs = t.last.duration_since(started).as_secs_f64();
    let rate = t.received as f64 / secs;
    println!(
        "{run}: {} received in {secs:.2} s = {rate:.0} messages/s; distinct Message-IDs {}, duplicated {}, lost {}",
        t.received,
        t.distinct,
        t.received - t.distinct,
        sent.saturating_sub(t.distinct)
    );
    rate
}

/// The message the template of run 1 renders for person `i`.
fn email(i: usize) -> Email {
    let id = Uuid::now_v7();
    let mailbox = |email: &str, name: Option<&str>| Mailbox {
        email: email.into(),
        name: name.map(str::to_string),
    };
    Email {
        id,
        message_id: format!("{id}@herald.local"),
        from: mailbox("herald@herald.local", Some("herald")),
        to: vec![mailbox(&format!("person{i}@example.com"), None)],
        cc: vec![],
        bcc: vec![],
        reply_to: None,
        subject: format!("Your order A-{i}"),
        body_html: Some(format!(
            "<p>Dear Person {i},</p><p>thank you for order <b>A-{i}</b>.</p>"
        )),
        body_text: Some(format!("Dear Person {i}, thank you for order A-{i}.")),
        return_path: format!("bounces+{id}@herald.local"),
        list_unsubscribe: None,
    }
}

async fn run(n: usize, posters: usize, pool: usize, bare: Bare) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    println!(
        "email_throughput: {n} e-mails, {pool} SMTP connections, to aiosmtpd (tests/peers/smtp_sink.py)"
    );
    let (sink, e2e) = end_to_end(sink, n, posters, pool).await;
    let (sink, transport) = transport_alone(sink, &url, n, pool).await;
    let (_sink, bare) = bare_client(sink, &url, n, pool, bare).await;
    println!(
        "herald end to end / bare client: {:.2}; herald's transport / bare client: {:.2}",
        e2e / bare,
        transport / bare
    );
}

/// Run 1: the whole path through herald.
async fn end_to_end(sink: SmtpSink, n: usize, posters: usize, pool: usize) -> (SmtpSink, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        (
            "HERALD__DATABASE__URL".to_string(),
            format!("sqlite://{}/herald.db", dir.path().display()),
        ),
        ("HERALD__API__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("HERALD__CHANNELS__EMAIL__SMTP_URL".to_string(), sink.url()),
        (
            "HERALD__CHANNELS__EMAIL__POOL_SIZE".to_string(),
            pool.to_string(),
        ),
        (
            "HERALD__CHANNELS__EMAIL__MAX_PER_SECOND".to_string(),
            "0".to_string(),
        ),
        (
            "HERALD__CHANNELS__SMS__TRANSPORT".to_string(),
            "off".to_string(),
        ),
    ];
    let config = herald::config::Config::load_from(None, env).expect("config");
    let app = herald::app::App::start(&config, None)
        .await
        .expect("herald starts");
    let (_, key) = app.store.create_api_key("bench", 0).await.expect("api key");
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::new();
    let template = json!({"name": "Receipt", "code": "receipt", "channel": "email",
        "variables": [{"key": "name", "required": true}, {"key": "order", "required": true}],
        "subject_template": "Your order {{order}}",
        "body_text_template": "Dear {{name}}, thank you for order {{order}}.",
        "body_html_template": "<p>Dear {{name}},</p><p>thank you for order <b>{{order}}</b>.</p>"});
    let t: serde_json::Value = client
        .post(format!("{base}/v1/templates"))
        .header("x-api-key", &key)
        .json(&template)
        .send()
        .await
        .expect("create template")
        .json()
        .await
        .expect("template");
    let tid = t["id"].as_str().expect("template id").to_string();
    client
        .post(format!("{base}/v1/templates/{tid}/activate"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("activate");

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..posters {
        let (client, base, key, next) = (client.clone(), base.clone(), key.clone(), next.clone());
        set.spawn(async move {
            let mut refused = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = client
                    .post(format!("{base}/v1/emails"))
                    .header("x-api-key", &key)
                    .json(&json!({"to": [{"email": format!("person{i}@example.com")}], "template_id": "receipt",
                                  "template_variables": {"name": format!("Person {i}"), "order": format!("A-{i}")}}))
                    .send()
                    .await;
                if !matches!(r, Ok(ref r) if r.status().as_u16() == 202) {
                    refused += 1;
                }
            }
            refused
        });
    }
    // Every POST may be accepted: read that many (a refused one ends the
    // run with the sink's deadline, as a lost message would).
    let reader = collect(sink, n);
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        refused += r.expect("poster");
    }
    let accept_secs = started.elapsed().as_secs_f64();
    println!(
        "accepted {} (refused {refused}) by POST /v1/emails in {accept_secs:.2} s ({:.0}/s)",
        n - refused,
        (n - refused) as f64 / accept_secs
    );
    let (sink, tally) = reader.await.expect("sink reader");
    let rate = report("1. herald end to end", n - refused, started, &tally);
    let counts = app.store.message_counts().await.expect("counts");
    app.shutdown().await;
    println!("   store: {counts:?}");
    (sink, rate)
}

/// Run 2: herald's SMTP transport alone.
async fn transport_alone(sink: SmtpSink, url: &str, n: usize, pool: usize) -> (SmtpSink, f64) {
    let transport = Arc::new(
        SmtpTransport::new(&SmtpSettings {
            url: url.to_string(),
            pool_size: pool as u32,
            timeout: Duration::from_secs(30),
            hello_name: Some("herald.local".into()),
            ..SmtpSettings::default()
        })
        .expect("smtp settings"),
    );
    let messages: Arc<Vec<Outbound>> =
        Arc::new((0..n).map(|i| Outbound::Email(email(i))).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let reader = collect(sink, n);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..CALLERS.min(n) {
        let (transport, messages, next) = (transport.clone(), messages.clone(), next.clone());
        set.spawn(async move {
            let mut not_accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = messages.get(i) else { break };
                if !matches!(transport.send(m).await, SendResult::Accepted { .. }) {
                    not_accepted += 1;
                }
            }
            not_accepted
        });
    }
    let mut not_accepted = 0;
    while let Some(r) = set.join_next().await {
        not_accepted += r.expect("caller");
    }
    let (sink, tally) = reader.await.expect("sink reader");
    let rate = report("2. herald's SmtpTransport", n, started, &tally);
    println!("   not accepted: {not_accepted}");
    transport.close().await;
    (sink, rate)
}

/// Run 3: a bare lettre client, `pool` connections.
async fn bare_client(
    sink: SmtpSink,
    url: &str,
    n: usize,
    pool: usize,
    how: Bare,
) -> (SmtpSink, f64) {
    let port = url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let addr = ("127.0.0.1", port.expect("the sink's port"));
    let messages: Arc<Vec<(lettre::address::Envelope, Vec<u8>)>> = Arc::new(
        (0..n)
            .map(|i| {
                let m = build_message(&email(i)).expect("builds");
                (m.envelope().clone(), m.formatted())
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let hello = ClientId::Domain("bare.test".into());
    let reader = collect(sink, n);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..pool {
        let (messages, next, hello) = (messages.clone(), next.clone(), hello.clone());
        set.spawn(async move {
            let mut conn = if how.nodelay {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tcp.set_nodelay(true).expect("TCP_NODELAY");
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await
            } else {
                AsyncSmtpConnection::connect_tokio1(addr, None, &hello, None, None).await
            }
            .expect("EHLO");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((envelope, body)) = messages.get(i) else {
                    break;
                };
                if how.noop {
                    assert!(conn.test_connected().await, "NOOP answered");
                }
                conn.send(envelope, body).await.expect("sent");
            }
            let _ = conn.quit().await;
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("bare client");
    }
    let (sink, tally) = reader.await.expect("sink reader");
    let socket = if how.nodelay {
        "TCP_NODELAY"
    } else {
        "Nagle on"
    };
    let noop = if how.noop { ", NOOP before each" } else { "" };
    let rate = report(
        &format!("3. bare lettre client ({socket}{noop})"),
        n,
        started,
        &tally,
    );
    (sink, rate)
}
