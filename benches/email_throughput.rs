//! E-mail per second through herald: `POST /v1/emails` from a template to
//! an in-process herald (SQLite in a temporary directory, transport smtp)
//! whose SMTP client sends to an aiosmtpd server (tests/peers/smtp_sink.py,
//! not herald's code), timed from the first POST until the server has
//! received every message; lost and duplicated messages are counted by
//! their Message-ID at the server.
//!
//!     cargo bench --bench email_throughput     # HERALD_EMAIL_MESSAGES (5000), HERALD_EMAIL_POSTERS (64), HERALD_EMAIL_POOL (4: SMTP connections)

#[path = "../tests/peers/mod.rs"]
mod peers;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use peers::SmtpSink;
use serde_json::json;
use tokio::task::JoinSet;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_usize("HERALD_EMAIL_MESSAGES", 5_000);
    let posters = env_usize("HERALD_EMAIL_POSTERS", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n, posters));
}

async fn run(n: usize, posters: usize) {
    let mut sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        (
            "HERALD__DATABASE__URL".to_string(),
            format!("sqlite://{}/herald.db", dir.path().display()),
        ),
        ("HERALD__API__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("HERALD__CHANNELS__EMAIL__SMTP_URL".to_string(), sink.url()),
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
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        refused += r.expect("poster");
    }
    let accept_secs = started.elapsed().as_secs_f64();
    let mut ids = HashSet::new();
    let mut received = 0;
    while received < n - refused {
        let m = sink.next_message().await;
        received += 1;
        if let Some(line) = m
            .data
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        {
            ids.insert(line.to_string());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let counts = app.store.message_counts().await.expect("counts");
    app.shutdown().await;
    println!("email_throughput: {n} e-mails from a template, {posters} posters, SMTP to aiosmtpd");
    println!(
        "accepted {} (refused {refused}) by POST /v1/emails in {accept_secs:.2} s ({:.0}/s)",
        n - refused,
        (n - refused) as f64 / accept_secs
    );
    println!(
        "received by the SMTP server: {received} in {secs:.2} s = {:.0} messages/s end to end; distinct Message-IDs {}, duplicated {}, lost {}",
        received as f64 / secs,
        ids.len(),
        received - ids.len(),
        (n - refused) - ids.len()
    );
    println!("store: {counts:?}");
}
