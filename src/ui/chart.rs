//! The live page's chart: a campaign's attempts by outcome over the last
//! ten minutes, in five-second steps, counted from its event log
//! (`attempt.ended`, by the time the call ended). Each console's stream
//! keeps its own counts and reads only the events logged since its last
//! read; the page draws them with uPlot (`assets/chart.js`).

use std::collections::BTreeMap;

use serde_json::json;

use crate::domain::Outcome;
use crate::store::{Result, Store};

/// One step of the chart.
pub const STEP_MS: i64 = 5_000;
/// What the chart shows.
pub const SPAN_MS: i64 = 600_000;
/// Events read per store call, and calls per update at most (a console
/// opened on a campaign far behind catches up over a few updates).
const READ: usize = 5_000;
const READS_PER_UPDATE: usize = 20;

pub struct Chart {
    campaign_id: String,
    last_seq: i64,
    /// Step start (epoch ms) → attempts ended in it, by outcome (in
    /// [`Outcome::ALL`] order).
    steps: BTreeMap<i64, [u32; Outcome::ALL.len()]>,
}

impl Chart {
    /// A chart of the last [`SPAN_MS`] before `now_ms`, filled in from the log.
    pub async fn open(store: &Store, campaign_id: &str, now_ms: i64) -> Result<Chart> {
        let last_seq = store
            .campaign_event_seq_before(campaign_id, now_ms - SPAN_MS)
            .await?;
        let mut chart = Chart {
            campaign_id: campaign_id.to_string(),
            last_seq,
            steps: BTreeMap::new(),
        };
        chart.catch_up(store).await?;
        Ok(chart)
    }

    /// Reads the events logged since the last read; says whether an attempt ended.
    pub async fn catch_up(&mut self, store: &Store) -> Result<bool> {
        let mut changed = false;
        for _ in 0..READS_PER_UPDATE {
            let events = store
                .events_after(&self.campaign_id, self.last_seq, READ)
                .await?;
            let n = events.len();
            for e in events {
                self.last_seq = e.seq;
                if e.kind != "attempt.ended" {
                    continue;
                }
                let ended = e
                    .fields
                    .get("ended_at")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(e.at);
                let Some(i) = e
                    .fields
                    .get("outcome")
                    .and_then(|v| v.as_str())
                    .and_then(|o| Outcome::ALL.iter().position(|k| k.as_str() == o))
                else {
                    continue;
                };
                self.steps
                    .entry(ended - ended.rem_euclid(STEP_MS))
                    .or_default()[i] += 1;
                changed = true;
            }
            if n < READ {
                break;
            }
        }
        Ok(changed)
    }

    /// The chart's data at `now_ms` as the page reads it: the steps' start
    /// times (epoch seconds) and one series per outcome seen.
    pub fn json(&mut self, now_ms: i64) -> String {
        let last = now_ms - now_ms.rem_euclid(STEP_MS);
        let first = last - SPAN_MS + STEP_MS;
        self.steps.retain(|t, _| *t >= first);
        let times: Vec<i64> = (0..SPAN_MS / STEP_MS)
            .map(|i| (first + i * STEP_MS) / 1000)
            .collect();
        let series: Vec<_> = Outcome::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.steps.values().any(|c| c[*i] > 0))
            .map(|(i, o)| {
                let counts: Vec<u32> = (0..SPAN_MS / STEP_MS)
                    .map(|k| self.steps.get(&(first + k * STEP_MS)).map_or(0, |c| c[i]))
                    .collect();
                json!({"outcome": o.as_str(), "counts": counts})
            })
            .collect();
        json!({"step_s": STEP_MS / 1000, "t": times, "series": series}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_outside_the_span_are_dropped_and_series_only_for_outcomes_seen() {
        let mut c = Chart {
            campaign_id: "c".into(),
            last_seq: 0,
            steps: BTreeMap::new(),
        };
        let now = 1_000_000_000;
        c.steps
            .insert(now - SPAN_MS - STEP_MS, [1; Outcome::ALL.len()]);
        let mut counts = [0; Outcome::ALL.len()];
        counts[1] = 3; // busy
        c.steps.insert(now - now % STEP_MS, counts);
        let v: serde_json::Value = serde_json::from_str(&c.json(now)).unwrap();
        assert_eq!(
            v["t"].as_array().unwrap().len(),
            (SPAN_MS / STEP_MS) as usize
        );
        let series = v["series"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{v}");
        assert_eq!(series[0]["outcome"], "busy");
        let counts = series[0]["counts"].as_array().unwrap();
        assert_eq!(counts.last().unwrap(), 3);
        assert_eq!(counts.iter().filter_map(|n| n.as_u64()).sum::<u64>(), 3);
    }
}
