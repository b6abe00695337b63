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
}

fn default_register_expires() -> u32 {
    3600
}

impl TrunkConfig {
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
