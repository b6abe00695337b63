//! Layered configuration.
//!
//! 1. the embedded default (`config/herald.toml`, which lists every key),
//! 2. the file given with `--config`, merged over it,
//! 3. environment variables `HERALD__SECTION__KEY` (e.g. `HERALD__DATABASE__URL`).
//!
//! A key that the default does not have is an error naming the key's full
//! path. Secrets are [`Secret`]s: their `Debug`/`Display` never show the value.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Value;

mod channels;
mod trunks;
pub use channels::*;
pub use trunks::TrunkConfig;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/herald.toml");

const ENV_PREFIX: &str = "HERALD__";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub agents: AgentsConfig,
    pub simulator: SimulatorSection,
    pub events: EventsConfig,
    pub webhooks: WebhooksConfig,
    pub metrics: MetricsConfig,
    pub messages: MessagesConfig,
    pub channels: ChannelsConfig,
    pub conversations: ConversationsConfig,
    pub retention: RetentionConfig,
    pub trunks: BTreeMap<String, TrunkConfig>,
}

/// How message senders run (`[messages]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MessagesConfig {
    pub lease_ms: u64,
    pub poll_interval_ms: u64,
    pub claim_batch: u32,
    pub in_flight: u32,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub in_doubt_wait_ms: u64,
    pub provider_max_failures: u32,
    pub provider_failure_window_ms: u64,
    pub provider_probe_ms: u64,
    /// Per channel (`sms`, `email`, `whatsapp`, `slack`): at most `max`
    /// marketing messages to one recipient per `per_days`.
    #[serde(default)]
    pub frequency_caps: BTreeMap<String, Vec<MessageCap>>,
}

