//! The message channels as configured (`[channels.*]`, `[messages]`):
//! checked when the configuration loads, and turned into the API's
//! defaults and each channel's transport and sender settings at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::bounce::{BounceListener, BounceSettings};
use super::file::FileTransport;
use super::health::HealthBoard;
use super::outcome::Backoff;
use super::providers;
use super::request::{validate_email, validate_sms_sender};
use super::service::{EmailDefaults, Messaging, SlackDefaults, SmsDefaults, WhatsappDefaults};
use super::simulator::SimulatorTransport;
use super::sip_message::SipMessageTransport;
use super::slack::{SlackTarget, SlackTransport};
use super::smpp::{InboundSms, SmppTransport};
use super::status::MessageChannel;
use super::transport::{Mailbox, ReportSink, Reported, Transport};
use super::whatsapp::{WhatsappSettings, WhatsappTransport};
use super::worker::{ChannelWorker, WorkerSettings};
use crate::clock::Clock;
use crate::config::{resolve_secret, Config};
use crate::sim::population::SmsShares;
use crate::sip::CallControl;
use crate::store::Store;

/// `Name <address>` or `address`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    let s = s.trim();
    let (name, addr) = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => (
            Some(s[..i].trim().trim_matches('"').to_string()),
            &s[i + 1..s.len() - 1],
        ),
        _ => (None, s),
    };
    let email = validate_email(addr)?;
    Ok(Mailbox {
        email,
        name: name.filter(|n| !n.is_empty()),
    })
}

/// `smpp://SYSTEM_ID@HOST:PORT` → (system_id, host, port).
pub fn parse_smpp_url(url: &str) -> Result<(String, String, u16), String> {
    let rest = url
        .strip_prefix("smpp://")
        .ok_or_else(|| format!("{url:?} must look like smpp://SYSTEM_ID@HOST:PORT"))?;
    let (system_id, hostport) = rest
        .split_once('@')
        .ok_or_else(|| format!("{url:?} has no SYSTEM_ID@ (smpp://SYSTEM_ID@HOST:PORT)"))?;
    if system_id.is_empty() || system_id.len() > 15 {
        return Err("the system_id must have 1 to 15 characters".into());
    }
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{url:?} has no :PORT"))?;
    let port: u16 = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((system_id.to_string(), host.to_string(), port))
}

/// The e-mail transport that runs: `transport`, or when it is empty,
/// `smtp` if `smtp_url` is set, else `file`.
pub fn email_transport(c: &Config) -> &str {
    let e = &c.channels.email;
    match e.transport.as_str() {
        "" if !e.providers.is_empty() => "failover",
        "" if !e.smtp_url.is_empty() => "smtp",
        "" => "file",
        other => other,
    }
}

/// The SMS transport that runs: `transport`, or when it is empty, `smpp`
/// if `smpp_url` is set, else `simulator`.
pub fn sms_transport(c: &Config) -> &str {
    let s = &c.channels.sms;
    match s.transport.as_str() {
        "" if !s.providers.is_empty() => "failover",
        "" if !s.smpp_url.is_empty() => "smpp",
        "" => "simulator",
        other => other,
    }
}

