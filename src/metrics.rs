//! Process metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! Owns a small registry: counters (optionally with one label), gauges and
//! histograms, all process-cumulative, updated where herald does the thing
//! (the store after a commit, the call job at a call's end, the webhook
//! dispatcher after a delivery). Gauges that describe the database (target
//! counts, webhook outbox depth) are read at scrape time by the API route and
//! passed in as [`ScrapeGauges`]. Must not: do I/O or read the clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

mod health;
mod pacing;
pub use health::HealthGauge;
pub use pacing::AbandonGauge;

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A count per value of one label.
#[derive(Default, Debug)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn add(&self, label: &str, n: u64) {
        let mut m = self.0.lock().expect("counter");
        match m.get_mut(label) {
            Some(v) => *v += n,
            None => {
                m.insert(label.to_string(), n);
            }
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("counter").clone()
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
struct HistogramState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Observations in cumulative buckets (upper bounds, ascending).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                counts: vec![0; bounds.len()],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let mut s = self.state.lock().expect("histogram");
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            s.counts[i] += 1;
        }
        s.sum += v;
        s.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.state.lock().expect("histogram").count
    }
}

/// One histogram per value of one label.
#[derive(Debug)]
pub struct LabeledHistogram {
    bounds: &'static [f64],
    by: Mutex<BTreeMap<&'static str, HistogramState>>,
}

impl LabeledHistogram {
    pub fn new(bounds: &'static [f64]) -> LabeledHistogram {
        LabeledHistogram {
            bounds,
            by: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, label: &'static str, v: f64) {
        let mut m = self.by.lock().expect("histogram");
        let s = m.entry(label).or_insert_with(|| HistogramState {
            counts: vec![0; self.bounds.len()],
            sum: 0.0,
            count: 0,
        });
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            s.counts[i] += 1;
        }
        s.sum += v;
        s.count += 1;
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const LAG_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];
const JITTER_BOUNDS: &[f64] = &[1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];

/// herald's process-wide metrics. One per running herald (held by its store).
#[derive(Debug)]
pub struct Metrics {
    /// Campaign attempts placed (claimed for dialing).
    pub attempts_started: Counter,
    /// Campaign attempts ended, by outcome.
    pub attempts_ended: LabeledCounter,
    /// One-off call tries ended, by outcome.
    pub one_off_tries: LabeledCounter,
    /// Final SIP status codes of INVITEs (campaign attempts and one-off tries).
    pub sip_final: LabeledCounter,
    pub rtp_packets_sent: Counter,
    pub rtp_packets_received: Counter,
    pub rtp_packets_lost: Counter,
    /// Audio given to calls to play (a bot's, a prompt) and dropped because
    /// a call's playout queue was full, in μ-law bytes (8,000 a second).
    pub playout_dropped_bytes: Counter,
    /// Interarrival jitter of each answered call at its end, in milliseconds.
    pub rtp_jitter_ms: Histogram,
    /// How late a due target was claimed, in seconds.
    pub scheduler_lag: Histogram,
    /// Store operations' latency, in seconds, by operation.
    pub store_latency: LabeledHistogram,
    /// Events written to the event log.
    pub events_logged: Counter,
    /// Webhook deliveries by result (`delivered`, `failed`).
    pub webhook_deliveries: LabeledCounter,
    /// Webhooks disabled after failing too long.
    pub webhooks_disabled: Counter,
    /// Open SSE streams.
    pub sse_streams: Gauge,
    /// Datagrams on the SIP port that were not usable SIP messages.
    pub sip_malformed_datagrams: Counter,
    /// How long a message transport took to answer a send, by channel.
    pub message_send_latency: LabeledHistogram,
    /// Each running campaign's abandonment, as its task last counted it.
    pub abandonment: std::sync::Mutex<BTreeMap<String, AbandonGauge>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            attempts_started: Counter::default(),
            attempts_ended: LabeledCounter::default(),
            one_off_tries: LabeledCounter::default(),
            sip_final: LabeledCounter::default(),
            rtp_packets_sent: Counter::default(),
            rtp_packets_received: Counter::default(),
            rtp_packets_lost: Counter::default(),
            playout_dropped_bytes: Counter::default(),
            rtp_jitter_ms: Histogram::new(JITTER_BOUNDS),
            scheduler_lag: Histogram::new(LAG_BOUNDS),
            store_latency: LabeledHistogram::new(LATENCY_BOUNDS),
            events_logged: Counter::default(),
            webhook_deliveries: LabeledCounter::default(),
            webhooks_disabled: Counter::default(),
            sse_streams: Gauge::default(),
            sip_malformed_datagrams: Counter::default(),
            message_send_latency: LabeledHistogram::new(LATENCY_BOUNDS),
            abandonment: Default::default(),
        }
    }
}

