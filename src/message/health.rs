//! Each channel's health as its sender sees it: the last success, and the
//! sends and failures of the last five minutes. A channel is unhealthy when
//! at least half of ten or more recent sends failed (a refused connection,
//! a temporary or permanent refusal that is not the recipient's bounce);
//! turning unhealthy or healthy again is reported once (pure but for its lock).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The window failure rates are counted over.
pub const WINDOW_MS: i64 = 5 * 60_000;
/// Sends in the window before a channel may be called unhealthy.
const MIN_SENDS: usize = 10;

#[derive(Debug, Default)]
struct Health {
    last_success: Option<i64>,
    last_failure: Option<i64>,
    /// (when, ok) of the window's sends, oldest first.
    window: VecDeque<(i64, bool)>,
    unhealthy: bool,
}

impl Health {
    fn trim(&mut self, now: i64) {
        while self
            .window
            .front()
            .is_some_and(|(t, _)| *t < now - WINDOW_MS)
        {
            self.window.pop_front();
        }
    }

    fn failures(&self) -> usize {
        self.window.iter().filter(|(_, ok)| !ok).count()
    }
}

/// Every channel's (and provider's, keyed `channel/name`) health, shared
/// by its sender and the API; with the provider turns not yet written as
/// `channel.health` events.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard(Arc<Mutex<HashMap<String, Health>>>, Arc<Mutex<Vec<Value>>>);

impl HealthBoard {
    /// Notes that a failover provider was marked down or came back up; the
    /// channel's sender writes it as a `channel.health` event.
    pub fn provider_turned(
        &self,
        channel: &str,
        provider: &str,
        transport: &str,
        healthy: bool,
        reason: Option<String>,
        now: i64,
    ) {
        let mut data = self.snapshot(&format!("{channel}/{provider}"), now);
        data["channel"] = json!(channel);
        data["provider"] = json!(provider);
        data["transport"] = json!(transport);
        data["healthy"] = json!(healthy);
        data["reason"] = json!(reason);
        self.1.lock().unwrap_or_else(|e| e.into_inner()).push(data);
    }

    /// The provider turns noted since the last call, oldest first.
    pub fn drain_turns(&self) -> Vec<Value> {
        std::mem::take(&mut *self.1.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records one send; `Some(healthy)` when the channel just turned.
    pub fn record(&self, channel: &str, ok: bool, now: i64) -> Option<bool> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry(channel.to_string()).or_default();
        if ok {
            h.last_success = Some(now);
        } else {
            h.last_failure = Some(now);
        }
        h.window.push_back((now, ok));
        h.trim(now);
        let failures = h.failures();
        let unhealthy = h.window.len() >= MIN_SENDS && failures * 2 >= h.window.len();
        if unhealthy != h.unhealthy {
            h.unhealthy = unhealthy;
            return Some(!unhealthy);
        }
        None
    }

    /// A channel's health as the API shows it.
    pub fn snapshot(&self, channel: &str, now: i64) -> Value {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry(channel.to_string()).or_default();
        h.trim(now);
        let ts = |ms: Option<i64>| {
            ms.and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        let sends = h.window.len();
        let failures = h.failures();
        json!({
            "healthy": !h.unhealthy,
            "last_success_at": ts(h.last_success),
            "last_failure_at": ts(h.last_failure),
            "sends_5m": sends,
            "failures_5m": failures,
            "failure_rate_5m": if sends == 0 { 0.0 } else { failures as f64 / sends as f64 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_ten_recent_sends_failing_is_unhealthy_and_recovery_is_reported() {
        let b = HealthBoard::default();
        for i in 0..9 {
            assert_eq!(b.record("sms", false, i), None, "too few sends to judge");
        }
        assert_eq!(b.record("sms", false, 9), Some(false));
        assert_eq!(b.record("sms", false, 10), None, "reported once");
        assert_eq!(b.snapshot("sms", 10)["failures_5m"], 11);
        // Five minutes later the failures are out of the window.
        let later = 10 + WINDOW_MS + 1;
        for i in 0..9 {
            assert_eq!(
                b.record("sms", true, later + i),
                if i == 0 { Some(true) } else { None }
            );
        }
        assert_eq!(b.snapshot("sms", later + 9)["healthy"], true);
        assert_eq!(b.snapshot("email", later)["sends_5m"], 0);
    }
}