/// Checks `[channels.*]` and `[messages]`; the error names the key.
pub fn validate(c: &Config) -> Result<(), (String, String)> {
    let e = &c.channels.email;
    let bad = |k: &str, m: String| Err((k.to_string(), m));
    let email_t = email_transport(c);
    match email_t {
        "file" | "off" => {}
        "failover" => providers::validate(c, "email")?,
        "smtp" => {
            if !(e.smtp_url.starts_with("smtp://") || e.smtp_url.starts_with("smtps://")) {
                return bad(
                    "channels.email.smtp_url",
                    "must be smtp://HOST:PORT or smtps://HOST:PORT".to_string(),
                );
            }
            // The rest of what starting the channel checks (no credentials
            // in it, a port), so `check-config` refuses what `serve` would.
            if let Err(e) = crate::message::smtp_pool::parse_url(&e.smtp_url) {
                return bad("channels.email.smtp_url", e.to_string());
            }
        }
        other => {
            return bad(
                "channels.email.transport",
                format!("must be file, smtp, failover (with providers) or off, got {other:?}"),
            )
        }
    }
    if email_t != "off" {
        parse_mailbox(&e.from).map_err(|m| ("channels.email.from".to_string(), m))?;
        if !(e.unsubscribe_base_url.starts_with("http://")
            || e.unsubscribe_base_url.starts_with("https://"))
        {
            return bad(
                "channels.email.unsubscribe_base_url",
                "must be an http(s) URL".into(),
            );
        }
    }
    let s = &c.channels.sms;
    let sms_t = sms_transport(c);
    match sms_t {
        "simulator" | "off" => {}
        "failover" => providers::validate(c, "sms")?,
        "smpp" => {
            parse_smpp_url(&s.smpp_url).map_err(|m| ("channels.sms.smpp_url".to_string(), m))?;
        }
        "sip" => {
            if !c.trunks.contains_key(s.sip_trunk()) {
                return bad(
                    "channels.sms.trunk",
                    format!("names no trunk: there is no [trunks.{}]", s.sip_trunk()),
                );
            }
        }
        other => {
            return bad(
                "channels.sms.transport",
                format!(
                    "must be simulator, smpp, sip, failover (with providers) or off, got {other:?}"
                ),
            )
        }
    }
    if sms_t != "off" {
        validate_sms_sender(&s.from).map_err(|m| ("channels.sms.from".to_string(), m))?;
    }
    if !(1..=1000).contains(&s.window) {
        return bad("channels.sms.window", "must be between 1 and 1000".into());
    }
    let w = &c.channels.whatsapp;
    if !w.phone_number_id.trim().is_empty() {
        if !(w.base_url.starts_with("http://") || w.base_url.starts_with("https://")) {
            return bad(
                "channels.whatsapp.base_url",
                "must be an http(s) URL".into(),
            );
        }
        if !w
            .phone_number_id
            .trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
        {
            return bad(
                "channels.whatsapp.phone_number_id",
                "must be the Cloud API's phone number id (letters and digits)".into(),
            );
        }
        if resolve_secret(&w.token, &w.token_env).is_none() {
            return bad(
                "channels.whatsapp.token",
                "is required (token, or token_env naming a set variable)".into(),
            );
        }
        if resolve_secret(&w.app_secret, &w.app_secret_env).is_none() {
            return bad(
                "channels.whatsapp.app_secret",
                "is required to check the webhook's signatures (app_secret or app_secret_env)"
                    .into(),
            );
        }
    }
    match slack_target(c) {
        Some(SlackTarget::Bot { .. })
            if !(c.channels.slack.base_url.starts_with("http://")
                || c.channels.slack.base_url.starts_with("https://")) =>
        {
            return bad("channels.slack.base_url", "must be an http(s) URL".into());
        }
        Some(SlackTarget::Webhook { url })
            if !(url.starts_with("https://") || url.starts_with("http://")) =>
        {
            // The URL is a credential: the error does not repeat it.
            return bad(
                "channels.slack.webhook_url",
                "must be an http(s) URL".into(),
            );
        }
        _ => {}
    }
    for (k, v) in [
        ("channels.email.max_retries", e.max_retries),
        ("channels.sms.max_retries", s.max_retries),
        ("channels.whatsapp.max_retries", w.max_retries),
        ("channels.slack.max_retries", c.channels.slack.max_retries),
    ] {
        if v > 20 {
            return bad(k, "must be at most 20".into());
        }
    }
    if !(1..=256).contains(&e.pool_size) {
        return bad(
            "channels.email.pool_size",
            "must be between 1 and 256".into(),
        );
    }
    let m = &c.messages;
    if m.claim_batch == 0 || m.in_flight == 0 {
        return bad(
            "messages.claim_batch",
            "claim_batch and in_flight must be positive".into(),
        );
    }
    if m.lease_ms < 1000 {
        return bad("messages.lease_ms", "must be at least 1000".into());
    }
    if !(1..=1000).contains(&m.provider_max_failures) {
        return bad(
            "messages.provider_max_failures",
            "must be between 1 and 1000".into(),
        );
    }
    if m.provider_failure_window_ms < 1000 {
        return bad(
            "messages.provider_failure_window_ms",
            "must be at least 1000".into(),
        );
    }
    if m.provider_probe_ms < 100 {
        return bad("messages.provider_probe_ms", "must be at least 100".into());
    }
    super::caps::validate(m)?;
    Ok(())
}