/// Values read at scrape time from outside the registry.
#[derive(Debug, Default, Clone)]
pub struct ScrapeGauges {
    /// Calls in flight on this node.
    pub calls_in_flight: u64,
    /// Agent sessions in use, per agent id.
    pub agent_sessions: Vec<(String, u64)>,
    /// (campaign id, target state, count).
    pub campaign_targets: Vec<(String, String, i64)>,
    /// Events not yet delivered (or skipped), per webhook id.
    pub webhook_outbox: Vec<(String, i64)>,
    /// (channel, status, count) of stored messages.
    pub messages: Vec<(String, String, i64)>,
    /// (channel, transport, ready) of each message transport.
    pub message_transports: Vec<(String, String, bool)>,
    /// Each channel's health, then each failover provider's.
    pub message_health: Vec<HealthGauge>,
    /// (trunk, registered) of each trunk that registers.
    pub trunk_registered: Vec<(String, bool)>,
}

impl Metrics {
    /// Counts the end of a call's media: packets and jitter.
    pub fn call_media(&self, stats: Option<&crate::media::RtpStats>) {
        if let Some(s) = stats {
            self.rtp_packets_sent.add(s.packets_sent);
            self.rtp_packets_received.add(s.packets_received);
            self.rtp_packets_lost.add(s.lost);
            self.playout_dropped_bytes.add(s.playout_bytes_dropped);
            self.rtp_jitter_ms.observe(s.jitter_ms());
        }
    }

