//! Each message channel's and failover provider's health as gauges.

use super::{header, sample};

/// A channel's or a failover provider's health, as `/metrics` shows it.
#[derive(Debug, Default, Clone)]
pub struct HealthGauge {
    pub channel: String,
    /// `None` for the channel as a whole.
    pub provider: Option<String>,
    pub transport: String,
    pub ready: bool,
    pub healthy: bool,
    pub failure_ratio_5m: f64,
    /// Unix seconds of the last accepted send.
    pub last_success: Option<f64>,
}

/// The channels' and failover providers' health gauges.
pub(super) fn render(o: &mut String, rows: &[HealthGauge]) {
    let labels = |h: &HealthGauge| -> Vec<(&'static str, String)> {
        let mut l = vec![("channel", h.channel.clone())];
        if let Some(p) = &h.provider {
            l.push(("provider", p.clone()));
        }
        l.push(("transport", h.transport.clone()));
        l
    };
    type Value = fn(&HealthGauge) -> Option<f64>;
    let metrics: [(&str, &str, Value); 4] = [
        (
            "herald_message_healthy",
            "Whether a channel, or a failover provider (label provider), is healthy (1) or not (0: at least half of 10 or more sends in 5 minutes failed; a provider: marked down).",
            |h| Some(if h.healthy { 1.0 } else { 0.0 }),
        ),
        (
            "herald_message_provider_ready",
            "Whether a failover provider can send now (1; an SMPP session bound) or not (0).",
            |h| h.provider.as_ref().map(|_| if h.ready { 1.0 } else { 0.0 }),
        ),
        (
            "herald_message_failure_ratio_5m",
            "Failed sends over sends in the last 5 minutes, per channel and failover provider (a recipient's bounce is not a failure).",
            |h| Some(h.failure_ratio_5m),
        ),
        (
            "herald_message_last_success_timestamp_seconds",
            "When a channel or failover provider last had a send accepted (Unix seconds; absent until one is).",
            |h| h.last_success,
        ),
    ];
    for (name, help, value) in metrics {
        header(o, name, "gauge", help);
        for h in rows {
            if let Some(v) = value(h) {
                let l = labels(h);
                let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                sample(o, name, &l, v);
            }
        }
    }
}
