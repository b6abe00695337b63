//! A channel's failover providers as configured
//! (`[[channels.sms.providers]]`, `[[channels.email.providers]]`): checked
//! when the configuration loads, and built into one
//! [`FailoverTransport`](super::failover::FailoverTransport) at start. The
//! SMPP and SMTP settings of a single transport are made here too, so both
//! read the channel's keys the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::channels::parse_smpp_url;
use super::failover::{FailoverSettings, FailoverTransport, Provider};
use super::health::HealthBoard;
use super::sip_message::SipMessageTransport;
use super::smpp::{InboundSms, SmppSettings, SmppTransport};
use super::smtp::{SmtpSettings, SmtpSettingsError, SmtpTransport};
use super::transport::{ReportSink, Transport};
use crate::clock::Clock;
use crate::config::{resolve_secret, Config, ProviderConfig, Secret};
use crate::sip::CallControl;

/// An SMTP relay's transport; `pool` 0 takes the channel's `pool_size`.
pub(super) fn smtp_transport(
    c: &Config,
    url: &str,
    username: &str,
    password: Option<Secret>,
    pool: u32,
) -> Result<SmtpTransport, SmtpSettingsError> {
    let settings = SmtpSettings {
        url: url.to_string(),
        username: (!username.is_empty()).then(|| username.to_string()),
        password: password.unwrap_or_default(),
        pool_size: if pool == 0 {
            c.channels.email.pool_size.max(1)
        } else {
            pool
        },
        ..SmtpSettings::default()
    };
    SmtpTransport::new(&settings)
}

/// An SMPP bind's settings, with the channel's enquire_link period and
/// default sender.
pub(super) fn smpp_settings(
    c: &Config,
    url: &str,
    password: Option<Secret>,
    system_type: &str,
    window: u32,
) -> anyhow::Result<SmppSettings> {
    let s = &c.channels.sms;
    let (system_id, host, port) = parse_smpp_url(url).map_err(anyhow::Error::msg)?;
    let mut settings = SmppSettings::new(host, port, system_id, password.unwrap_or_default());
    settings.system_type = system_type.to_string();
    settings.window = window as usize;
    settings.enquire_link_interval = Duration::from_millis(s.enquire_link_ms.max(1000));
    settings.default_source = s.from.clone();
    Ok(settings)
}

/// The SMTP relays behind one failover transport.
pub(super) fn email_failover(
    c: &Config,
    health: &HealthBoard,
    clock: &Clock,
) -> anyhow::Result<Arc<dyn Transport>> {
    let mut providers = Vec::new();
    for p in &c.channels.email.providers {
        let password = resolve_secret(&p.password, &p.password_env);
        let t = smtp_transport(c, &p.smtp_url, &p.username, password, p.pool_size)?;
        providers.push(Provider {
            name: p.name.trim().to_string(),
            transport: Arc::new(t),
        });
    }
    Ok(Arc::new(FailoverTransport::start(
        "email",
        providers,
        failover_settings(c),
        health.clone(),
        clock.clone(),
    )))
}

/// The SMS providers behind one failover transport: each SMPP provider's
/// receipts (ids prefixed with its name) go to `reports`, and its
/// contacts' messages to `inbound`.
pub(super) fn sms_failover(
    c: &Config,
    reports: ReportSink,
    inbound: mpsc::Sender<InboundSms>,
    sip: Option<&CallControl>,
    health: &HealthBoard,
    clock: &Clock,
) -> anyhow::Result<Arc<dyn Transport>> {
    let s = &c.channels.sms;
    let mut providers = Vec::new();
    for p in &s.providers {
        let name = p.name.trim().to_string();
        let t: Arc<dyn Transport> = match provider_transport("sms", p) {
            "sip" => {
                let sip = sip.ok_or_else(|| {
                    anyhow::anyhow!("SMS provider {name:?} (sip) needs SIP call control")
                })?;
                Arc::new(SipMessageTransport::new(sip.clone(), provider_trunk(p)))
            }
            _ => {
                let window = if p.window == 0 { s.window } else { p.window };
                let password = resolve_secret(&p.password, &p.password_env);
                let settings = smpp_settings(c, &p.smpp_url, password, &p.system_type, window)?;
                Arc::new(SmppTransport::start(
                    settings,
                    FailoverTransport::prefixed_sink(&name, reports.clone()),
                    Some(inbound.clone()),
                ))
            }
        };
        providers.push(Provider { name, transport: t });
    }
    Ok(Arc::new(FailoverTransport::start(
        "sms",
        providers,
        failover_settings(c),
        health.clone(),
        clock.clone(),
    )))
}