    /// The exposition text.
    pub fn render(&self, g: &ScrapeGauges) -> String {
        let mut out = String::with_capacity(8192);
        let o = &mut out;
        header(
            o,
            "herald_attempts_started_total",
            "counter",
            "Campaign attempts placed (a rate of this is calls per second).",
        );
        sample(
            o,
            "herald_attempts_started_total",
            &[],
            self.attempts_started.get() as f64,
        );
        labeled(
            o,
            "herald_attempts_total",
            "Campaign attempts ended, by outcome.",
            "outcome",
            &self.attempts_ended,
        );
        labeled(
            o,
            "herald_one_off_tries_total",
            "One-off call tries ended, by outcome.",
            "outcome",
            &self.one_off_tries,
        );
        labeled(
            o,
            "herald_sip_final_responses_total",
            "Final SIP responses to herald's INVITEs, by status code.",
            "code",
            &self.sip_final,
        );
        header(
            o,
            "herald_calls_in_flight",
            "gauge",
            "Calls being placed or talking on this node.",
        );
        sample(o, "herald_calls_in_flight", &[], g.calls_in_flight as f64);
        header(
            o,
            "herald_agent_sessions_in_use",
            "gauge",
            "Agent sessions held by live calls, per agent.",
        );
        for (agent, n) in &g.agent_sessions {
            sample(
                o,
                "herald_agent_sessions_in_use",
                &[("agent", agent)],
                *n as f64,
            );
        }
        header(
            o,
            "herald_campaign_targets",
            "gauge",
            "Targets of each campaign's list, by state.",
        );
        for (c, state, n) in &g.campaign_targets {
            sample(
                o,
                "herald_campaign_targets",
                &[("campaign", c), ("state", state)],
                *n as f64,
            );
        }
        self.render_pacing(o, g);
        header(
            o,
            "herald_rtp_packets_sent_total",
            "counter",
            "RTP packets sent by ended calls.",
        );
        sample(
            o,
            "herald_rtp_packets_sent_total",
            &[],
            self.rtp_packets_sent.get() as f64,
        );
        header(
            o,
            "herald_rtp_packets_received_total",
            "counter",
            "RTP packets received by ended calls.",
        );
        sample(
            o,
            "herald_rtp_packets_received_total",
            &[],
            self.rtp_packets_received.get() as f64,
        );
        header(
            o,
            "herald_rtp_packets_lost_total",
            "counter",
            "RTP packets that never arrived, over ended calls.",
        );
        sample(
            o,
            "herald_rtp_packets_lost_total",
            &[],
            self.rtp_packets_lost.get() as f64,
        );
        header(
            o,
            "herald_playout_dropped_bytes_total",
            "counter",
            "Audio to play dropped because a call's playout queue was full (mu-law bytes, 8000 a second), over ended calls.",
        );
        sample(
            o,
            "herald_playout_dropped_bytes_total",
            &[],
            self.playout_dropped_bytes.get() as f64,
        );
        histogram(
            o,
            "herald_rtp_jitter_milliseconds",
            "Interarrival jitter of each answered call at its end.",
            &[],
            self.rtp_jitter_ms.bounds,
            &self.rtp_jitter_ms.state.lock().expect("histogram").clone(),
        );
        histogram(
            o,
            "herald_scheduler_lag_seconds",
            "How late a due target was claimed for dialing.",
            &[],
            self.scheduler_lag.bounds,
            &self.scheduler_lag.state.lock().expect("histogram").clone(),
        );
        header(
            o,
            "herald_store_query_seconds",
            "histogram",
            "Latency of store operations, by operation.",
        );
        let by = self.store_latency.by.lock().expect("histogram").clone();
        for (op, st) in &by {
            histogram_samples(
                o,
                "herald_store_query_seconds",
                &[("op", op)],
                self.store_latency.bounds,
                st,
            );
        }
        header(
            o,
            "herald_events_logged_total",
            "counter",
            "Events written to the campaign event log.",
        );
        sample(
            o,
            "herald_events_logged_total",
            &[],
            self.events_logged.get() as f64,
        );
        labeled(
            o,
            "herald_webhook_deliveries_total",
            "Webhook delivery attempts, by result.",
            "result",
            &self.webhook_deliveries,
        );
        header(
            o,
            "herald_webhooks_disabled_total",
            "counter",
            "Webhooks disabled after failing for too long.",
        );
        sample(
            o,
            "herald_webhooks_disabled_total",
            &[],
            self.webhooks_disabled.get() as f64,
        );
        header(
            o,
            "herald_webhook_outbox_depth",
            "gauge",
            "Events not yet delivered, per enabled webhook.",
        );
        for (w, n) in &g.webhook_outbox {
            sample(
                o,
                "herald_webhook_outbox_depth",
                &[("webhook", w)],
                *n as f64,
            );
        }
        header(
            o,
            "herald_message_send_seconds",
            "histogram",
            "How long a message transport took to answer a send, by channel.",
        );
        let by = self
            .message_send_latency
            .by
            .lock()
            .expect("histogram")
            .clone();
        for (channel, st) in &by {
            histogram_samples(
                o,
                "herald_message_send_seconds",
                &[("channel", channel)],
                self.message_send_latency.bounds,
                st,
            );
        }
        header(
            o,
            "herald_messages",
            "gauge",
            "Messages in the store, by channel and status.",
        );
        for (channel, status, n) in &g.messages {
            sample(
                o,
                "herald_messages",
                &[("channel", channel), ("status", status)],
                *n as f64,
            );
        }
        header(
            o,
            "herald_message_transport_ready",
            "gauge",
            "Whether a channel's transport can send (1) or not (0; an SMPP session not bound), by channel and transport.",
        );
        for (channel, transport, ready) in &g.message_transports {
            sample(
                o,
                "herald_message_transport_ready",
                &[("channel", channel), ("transport", transport)],
                if *ready { 1.0 } else { 0.0 },
            );
        }
        health::render(o, &g.message_health);
        header(o, "herald_sse_streams", "gauge", "Open event streams.");
        sample(o, "herald_sse_streams", &[], self.sse_streams.get() as f64);
        header(
            o,
            "herald_sip_malformed_datagrams_total",
            "counter",
            "Datagrams on the SIP port dropped as not usable SIP messages.",
        );
        sample(
            o,
            "herald_sip_malformed_datagrams_total",
            &[],
            self.sip_malformed_datagrams.get() as f64,
        );
        out
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn sample(o: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    o.push_str(name);
    if !labels.is_empty() {
        o.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{k}=\"{}\"", escape_label(val));
        }
        o.push('}');
    }
    let _ = writeln!(o, " {}", number(v));
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn labeled(o: &mut String, name: &str, help: &str, label: &str, c: &LabeledCounter) {
    header(o, name, "counter", help);
    for (k, v) in c.snapshot() {
        sample(o, name, &[(label, &k)], v as f64);
    }
}

fn histogram(
    o: &mut String,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    bounds: &[f64],
    st: &HistogramState,
) {
    header(o, name, "histogram", help);
    histogram_samples(o, name, labels, bounds, st);
}

fn histogram_samples(
    o: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    bounds: &[f64],
    st: &HistogramState,
) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (b, n) in bounds.iter().zip(&st.counts) {
        cumulative += n;
        let le = number(*b);
        let mut l = labels.to_vec();
        l.push(("le", &le));
        sample(o, &bucket, &l, cumulative as f64);
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    sample(o, &bucket, &l, st.count as f64);
    sample(o, &format!("{name}_sum"), labels, st.sum);
    sample(o, &format!("{name}_count"), labels, st.count as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labeled() {
        let m = Metrics::default();
        m.attempts_ended.add("busy", 2);
        m.attempts_ended.add("answered", 1);
        m.store_latency.observe("claim", 0.0007);
        m.store_latency.observe("claim", 3.0);
        let text = m.render(&ScrapeGauges::default());
        assert!(
            text.contains("herald_attempts_total{outcome=\"busy\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_store_query_seconds_bucket{op=\"claim\",le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_store_query_seconds_bucket{op=\"claim\",le=\"5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_store_query_seconds_bucket{op=\"claim\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_store_query_seconds_count{op=\"claim\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.attempts_ended.add("a\"b\\c\nd", 1);
        let text = m.render(&ScrapeGauges::default());
        assert!(
            text.contains(r#"herald_attempts_total{outcome="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }
}
