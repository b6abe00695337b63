//! The gauges of what holds dialing back: trunk registration and each
//! campaign's abandonment against its ceiling.

use super::{header, sample, Metrics, ScrapeGauges};

/// A campaign's abandonment against its ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbandonGauge {
    pub rate: f64,
    pub ceiling: f64,
    /// `normal`, `cautious` or `stopped`.
    pub pacing: &'static str,
}

impl Metrics {
    /// Sets (or, with `None`, drops) a campaign's abandonment gauges.
    pub fn set_abandonment(&self, campaign_id: &str, g: Option<AbandonGauge>) {
        let mut m = self.abandonment.lock().unwrap_or_else(|p| p.into_inner());
        match g {
            Some(g) => {
                m.insert(campaign_id.to_string(), g);
            }
            None => {
                m.remove(campaign_id);
            }
        }
    }
}

impl Metrics {
    /// `herald_trunk_registered`, `herald_campaign_abandon_*`,
    /// `herald_campaign_pacing`.
    pub(super) fn render_pacing(&self, o: &mut String, g: &ScrapeGauges) {
        header(
            o,
            "herald_trunk_registered",
            "gauge",
            "1 while a trunk that registers is registered.",
        );
        for (t, up) in &g.trunk_registered {
            sample(
                o,
                "herald_trunk_registered",
                &[("trunk", t)],
                f64::from(u8::from(*up)),
            );
        }
        let abandonment = self
            .abandonment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        header(
            o,
            "herald_campaign_abandon_rate",
            "gauge",
            "Abandoned calls over live-answered ones in each campaign with a ceiling, over its window.",
        );
        for (c, g) in &abandonment {
            sample(
                o,
                "herald_campaign_abandon_rate",
                &[("campaign", c)],
                g.rate,
            );
        }
        header(
            o,
            "herald_campaign_abandon_ceiling",
            "gauge",
            "Each campaign's max_abandon_rate.",
        );
        for (c, g) in &abandonment {
            sample(
                o,
                "herald_campaign_abandon_ceiling",
                &[("campaign", c)],
                g.ceiling,
            );
        }
        header(
            o,
            "herald_campaign_pacing",
            "gauge",
            "1 for each campaign's pacing under its abandonment ceiling (normal, cautious, stopped).",
        );
        for (c, g) in &abandonment {
            for p in ["normal", "cautious", "stopped"] {
                let v = if g.pacing == p { 1.0 } else { 0.0 };
                sample(
                    o,
                    "herald_campaign_pacing",
                    &[("campaign", c), ("pacing", p)],
                    v,
                );
            }
        }
    }
}
