//! `[trunks.NAME]`: where `tel` calls go, with which identity and
//! credentials, under which limits, and whether the trunk registers.

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TrunkConfig {
    pub proxy: String,
    pub transport: String,
    pub from_user: String,
    pub from_domain: String,
    pub caller_id: String,
    pub username: String,
    pub password: Secret,
    pub password_env: String,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: u32,
    /// REGISTER with the registrar (RFC 3261 §10) and keep registered.
    #[serde(default)]
    pub register: bool,
    /// The registrar's URI; empty: the proxy.
    #[serde(default)]
    pub registrar: String,
    /// The expiry asked for, in seconds.
    #[serde(default = "default_register_expires")]
    pub register_expires_s: u32,
    /// The trust anchors for a `tls` trunk's certificate (PEM); empty: the
    /// system's roots.
    #[serde(default)]
    pub tls_ca_file: String,
    /// The name the certificate must carry; empty: the proxy's host.
    #[serde(default)]
    pub tls_server_name: String,
    /// `none`, `sdes` (offer SDES-SRTP, take plain RTP if that is what the
    /// answer has) or `required` (refuse a plain answer).
    #[serde(default = "default_media_encryption")]
    pub media_encryption: String,
}

fn default_media_encryption() -> String {
    "none".into()
}

impl Default for TrunkConfig {
    /// A UDP trunk with no proxy, credentials or registration, one call at a
    /// time; callers set what they need.
    fn default() -> Self {
        TrunkConfig {
            proxy: String::new(),
            transport: "udp".into(),
            from_user: "herald".into(),
            from_domain: "herald.local".into(),
            caller_id: String::new(),
            username: String::new(),
            password: Secret::default(),
            password_env: String::new(),
            max_concurrent_calls: 1,
            max_calls_per_second: 1,
            register: false,
            registrar: String::new(),
            register_expires_s: default_register_expires(),
            tls_ca_file: String::new(),
            tls_server_name: String::new(),
            media_encryption: default_media_encryption(),
        }
    }
}

fn default_register_expires() -> u32 {
    3600
}

impl TrunkConfig {
    /// Checks the trunk's own keys; `Err((key, why))`. `simulator`: whether
    /// the embedded simulator runs (a `"simulator"` proxy needs it).
    pub(super) fn validate(&self, simulator: bool) -> Result<(), (&'static str, String)> {
        let simulated = self.proxy == super::SIMULATOR_PROXY;
        if simulated && !simulator {
            return Err((
                "proxy",
                "\"simulator\" needs the simulator: set simulator.enabled = true, or give a sip: URI"
                    .into(),
            ));
        }
        if !simulated && !self.proxy.starts_with("sip:") && !self.proxy.starts_with("sips:") {
            return Err((
                "proxy",
                format!(
                    "{:?} is not a sip: or sips: URI (or \"simulator\")",
                    self.proxy
                ),
            ));
        }
        if !["udp", "tcp", "tls"].contains(&self.transport.as_str()) {
            return Err((
                "transport",
                format!(
                    "{:?} is not one of \"udp\", \"tcp\", \"tls\"",
                    self.transport
                ),
            ));
        }
        if self.proxy.starts_with("sips:") && self.transport != "tls" {
            return Err((
                "transport",
                "a sips: proxy is reached over TLS: set transport = \"tls\"".into(),
            ));
        }
        if simulated && self.transport != "udp" {
            return Err(("transport", "the simulator speaks UDP only".into()));
        }
        if !["none", "sdes", "required"].contains(&self.media_encryption.as_str()) {
            return Err((
                "media_encryption",
                format!(
                    "{:?} is not one of \"none\", \"sdes\", \"required\"",
                    self.media_encryption
                ),
            ));
        }
        if self.max_concurrent_calls == 0 || self.max_calls_per_second == 0 {
            return Err(("max_concurrent_calls", "limits must be positive".into()));
        }
        Ok(())
    }

    /// The digest password: `password`, else the variable named by `password_env`.
    pub fn resolved_password(&self) -> Option<Secret> {
        if !self.password.is_empty() {
            return Some(self.password.clone());
        }
        if self.password_env.is_empty() {
            return None;
        }
        std::env::var(&self.password_env).ok().map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(proxy: &str, transport: &str, media: &str) -> TrunkConfig {
        TrunkConfig {
            proxy: proxy.into(),
            transport: transport.into(),
            media_encryption: media.into(),
            ..TrunkConfig::default()
        }
    }

    #[test]
    fn transports_and_media_encryption_are_checked_with_the_key_that_is_wrong() {
        assert!(trunk("sip:a.example", "udp", "none")
            .validate(false)
            .is_ok());
        assert!(trunk("sip:a.example", "tcp", "sdes")
            .validate(false)
            .is_ok());
        assert!(trunk("sips:a.example", "tls", "required")
            .validate(false)
            .is_ok());
        let key = |t: TrunkConfig| t.validate(true).unwrap_err().0;
        assert_eq!(key(trunk("sip:a.example", "sctp", "none")), "transport");
        assert_eq!(key(trunk("sips:a.example", "udp", "none")), "transport");
        assert_eq!(key(trunk("simulator", "tls", "none")), "transport");
        assert_eq!(
            key(trunk("sip:a.example", "udp", "zrtp")),
            "media_encryption"
        );
        assert_eq!(key(trunk("tel:+1555", "udp", "none")), "proxy");
        assert_eq!(
            trunk("simulator", "udp", "none")
                .validate(false)
                .unwrap_err()
                .0,
            "proxy"
        );
    }
}
