//! What the demo prints: a live progress line (redrawn on a terminal,
//! periodic lines otherwise), the closing summary read from the database,
//! and the REST URLs to explore.

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::Ids;
use crate::domain::TargetState;
use crate::store::Store;

const BAR: usize = 24;

/// The live progress display.
pub(super) struct Progress {
    tty: bool,
    total: u32,
    drawn: bool,
}

impl Progress {
    pub(super) fn new(tty: bool, total: u32) -> Progress {
        Progress {
            tty,
            total,
            drawn: false,
        }
    }

    /// One update from the campaign's stats.
    pub(super) fn show(&mut self, stats: &Value, elapsed: Duration) {
        let by = &stats["targets"]["by_state"];
        let n = |s: &str| by[s].as_u64().unwrap_or(0);
        let done = n("finished") + n("failed");
        let frac = if self.total == 0 {
            1.0
        } else {
            done as f64 / f64::from(self.total)
        };
        let filled = ((frac * BAR as f64).round() as usize).min(BAR);
        let states: Vec<String> = TargetState::ALL
            .iter()
            .map(|s| format!("{} {}", s.as_str(), n(s.as_str())))
            .collect();
        let line = format!(
            "{:>5.1}s [{}{}] {:>3.0}% | {} | in flight {} | {:.1} calls/s",
            elapsed.as_secs_f64(),
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            frac * 100.0,
            states.join(", "),
            stats["live_calls"].as_u64().unwrap_or(0),
            stats["calls_per_second"]["current"].as_f64().unwrap_or(0.0),
        );
        let mut out = std::io::stdout().lock();
        if self.tty {
            // Carriage return and clear-line: the line is redrawn in place.
            let _ = write!(out, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        self.drawn = true;
    }

    /// Ends a redrawn line so what follows starts on its own.
    pub(super) fn finish(&mut self) {
        if self.tty && self.drawn {
            println!();
        }
        self.drawn = false;
    }
}

/// The demo's outcome, from the database.
pub(super) struct Summary {
    targets: Vec<(String, i64)>,
    outcomes: Vec<(String, i64)>,
    results: Vec<(String, i64)>,
    attempts: i64,
    retries: i64,
    elapsed: Duration,
    /// (channel, status, count) of the messages sent.
    messages: Vec<(String, String, i64)>,
}

/// Waits (bounded) until no message is queued or being sent and the counts
/// have stood still for a few seconds (delivery reports still coming in;
/// some never come, as for real phones).
pub(super) async fn wait_messages_settled(store: &Store, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Vec::new();
    let mut still_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        let Ok(counts) = store.message_counts().await else {
            return;
        };
        let busy = counts
            .iter()
            .any(|(_, s, n)| *n > 0 && matches!(s.as_str(), "queued" | "sending"));
        if counts != last {
            last = counts;
            still_since = tokio::time::Instant::now();
        } else if !busy && still_since.elapsed() >= Duration::from_millis(2500) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Summary {
    pub(super) async fn load(
        store: &Store,
        ids: &Ids,
        elapsed: Duration,
    ) -> anyhow::Result<Summary> {
        let mut targets: Vec<(String, i64)> = store
            .count_targets_by_state(&ids.outdial)
            .await?
            .into_iter()
            .map(|(state, n)| (state.as_str().to_string(), n))
            .collect();
        targets.sort();
        let calls = store.campaign_call_summary(&ids.campaign).await?;
        Ok(Summary {
            targets,
            outcomes: calls.outcomes,
            results: calls.results,
            attempts: calls.attempts,
            retries: calls.attempts - calls.targets_dialed,
            elapsed,
            messages: store.message_counts().await?,
        })
    }

    pub(super) fn print(&self, interrupted: bool) {
        let how = if interrupted { "stopped" } else { "finished" };
        println!(
            "Summary: the campaign {how} after {:.1} s",
            self.elapsed.as_secs_f64()
        );
        println!("  {:<8} {:<22} {:>8}", "what", "", "count");
        let total: i64 = self.targets.iter().map(|(_, n)| n).sum();
        for (state, n) in &self.targets {
            println!("  {:<8} {:<22} {:>8}", "target", state, n);
        }
        println!("  {:<8} {:<22} {:>8}", "target", "(all)", total);
        for (outcome, n) in &self.outcomes {
            println!("  {:<8} {:<22} {:>8}", "attempt", outcome, n);
        }
        println!("  {:<8} {:<22} {:>8}", "attempt", "(all)", self.attempts);
        println!("  {:<8} {:<22} {:>8}", "retries", "", self.retries);
        for (result, n) in &self.results {
            println!("  {:<8} {:<22} {:>8}", "result", result, n);
        }
        for (channel, status, n) in &self.messages {
            let what = if channel == "email" {
                "e-mail"
            } else {
                channel.as_str()
            };
            println!("  {:<8} {:<22} {:>8}", what, status, n);
        }
        println!(
            "  {:<8} {:<22} {:>8.1}",
            "seconds",
            "",
            self.elapsed.as_secs_f64()
        );
    }
}

/// Where to look next, with the demo's API key.
pub(super) fn print_urls(base: &str, key: &str, ids: &Ids, keep: bool) {
    println!();
    if keep {
        println!("herald keeps running at {base} until Ctrl-C. Explore it:");
    } else {
        println!("The REST API to explore (run with --keep to keep it up; it stops now):");
    }
    let c = &ids.campaign;
    let o = &ids.outdial;
    println!("  export H='X-API-Key: {key}'");
    println!("  curl -s -H \"$H\" {base}/v1/campaigns/{c}/stats");
    println!("  curl -s -H \"$H\" '{base}/v1/calls?campaign_id={c}&page_size=5'");
    println!("  curl -s -H \"$H\" '{base}/v1/calls?campaign_id={c}&outcome=busy&page_size=5'");
    println!("  curl -s -H \"$H\" '{base}/v1/outdials/{o}/targets?state=failed&page_size=5'");
    println!("  curl -s -H \"$H\" {base}/v1/targets/TARGET_ID/events");
    if keep {
        println!("The console, in a browser (log in with the key above):");
        println!("  {base}/ui/campaigns/{c}");
    }
}