/// One frequency cap on a channel's marketing messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageCap {
    pub max: u32,
    pub per_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RetentionConfig {
    pub message_body_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConversationsConfig {
    pub idle_close_s: u64,
    pub stop_adds_dnc: bool,
    pub stop_reply: String,
    pub start_reply: String,
    pub help_reply: String,
}

/// `password`, else the variable named by `password_env`.
pub fn resolve_secret(password: &Secret, password_env: &str) -> Option<Secret> {
    if !password.is_empty() {
        return Some(password.clone());
    }
    if password_env.is_empty() {
        return None;
    }
    std::env::var(password_env).ok().map(Secret)
}

/// The trunk proxy value that means "the embedded simulator".
pub const SIMULATOR_PROXY: &str = "simulator";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SimulatorSection {
    pub enabled: bool,
    pub listen: String,
    /// A population file; empty: the embedded default.
    pub population: String,
    pub seed: u64,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentsConfig {
    pub account_sid: String,
    pub prepare_timeout_ms: u64,
    /// Where script agents' prompt files are read from; empty: the shipped
    /// prompts only.
    pub prompt_dir: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventsConfig {
    pub keep_alive_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhooksConfig {
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub disable_after_s: u64,
    pub timeout_ms: u64,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricsConfig {
    pub require_api_key: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiConfig {
    pub listen: String,
    pub body_limit_bytes: usize,
    pub csv_body_limit_bytes: u64,
    /// Time a client has to send a request's headers (and to start one on
    /// an idle kept-alive connection) before it is disconnected.
    pub header_read_timeout_ms: u64,
    /// Time a client may leave between two pieces of a request body.
    pub body_read_timeout_ms: u64,
    /// API connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SipConfig {
    pub listen: String,
    pub public_addr: String,
    pub user_agent: String,
    /// Session timers (RFC 4028): the interval asked for; 0: none.
    #[serde(default = "default_session_expires")]
    pub session_expires_s: u32,
    /// The shortest session interval accepted (`Min-SE`).
    #[serde(default = "default_min_se")]
    pub min_se_s: u32,
    /// `ip:port` where herald accepts SIP over TLS from carriers that open
    /// their own connection (requests on herald's own connections need no
    /// listener); empty: none. Needs `tls_cert_file` and `tls_key_file`.
    #[serde(default)]
    pub tls_listen: String,
    /// herald's certificate chain (PEM) for `tls_listen`.
    #[serde(default)]
    pub tls_cert_file: String,
    /// Its private key (PEM, PKCS#8 or PKCS#1).
    #[serde(default)]
    pub tls_key_file: String,
}

impl Default for SipConfig {
    /// Loopback, a free port, no NAT address, the default timers, no TLS
    /// listener.
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:0".into(),
            public_addr: String::new(),
            user_agent: "herald".into(),
            session_expires_s: default_session_expires(),
            min_se_s: default_min_se(),
            tls_listen: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

fn default_session_expires() -> u32 {
    1800
}

fn default_min_se() -> u32 {
    90
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MediaConfig {
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub rtp_inactivity_timeout_s: u64,
    pub jitter_buffer_ms: u32,
}

/// A secret string (password, key). Never printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Written out (`herald check-config`) as `***`, or empty when unset.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("unknown config key `{0}` (see config/herald.toml for every key)")]
    UnknownKey(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Loads the default, then `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let default: Value = DEFAULT_TOML
            .parse()
            .expect("embedded default config is valid");
        let mut merged = default.clone();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let user: Value = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.display().to_string(),
                    message: e.message().to_string(),
                })?;
            check_known(&default, &user, "")?;
            merge(&mut merged, user);
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (key, raw) in env {
            let path: Vec<String> = key[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            apply_env(&default, &mut merged, &path, &raw)?;
        }
        inherit_trunk_defaults(&default, &mut merged);
        let cfg: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                key: "(config)".into(),
                message: e.message().to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective configuration as TOML (`herald check-config`): every
    /// key with its value after the file and the environment, secrets as
    /// `***` and any password inside a URL (`postgres://u:pw@…`) too.
    pub fn redacted_toml(&self) -> String {
        let mut v = Value::try_from(self).expect("the configuration serializes");
        redact_urls(&mut v);
        toml::to_string_pretty(&v).expect("the configuration writes as TOML")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let sid = &self.agents.account_sid;
        if sid.len() != 34
            || !sid.starts_with("AC")
            || !sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(
                "agents.account_sid",
                "must be AC followed by 32 hex digits".into(),
            ));
        }
        if !(100..=60_000).contains(&self.agents.prepare_timeout_ms) {
            return Err(invalid(
                "agents.prepare_timeout_ms",
                "must be from 100 to 60000".into(),
            ));
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres:// (or postgresql://)".into(),
            ));
        }
        if self.media.rtp_port_min >= self.media.rtp_port_max || self.media.rtp_port_min % 2 == 1 {
            return Err(invalid(
                "media.rtp_port_min",
                "must be even and below media.rtp_port_max".into(),
            ));
        }
        for (key, v) in [
            (
                "api.header_read_timeout_ms",
                self.api.header_read_timeout_ms,
            ),
            ("api.body_read_timeout_ms", self.api.body_read_timeout_ms),
            ("api.max_connections", self.api.max_connections as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive".into()));
            }
        }
        if self.events.keep_alive_ms == 0 {
            return Err(invalid("events.keep_alive_ms", "must be positive".into()));
        }
        let w = &self.webhooks;
        for (key, v) in [
            ("webhooks.backoff_base_ms", w.backoff_base_ms),
            ("webhooks.timeout_ms", w.timeout_ms),
            ("webhooks.poll_interval_ms", w.poll_interval_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive".into()));
            }
        }
        if w.backoff_cap_ms < w.backoff_base_ms {
            return Err(invalid(
                "webhooks.backoff_cap_ms",
                "must be at least webhooks.backoff_base_ms".into(),
            ));
        }
        let sim = &self.simulator;
        if sim.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "simulator.listen",
                format!("{:?} is not an ip:port", sim.listen),
            ));
        }
        if sim.rtp_port_min >= sim.rtp_port_max || sim.rtp_port_min % 2 == 1 {
            return Err(invalid(
                "simulator.rtp_port_min",
                "must be even and below simulator.rtp_port_max".into(),
            ));
        }
        for (name, t) in &self.trunks {
            t.validate(sim.enabled)
                .map_err(|(k, message)| invalid(&format!("trunks.{name}.{k}"), message))?;
        }
        crate::message::channels::validate(self)
            .map_err(|(key, message)| invalid(&key, message))?;
        Ok(())
    }
}

/// A trunk named in the file or the environment takes the default trunk's
/// value for each key it leaves out, except `proxy` (where its calls go
/// must be said).
fn inherit_trunk_defaults(default: &Value, merged: &mut Value) {
    let Some(base) = default
        .get("trunks")
        .and_then(|t| t.get("default"))
        .and_then(Value::as_table)
    else {
        return;
    };
    let Some(trunks) = merged.get_mut("trunks").and_then(Value::as_table_mut) else {
        return;
    };
    for (_, t) in trunks.iter_mut() {
        if let Some(t) = t.as_table_mut() {
            for (k, v) in base.iter().filter(|(k, _)| k.as_str() != "proxy") {
                if !t.contains_key(k) {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Replaces the password of every `scheme://user:password@host` string.
fn redact_urls(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some((scheme, rest)) = s.split_once("://") {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                if let Some(at) = rest[..authority_end].rfind('@') {
                    if let Some(colon) = rest[..at].find(':') {
                        *s = format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
                    }
                }
            }
        }
        Value::Table(t) => t.iter_mut().for_each(|(_, v)| redact_urls(v)),
        Value::Array(a) => a.iter_mut().for_each(redact_urls),
        _ => {}
    }
}

/// The template a key is checked against: under `trunks`, any name may be
/// used and its keys are those of the default trunk.
fn template_for<'a>(default: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = default;
    for (i, part) in path.iter().enumerate() {
        let table = node.as_table()?;
        node = match table.get(part) {
            Some(v) => v,
            None if i == 1 && path[0] == "trunks" => table.values().next()?,
            None => return None,
        };
    }
    Some(node)
}

fn check_known(default: &Value, user: &Value, prefix: &str) -> Result<(), ConfigError> {
    let Some(table) = user.as_table() else {
        return Ok(());
    };
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        let Some(tpl) = template_for(default, &parts) else {
            return Err(ConfigError::UnknownKey(path));
        };
        if tpl.is_table() {
            check_known(default, v, &path)?;
        }
    }
    Ok(())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn apply_env(
    default: &Value,
    merged: &mut Value,
    path: &[String],
    raw: &str,
) -> Result<(), ConfigError> {
    let dotted = path.join(".");
    let tpl = template_for(default, path).ok_or_else(|| ConfigError::UnknownKey(dotted.clone()))?;
    let value = match tpl {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => {
            Value::Integer(raw.trim().parse().map_err(|_| ConfigError::Invalid {
                key: dotted.clone(),
                message: format!("expected an integer, got {raw:?}"),
            })?)
        }
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| ConfigError::Invalid {
            key: dotted.clone(),
            message: format!("expected a number, got {raw:?}"),
        })?),
        Value::Boolean(_) => {
            Value::Boolean(raw.trim().parse().map_err(|_| ConfigError::Invalid {
                key: dotted.clone(),
                message: format!("expected true or false, got {raw:?}"),
            })?)
        }
        _ => {
            return Err(ConfigError::Invalid {
                key: dotted,
                message: "this key is a section; set its keys one by one".into(),
            })
        }
    };
    // A new trunk named only in the environment starts as a copy of the default trunk.
    if path.len() == 3 && path[0] == "trunks" {
        let trunks = merged
            .get_mut("trunks")
            .and_then(Value::as_table_mut)
            .expect("default has trunks");
        if !trunks.contains_key(&path[1]) {
            let tpl = template_for(default, &path[..2])
                .cloned()
                .expect("default trunk");
            trunks.insert(path[1].clone(), tpl);
        }
    }
    let mut node = merged;
    for part in &path[..path.len() - 1] {
        node = node
            .as_table_mut()
            .and_then(|t| t.get_mut(part))
            .ok_or_else(|| ConfigError::UnknownKey(dotted.clone()))?;
    }
    node.as_table_mut()
        .expect("parent is a table")
        .insert(path[path.len() - 1].clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_loads_as_sqlite_with_a_default_trunk() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert!(c.database.url.starts_with("sqlite:"));
        assert!(c.trunks.contains_key("default"));
    }

    #[test]
    fn environment_overrides_keys_by_section() {
        let c = Config::load_from(
            None,
            env(&[
                (
                    "HERALD__DATABASE__URL",
                    "postgres://postgres@127.0.0.1/test",
                ),
                ("HERALD__API__LISTEN", "127.0.0.1:0"),
                ("HERALD__TRUNKS__DEFAULT__PASSWORD", "12345"),
                (
                    "HERALD__TRUNKS__CARRIER__PROXY",
                    "sip:sip.carrier.example:5060",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.url, "postgres://postgres@127.0.0.1/test");
        assert_eq!(c.api.listen, "127.0.0.1:0");
        assert_eq!(c.trunks["default"].password.expose(), "12345");
        assert_eq!(c.trunks["carrier"].proxy, "sip:sip.carrier.example:5060");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load_from(None, env(&[("HERALD__DATABASE__URLL", "x")])).unwrap_err();
        assert!(err.to_string().contains("`database.urll`"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("h.toml");
        std::fs::write(&f, "[api]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n").unwrap();
        let err = Config::load_from(Some(&f), env(&[])).unwrap_err();
        assert!(err.to_string().contains("`api.listne`"), "{err}");

        std::fs::write(
            &f,
            "[trunks.carrier]\nproxy = \"sip:a.example\"\npasswrd = \"x\"\n",
        )
        .unwrap();
        let err = Config::load_from(Some(&f), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("`trunks.carrier.passwrd`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::load_from(None, env(&[("HERALD__DATABASE__MAX_CONNECTIONS", "many")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("database.max_connections"),
            "{err}"
        );
        let err =
            Config::load_from(None, env(&[("HERALD__DATABASE__URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn the_default_trunk_dials_the_simulator_which_must_be_enabled() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert!(c.simulator.enabled);
        assert_eq!(c.trunks["default"].proxy, SIMULATOR_PROXY);
        let err =
            Config::load_from(None, env(&[("HERALD__SIMULATOR__ENABLED", "false")])).unwrap_err();
        assert!(err.to_string().contains("trunks.default.proxy"), "{err}");
        let c = Config::load_from(
            None,
            env(&[
                ("HERALD__SIMULATOR__ENABLED", "false"),
                ("HERALD__TRUNKS__DEFAULT__PROXY", "sip:127.0.0.1:5070"),
            ]),
        )
        .unwrap();
        assert!(!c.simulator.enabled);
        let err =
            Config::load_from(None, env(&[("HERALD__SIMULATOR__LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("simulator.listen"), "{err}");
    }

    #[test]
    fn sms_over_sip_needs_an_existing_trunk_and_defaults_to_default() {
        let c =
            Config::load_from(None, env(&[("HERALD__CHANNELS__SMS__TRANSPORT", "sip")])).unwrap();
        assert_eq!(c.channels.sms.sip_trunk(), "default");
        let err = Config::load_from(
            None,
            env(&[
                ("HERALD__CHANNELS__SMS__TRANSPORT", "sip"),
                ("HERALD__CHANNELS__SMS__TRUNK", "carrier"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("channels.sms.trunk"), "{err}");
        let err = Config::load_from(None, env(&[("HERALD__CHANNELS__SMS__TRANSPORT", "sms")]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("simulator, smpp, sip, failover (with providers) or off"),
            "{err}"
        );
    }

    #[test]
    fn failover_providers_are_checked_by_index() {
        let load = |toml: &str| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), toml).unwrap();
            Config::load_from(Some(f.path()), env(&[]))
        };
        let ok = load(
            "[[channels.sms.providers]]\nname = \"a\"\nsmpp_url = \"smpp://h@127.0.0.1:2775\"\n\
             [[channels.sms.providers]]\nname = \"b\"\ntransport = \"sip\"\n",
        )
        .unwrap();
        assert_eq!(ok.channels.sms.providers.len(), 2);
        let err = load(
            "[[channels.sms.providers]]\nname = \"a\"\nsmpp_url = \"smpp://h@127.0.0.1:2775\"\n\
             [[channels.sms.providers]]\nname = \"b\"\nsmpp_url = \"http://x\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("channels.sms.providers[1].smpp_url"),
            "{err}"
        );
        let err = load(
            "[[channels.email.providers]]\nname = \"r\"\nsmtp_url = \"smtp://a:25\"\n\
             [[channels.email.providers]]\nname = \"r\"\nsmtp_url = \"smtp://b:25\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("channels.email.providers[1].name"),
            "{err}"
        );
        let err = load("[[channels.sms.providers]]\nname = \"a\"\nsmpp_uri = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("smpp_uri"), "{err}");
    }

    #[test]
    fn webhook_backoff_must_be_consistent() {
        let err = Config::load_from(
            None,
            env(&[
                ("HERALD__WEBHOOKS__BACKOFF_BASE_MS", "1000"),
                ("HERALD__WEBHOOKS__BACKOFF_CAP_MS", "10"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("webhooks.backoff_cap_ms"), "{err}");
        let c =
            Config::load_from(None, env(&[("HERALD__METRICS__REQUIRE_API_KEY", "true")])).unwrap();
        assert!(c.metrics.require_api_key);
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load_from(
            None,
            env(&[("HERALD__TRUNKS__DEFAULT__PASSWORD", "hunter2")]),
        )
        .unwrap();
        let shown = format!("{c:?} {}", c.trunks["default"].password);
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