/// The channels that run: the API's handle, each channel's transport (for
/// `/metrics`), and the senders to run.
pub struct Channels {
    pub messaging: Messaging,
    pub transports: Vec<(&'static str, Arc<dyn Transport>)>,
    pub workers: Vec<(ChannelWorker, mpsc::Receiver<Reported>)>,
    /// Receives e-mail delivery reports (`bounce_listen`).
    pub bounce: Option<BounceListener>,
    /// What the WhatsApp webhook needs, when the channel runs.
    pub whatsapp_webhook: Option<WhatsappWebhook>,
    /// SMS the SMSC delivers from contacts (mobile-originated).
    pub inbound_sms: Option<mpsc::Receiver<InboundSms>>,
}

/// The WhatsApp webhook's settings and where its status reports go.
#[derive(Clone)]
pub struct WhatsappWebhook {
    pub reports: ReportSink,
    pub app_secret: String,
    pub verify_token: String,
}

fn worker_settings(c: &Config, channel: &str, max_per_second: u32) -> WorkerSettings {
    let m = &c.messages;
    WorkerSettings {
        lease_ms: m.lease_ms as i64,
        poll: Duration::from_millis(m.poll_interval_ms.max(10)),
        batch: m.claim_batch as usize,
        in_flight: m.in_flight as usize,
        backoff: Backoff {
            base_ms: m.retry_base_ms as i64,
            cap_ms: m.retry_cap_ms as i64,
        },
        max_per_second,
        in_doubt_wait_ms: m.in_doubt_wait_ms as i64,
        caps: super::caps::for_channel(m, channel),
    }
}

/// Where Slack messages go: the bot token's Web API, else the incoming
/// webhook; `None` when neither is set (the channel is off).
pub fn slack_target(c: &Config) -> Option<SlackTarget> {
    let s = &c.channels.slack;
    if let Some(token) = resolve_secret(&s.bot_token, &s.bot_token_env).filter(|t| !t.is_empty()) {
        return Some(SlackTarget::Bot {
            base_url: s.base_url.clone(),
            token: token.expose().to_string(),
        });
    }
    resolve_secret(&s.webhook_url, &s.webhook_url_env)
        .filter(|u| !u.is_empty())
        .map(|u| SlackTarget::Webhook {
            url: u.expose().to_string(),
        })
}

/// Builds the configured channels' transports and senders (not started).
/// `sip` is call control, for SMS transport `sip` (`None` when herald runs
/// without SIP).
pub async fn build(
    c: &Config,
    store: &Store,
    clock: &Clock,
    node_id: &str,
    sms_population: &SmsShares,
    seed: u64,
    sip: Option<&CallControl>,
) -> anyhow::Result<Channels> {
    let wake_email = Arc::new(Notify::new());
    let wake_sms = Arc::new(Notify::new());
    let health = HealthBoard::default();
    let holds = super::holds::ClaimHolds::default();
    let mut transports: Vec<(&'static str, Arc<dyn Transport>)> = Vec::new();
    let mut workers = Vec::new();
    let e = &c.channels.email;
    let mut bounce = None;
    let email = if email_transport(c) == "off" {
        None
    } else {
        let (tx, rx) = ReportSink::channel(4096);
        bounce = bounce_listener(c, tx.clone()).await?;
        let t: Arc<dyn Transport> = build_email_transport(c, &health, clock).await?;
        let from = parse_mailbox(&e.from).map_err(anyhow::Error::msg)?;
        let bounce_domain = from
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        transports.push(("email", t.clone()));
        workers.push((
            ChannelWorker {
                channel: MessageChannel::Email,
                transport: t.clone(),
                store: store.clone(),
                clock: clock.clone(),
                node_id: node_id.to_string(),
                settings: worker_settings(c, "email", e.max_per_second),
                wake: wake_email.clone(),
                health: health.clone(),
                holds: holds.clone(),
            },
            rx,
        ));
        Some(EmailDefaults {
            from,
            bounce_domain,
            unsubscribe_base_url: e.unsubscribe_base_url.clone(),
            max_retries: e.max_retries,
            transport: t.name(),
            max_per_second: e.max_per_second,
        })
    };
    let s = &c.channels.sms;
    let mut inbound_sms = None;
    let sms = if sms_transport(c) == "off" {
        None
    } else {
        let (tx, rx) = ReportSink::channel(4096);
        let t: Arc<dyn Transport> = match sms_transport(c) {
            "simulator" => Arc::new(SimulatorTransport::new(*sms_population, seed, tx)),
            "sip" => {
                let sip = sip.ok_or_else(|| {
                    anyhow::anyhow!("SMS transport \"sip\" needs SIP call control")
                })?;
                Arc::new(SipMessageTransport::new(sip.clone(), s.sip_trunk()))
            }
            "failover" => {
                let (itx, irx) = mpsc::channel(1024);
                inbound_sms = Some(irx);
                providers::sms_failover(c, tx, itx, sip, &health, clock)?
            }
            other => {
                let (itx, irx) = mpsc::channel(1024);
                inbound_sms = Some(irx);
                build_sms_transport(c, other, tx, Some(itx)).await?
            }
        };
        transports.push(("sms", t.clone()));
        workers.push((
            ChannelWorker {
                channel: MessageChannel::Sms,
                transport: t.clone(),
                store: store.clone(),
                clock: clock.clone(),
                node_id: node_id.to_string(),
                settings: worker_settings(c, "sms", s.max_per_second),
                wake: wake_sms.clone(),
                health: health.clone(),
                holds: holds.clone(),
            },
            rx,
        ));
        Some(SmsDefaults {
            from: s.from.trim().to_string(),
            max_retries: s.max_retries,
            transport: t.name(),
            max_per_second: s.max_per_second,
        })
    };
    let wake_whatsapp = Arc::new(Notify::new());
    let w = &c.channels.whatsapp;
    let mut whatsapp_reports = None;
    let whatsapp = if w.phone_number_id.trim().is_empty() {
        None
    } else {
        let (tx, rx) = ReportSink::channel(4096);
        let t: Arc<dyn Transport> = Arc::new(WhatsappTransport::new(&WhatsappSettings {
            base_url: w.base_url.clone(),
            phone_number_id: w.phone_number_id.trim().to_string(),
            token: resolve_secret(&w.token, &w.token_env)
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            timeout: Duration::from_secs(15),
        })?);
        transports.push(("whatsapp", t.clone()));
        workers.push((
            ChannelWorker {
                channel: MessageChannel::Whatsapp,
                transport: t,
                store: store.clone(),
                clock: clock.clone(),
                node_id: node_id.to_string(),
                settings: worker_settings(c, "whatsapp", w.max_per_second),
                wake: wake_whatsapp.clone(),
                health: health.clone(),
                holds: holds.clone(),
            },
            rx,
        ));
        whatsapp_reports = Some(tx);
        Some(WhatsappDefaults {
            phone_number_id: w.phone_number_id.trim().to_string(),
            max_retries: w.max_retries,
            max_per_second: w.max_per_second,
        })
    };
    let wake_slack = Arc::new(Notify::new());
    let sl = &c.channels.slack;
    let slack = match slack_target(c) {
        None => None,
        Some(target) => {
            // Slack has no delivery reports: nothing is ever sent on this sink.
            let (_, rx) = ReportSink::channel(1);
            let t: Arc<dyn Transport> =
                Arc::new(SlackTransport::new(target, Duration::from_secs(15))?);
            transports.push(("slack", t.clone()));
            workers.push((
                ChannelWorker {
                    channel: MessageChannel::Slack,
                    transport: t,
                    store: store.clone(),
                    clock: clock.clone(),
                    node_id: node_id.to_string(),
                    settings: worker_settings(c, "slack", sl.max_per_second),
                    wake: wake_slack.clone(),
                    health: health.clone(),
                    holds: holds.clone(),
                },
                rx,
            ));
            Some(SlackDefaults {
                max_retries: sl.max_retries,
                max_per_second: sl.max_per_second,
            })
        }
    };
    for w in [&wake_email, &wake_sms, &wake_whatsapp, &wake_slack] {
        holds.wake_on_release(w.clone());
    }
    Ok(Channels {
        messaging: Messaging {
            email,
            sms,
            whatsapp,
            slack,
            wake_email,
            wake_sms,
            wake_whatsapp,
            wake_slack,
            health,
            holds,
        },
        inbound_sms,
        whatsapp_webhook: whatsapp_reports.map(|reports| WhatsappWebhook {
            reports,
            app_secret: resolve_secret(&w.app_secret, &w.app_secret_env)
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            verify_token: w.verify_token.expose().to_string(),
        }),
        transports,
        workers,
        bounce,
    })
}

async fn build_email_transport(
    c: &Config,
    health: &HealthBoard,
    clock: &Clock,
) -> anyhow::Result<Arc<dyn Transport>> {
    let e = &c.channels.email;
    match email_transport(c) {
        "smtp" => Ok(Arc::new(providers::smtp_transport(
            c,
            &e.smtp_url,
            &e.username,
            resolve_secret(&e.password, &e.password_env),
            0,
        )?)),
        "failover" => providers::email_failover(c, health, clock),
        _ => Ok(Arc::new(FileTransport::new(PathBuf::from(&e.outbox_dir)))),
    }
}

async fn build_sms_transport(
    c: &Config,
    name: &str,
    reports: ReportSink,
    inbound: Option<mpsc::Sender<InboundSms>>,
) -> anyhow::Result<Arc<dyn Transport>> {
    let s = &c.channels.sms;
    match name {
        "smpp" => {
            let settings = providers::smpp_settings(
                c,
                &s.smpp_url,
                resolve_secret(&s.password, &s.password_env),
                &s.system_type,
                s.window,
            )?;
            Ok(Arc::new(SmppTransport::start(settings, reports, inbound)))
        }
        other => anyhow::bail!("SMS transport {other:?} is not available"),
    }
}

/// The bounce listener, when `channels.email.bounce_listen` is set.
pub async fn bounce_listener(
    c: &Config,
    reports: ReportSink,
) -> anyhow::Result<Option<BounceListener>> {
    let e = &c.channels.email;
    if email_transport(c) == "off" || e.bounce_listen.is_empty() {
        return Ok(None);
    }
    let listen: std::net::SocketAddr = e.bounce_listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "channels.email.bounce_listen {:?} is not HOST:PORT",
            e.bounce_listen
        )
    })?;
    let settings = BounceSettings {
        listen,
        ..BounceSettings::default()
    };
    Ok(Some(BounceListener::bind(settings, reports).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_parse_with_or_without_a_name() {
        let m = parse_mailbox("Clinic <reminders@Clinic.example>").unwrap();
        assert_eq!(m.email, "reminders@clinic.example");
        assert_eq!(m.name.as_deref(), Some("Clinic"));
        assert_eq!(parse_mailbox("a@b.io").unwrap().name, None);
        assert!(parse_mailbox("Clinic <nope>").is_err());
    }

    #[test]
    fn smpp_urls_name_system_id_host_and_port() {
        assert_eq!(
            parse_smpp_url("smpp://herald@127.0.0.1:2775").unwrap(),
            ("herald".into(), "127.0.0.1".into(), 2775)
        );
        assert!(parse_smpp_url("smpp://127.0.0.1:2775").is_err());
        assert!(parse_smpp_url("http://x@h:1").is_err());
        assert!(parse_smpp_url("smpp://x@h:port").is_err());
    }

    #[test]
    fn frequency_caps_name_the_bad_key() {
        let with = |caps: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("h.toml");
            std::fs::write(&path, format!("[messages.frequency_caps]\n{caps}\n")).unwrap();
            match Config::load_from(Some(&path), std::iter::empty()) {
                Ok(c) => validate(&c).err().map(|(k, _)| k),
                Err(crate::config::ConfigError::Invalid { key, .. }) => Some(key),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(with("sms = [{ max = 3, per_days = 7 }]"), None);
        assert_eq!(
            with("sms = [{ max = 3, per_days = 7 }, { max = 0, per_days = 1 }]").as_deref(),
            Some("messages.frequency_caps.sms[1].max")
        );
        assert_eq!(
            with("email = [{ max = 1, per_days = 400 }]").as_deref(),
            Some("messages.frequency_caps.email[0].per_days")
        );
    }
}