/// A failover provider's transport: `transport`, or the channel's usual
/// one when empty (`smpp` for SMS, `smtp` for e-mail).
fn provider_transport<'a>(channel: &str, p: &'a ProviderConfig) -> &'a str {
    match (channel, p.transport.as_str()) {
        ("sms", "") => "smpp",
        ("email", "") => "smtp",
        (_, t) => t,
    }
}

/// Checks `[[channels.{channel}.providers]]` (channel `sms` or `email`):
/// names unique, each provider's transport and its keys.
pub(super) fn validate(c: &Config, channel: &str) -> Result<(), (String, String)> {
    let list = if channel == "sms" {
        &c.channels.sms.providers
    } else {
        &c.channels.email.providers
    };
    if list.is_empty() {
        return Err((
            format!("channels.{channel}.providers"),
            format!("transport \"failover\" needs at least one [[channels.{channel}.providers]]"),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let key = |k: &str| format!("channels.{channel}.providers[{i}].{k}");
        let bad = |k: &str, m: String| Err((key(k), m));
        let n = p.name.trim();
        if n.is_empty()
            || n.len() > 32
            || !n
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return bad(
                "name",
                "must be 1 to 32 letters, digits, '-' or '_' (it names the provider on messages)"
                    .into(),
            );
        }
        if !names.insert(n.to_string()) {
            return bad("name", format!("{n:?} names two providers"));
        }
        match (channel, provider_transport(channel, p)) {
            ("sms", "smpp") => {
                parse_smpp_url(&p.smpp_url).map_err(|m| (key("smpp_url"), m))?;
                if p.window > 1000 {
                    return bad("window", "must be at most 1000 (0: the channel's)".into());
                }
            }
            ("sms", "sip") => {
                let trunk = provider_trunk(p);
                if !c.trunks.contains_key(trunk) {
                    return bad(
                        "trunk",
                        format!("names no trunk: there is no [trunks.{trunk}]"),
                    );
                }
            }
            ("email", "smtp") => {
                if !(p.smtp_url.starts_with("smtp://") || p.smtp_url.starts_with("smtps://")) {
                    return bad(
                        "smtp_url",
                        format!(
                            "must be smtp://HOST:PORT or smtps://HOST:PORT, got {:?}",
                            p.smtp_url
                        ),
                    );
                }
                if p.pool_size > 256 {
                    return bad("pool_size", "must be at most 256 (0: the channel's)".into());
                }
            }
            ("sms", other) => {
                return bad("transport", format!("must be smpp or sip, got {other:?}"))
            }
            (_, other) => return bad("transport", format!("must be smtp, got {other:?}")),
        }
    }
    Ok(())
}

/// A SIP provider's trunk: `trunk`, or "default" when empty.
fn provider_trunk(p: &ProviderConfig) -> &str {
    match p.trunk.trim() {
        "" => "default",
        t => t,
    }
}

fn failover_settings(c: &Config) -> FailoverSettings {
    let m = &c.messages;
    FailoverSettings {
        max_failures: m.provider_max_failures as usize,
        window_ms: m.provider_failure_window_ms as i64,
        probe: Duration::from_millis(m.provider_probe_ms),
    }
}
