//! Trunks as call control sees them: where `tel` calls go, whose credentials
//! answer challenges, and the live counters behind the trunk's limits.
//!
//! Owns: refusing a call past `max_concurrent_calls`, counting attempts.
//! Must not: pace calls per second (the scheduler's governor does that; the
//! limit is exposed so it can) or log the password.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use rsipstack::transport::SipAddr;

use super::links::{SipTransport, TrunkLink};
use super::register::{RegState, Registration};
use crate::config::{Secret, TrunkConfig};

/// A trunk's configuration and live counters.
pub(super) struct Trunk {
    pub(super) name: String,
    pub(super) cfg: TrunkConfig,
    pub(super) password: Option<Secret>,
    pub(super) transport: SipTransport,
    /// Where requests through the trunk go, on TCP and TLS.
    pub(super) destination: Option<SipAddr>,
    /// The connection, on a `tcp` or `tls` trunk.
    pub(super) link: Option<TrunkLink>,
    live: AtomicU32,
    attempts: AtomicU64,
    refused: AtomicU64,
    /// `None` for a trunk that does not register.
    registration: std::sync::Mutex<Option<Registration>>,
}

/// A snapshot of one trunk's counters and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStats {
    pub name: String,
    /// Calls on this trunk right now (from INVITE to the end of the call).
    pub live_calls: u32,
    /// INVITEs started on this trunk since start.
    pub attempts: u64,
    /// Originate requests refused because the trunk was full.
    pub refused: u64,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: u32,
    /// The registration, for a trunk with `register = true`.
    pub registration: Option<Registration>,
}

impl Trunk {
    /// The trunk, its TLS verification set up (a CA file that cannot be read
    /// is an error here, at start).
    pub(super) fn new(name: &str, cfg: &TrunkConfig) -> anyhow::Result<Arc<Trunk>> {
        let transport = SipTransport::of(cfg);
        let proxy = super::target::parse_uri(&cfg.proxy).ok();
        let destination = proxy.as_ref().and_then(|p| transport.destination(p));
        let link = match (&proxy, transport) {
            (_, SipTransport::Udp) => None,
            (None, _) => {
                anyhow::bail!("trunks.{name}.proxy: {:?} is not a SIP URI", cfg.proxy)
            }
            (Some(_), SipTransport::Tcp) => Some(TrunkLink::tcp()),
            (Some(p), SipTransport::Tls) => Some(TrunkLink::tls(name, cfg, p)?),
        };
        Ok(Arc::new(Trunk {
            name: name.to_string(),
            password: cfg.resolved_password(),
            transport,
            destination,
            link,
            cfg: cfg.clone(),
            live: AtomicU32::new(0),
            attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            registration: std::sync::Mutex::new(cfg.register.then(Registration::starting)),
        }))
    }

    pub(super) fn registration(&self) -> Option<Registration> {
        self.registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_registration(
        &self,
        state: RegState,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        error: Option<String>,
    ) {
        let mut r = self.registration.lock().unwrap_or_else(|p| p.into_inner());
        let since = match r.as_ref() {
            Some(old) if old.state == state => old.since,
            _ => chrono::Utc::now(),
        };
        *r = Some(Registration {
            state,
            expires_at,
            error,
            since,
        });
    }

    /// Why calls on this trunk cannot go now: it registers and is not
    /// registered.
    pub(super) fn unready(&self) -> Option<String> {
        let r = self.registration()?;
        (r.state != RegState::Registered).then(|| match r.error {
            Some(e) => format!("trunk_unregistered: {} ({e})", self.name),
            None => format!("trunk_unregistered: {} ({})", self.name, r.state.as_str()),
        })
    }

    /// Takes a call slot, or `None` when the trunk is at `max_concurrent_calls`.
    pub(super) fn try_acquire(self: &Arc<Self>) -> Option<TrunkSlot> {
        let max = self.cfg.max_concurrent_calls;
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if taken {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            Some(TrunkSlot(self.clone()))
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub(super) fn stats(&self) -> TrunkStats {
        TrunkStats {
            name: self.name.clone(),
            live_calls: self.live.load(Ordering::Acquire),
            attempts: self.attempts.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            max_concurrent_calls: self.cfg.max_concurrent_calls,
            max_calls_per_second: self.cfg.max_calls_per_second,
            registration: self.registration(),
        }
    }
}

/// One occupied call slot on a trunk; freed on drop.
pub(super) struct TrunkSlot(Arc<Trunk>);

impl Drop for TrunkSlot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(max: u32) -> Arc<Trunk> {
        let cfg = TrunkConfig {
            proxy: "sip:127.0.0.1:5060".into(),
            transport: "udp".into(),
            from_user: "herald".into(),
            from_domain: "herald.local".into(),
            caller_id: "+15550001111".into(),
            username: String::new(),
            password: Secret::default(),
            password_env: String::new(),
            max_concurrent_calls: max,
            max_calls_per_second: 10,
            ..Default::default()
        };
        Trunk::new("t", &cfg).unwrap()
    }

    #[test]
    fn slots_are_refused_past_the_limit_and_freed_on_drop() {
        let t = trunk(2);
        let a = t.try_acquire().unwrap();
        let _b = t.try_acquire().unwrap();
        assert!(t.try_acquire().is_none());
        assert_eq!(t.stats().live_calls, 2);
        drop(a);
        assert_eq!(t.stats().live_calls, 1);
        assert!(t.try_acquire().is_some());
        let s = t.stats();
        assert_eq!((s.attempts, s.refused, s.live_calls), (3, 1, 1));
    }
}
