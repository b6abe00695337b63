//! `POST /v1/notifications/bulk` against a release `herald serve` (SQLite in
//! a temporary directory, SMS to the built-in simulator, e-mail off): for
//! 10,000 and 100,000 recipients, each in a fresh process, the time until
//! the 202 (every row rendered from a template and written with its
//! message), the peak RSS of the process after it (VmHWM), and the time
//! until the simulator has taken every SMS (sent or delivered).
//!
//!     cargo bench --bench notifications_bulk
//!     # HERALD_BULK_SIZES (10000,100000)
//!     # HERALD_BULK_SMS_RATE (0 = unlimited: the simulator takes SMS while
//!     #   the bulk is written; 1 keeps the sender out of the way)

#[path = "../tests/common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use process::HeraldProcess;
use serde_json::{json, Value};

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("HERALD_BULK_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in sizes {
        let rate = std::env::var("HERALD_BULK_SMS_RATE").unwrap_or_else(|_| "0".into());
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}/herald.db", dir.path().display());
        let h = HeraldProcess::start(
            dir.path(),
            &[
                ("HERALD__DATABASE__URL", &db),
                ("HERALD__CHANNELS__EMAIL__TRANSPORT", "off"),
                ("HERALD__CHANNELS__SMS__MAX_PER_SECOND", rate.as_str()),
            ],
            false,
        );
        let c = reqwest::Client::new();
        let t = h
            .post(
                &c,
                "/v1/templates",
                json!({"name": "Alert", "code": "alert", "channel": "sms",
                "variables": [{"key": "name", "required": true}, {"key": "zone", "required": true}],
                "body_template": "{{name}}: storm warning for {{zone}}"}),
            )
            .await;
        h.post(
            &c,
            &format!("/v1/templates/{}/activate", t["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
        let recipients: Vec<Value> = (0..n)
            .map(|i| json!({"phone": format!("+1555{:07}", i), "data": {"name": format!("n{i}")}}))
            .collect();
        let body = json!({"channels": ["sms"], "template_id": "alert", "data": {"zone": "north"}, "recipients": recipients});
        let rss_before = vm_hwm_kb(h.child.id());
        let started = Instant::now();
        let answer = h.post(&c, "/v1/notifications/bulk", body).await;
        let accepted_in = started.elapsed();
        let rss = vm_hwm_kb(h.child.id());
        assert_eq!(answer["accepted"], n, "{}", answer["rejected"]);
        let bulk = answer["bulk_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(1800);
        if rate != "0" {
            println!(
                "bulk of {n} (SMS at {rate}/s): 202 in {:.2} s ({:.0} rows/s); peak RSS {} MiB (before the bulk {} MiB)",
                accepted_in.as_secs_f64(),
                n as f64 / accepted_in.as_secs_f64(),
                rss / 1024,
                rss_before / 1024
            );
            continue;
        }
        let sent_in = loop {
            let counts = h.get(&c, &format!("/v1/notifications/bulk/{bulk}")).await;
            let queued = counts["by_status"]["queued"].as_i64().unwrap_or(0);
            if queued == 0 {
                break started.elapsed();
            }
            assert!(Instant::now() < deadline, "{counts}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!(
            "bulk of {n}: 202 in {:.2} s ({:.0} rows/s); peak RSS {} MiB (before the bulk {} MiB); every SMS taken by the simulator after {:.1} s ({:.0}/s)",
            accepted_in.as_secs_f64(),
            n as f64 / accepted_in.as_secs_f64(),
            rss / 1024,
            rss_before / 1024,
            sent_in.as_secs_f64(),
            n as f64 / sent_in.as_secs_f64(),
        );
    }
}
