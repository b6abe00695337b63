//! E-mail over SMTP: lettre's connection, our own bounded pool in
//! `smtp_pool`, the message bytes from [`build_message`] (the one builder,
//! shared with the [`file`](super::file) transport).
//!
//! Owns: the SMTP settings, one send's transaction on a pooled connection,
//! and the mapping of what the relay said to a [`SendResult`]
//! ([`classify_reply`], a pure rule). The connections (at most `pool_size`
//! at once, idle ones kept for reuse, TCP_NODELAY) are `smtp_pool`'s.
//!
//! Result mapping (the stage is known because this file drives MAIL, RCPT
//! and DATA itself on lettre's [`AsyncSmtpConnection`]):
//! - 250 after the message body → `Accepted` (code and text kept).
//! - any 4xx reply, a connection, TLS, I/O or protocol failure, or the send
//!   taking longer than `timeout` → `Retry`.
//! - 5xx at RCPT or DATA → `Bounced` (the address is suppressed by the caller).
//! - 5xx while connecting (greeting, EHLO, STARTTLS, AUTH) or at MAIL FROM,
//!   any auth reply (530, 534, 535, 538) and command/sequence errors (500,
//!   502, 503, 504; 501 outside RCPT) at any stage → `Failed`: the relay
//!   refuses herald, not the recipient, so nobody is suppressed.
//! - a message that cannot be built (bad address, unsafe header value) or a
//!   non-ASCII address to a relay without SMTPUTF8 → `Failed`.
//! - [`Transport::close`] → later sends answer `Retry` (code `closed`): a
//!   shutdown never fails a message.
//! - a reused idle connection that the relay had closed (no reply, or 421,
//!   at MAIL FROM: [`closed_while_idle`]) → the transaction is made once
//!   more on a new connection, and that one's answer counts.
//!
//! [`PeerReply::code`] is the relay's reply code (`250`, `451`, `550`), or,
//! when the relay gave none, `network`, `tls`, `timeout` (→ `Retry`),
//! `client`, `local` (→ `Failed`: herald's side refused) or `closed`.
//!
//! Several recipients: they are sent in one transaction, and the first RCPT
//! refused ends it (RSET is not tried: the connection is closed). A 5xx there
//! answers `Bounced` for the whole message with the refused address at the
//! start of the reply text; a 4xx answers `Retry` and the whole message is
//! sent again later. No partial delivery happens.
//!
//! A timeout after the final `.` was written cannot tell whether the relay
//! kept the message; it answers `Retry`, so a relay that did keep it may see
//! it twice (SMTP has no way to ask).
//!
//! Must not: log a body or the password; retry by itself; put a connection
//! back in the pool unless its transaction ended cleanly (a cancelled or
//! failed send drops its connection).

use std::path::PathBuf;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;

use super::email_message::build_message;
pub use super::smtp_pool::{parse_url, Endpoint, Security};
use super::smtp_pool::{Pool, Taken};
use super::transport::{Email, Outbound, PeerReply, SendResult, Transport};
use crate::config::Secret;

/// How herald reaches its SMTP relay. Plain data; [`SmtpTransport::new`]
/// checks it.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://HOST[:PORT]` (default port 25): STARTTLS when the relay
    /// offers it, plain otherwise; `smtp://HOST:PORT?tls=required`: STARTTLS
    /// or no send; `smtps://HOST[:PORT]` (default 465): implicit TLS.
    pub url: String,
    /// AUTH (PLAIN, else LOGIN) when set; only over TLS unless the relay
    /// offers AUTH on a plain connection.
    pub username: Option<String>,
    pub password: Secret,
    /// Connections open at once (sends beyond it wait for one).
    pub pool_size: u32,
    /// The deadline of one whole send (waiting for a connection, connecting,
    /// the transaction and the relay's final answer).
    pub timeout: Duration,
    /// A PEM file of extra CA certificates (a private relay); the webpki
    /// roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// The EHLO name; the machine's host name when `None`.
    pub hello_name: Option<String>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            url: "smtp://127.0.0.1:25".into(),
            username: None,
            password: Secret::default(),
            pool_size: 4,
            timeout: Duration::from_secs(30),
            ca_file: None,
            hello_name: None,
        }
    }
}

/// Settings that cannot work; reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSettingsError {
    #[error("smtp url `{url}`: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("smtp ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("smtp tls: {0}")]
    Tls(String),
    #[error("smtp hello_name `{0}` is not a domain name")]
    HelloName(String),
    #[error("smtp pool_size must be at least 1")]
    PoolSize,
}

/// Where a negative reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Greeting, EHLO, STARTTLS, AUTH.
    Connect,
    MailFrom,
    RcptTo,
    /// The DATA command or the reply after the message.
    Data,
}

/// What a negative reply means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    Bounced,
    Failed,
}

/// The rule for a reply code that is not a success (see the module doc).
pub fn classify_reply(stage: Stage, code: u16) -> Verdict {
    match code {
        400..=499 => Verdict::Retry,
        530 | 534 | 535 | 538 => Verdict::Failed,
        500 | 502 | 503 | 504 => Verdict::Failed,
        501 if stage != Stage::RcptTo => Verdict::Failed,
        500..=599 => match stage {
            Stage::Connect | Stage::MailFrom => Verdict::Failed,
            Stage::RcptTo | Stage::Data => Verdict::Bounced,
        },
        // Not a negative code: a relay speaking nonsense; try again later.
        _ => Verdict::Retry,
    }
}

/// Whether a transaction that failed on a reused idle connection found the
/// connection closed by the relay rather than a refusal of the message: at
/// MAIL FROM (nothing of the message sent yet) with no reply at all, or a
/// 421 (the relay announcing it closes, e.g. an idle timeout, read as the
/// answer to MAIL FROM). Such a send is made again on a new connection.
pub fn closed_while_idle(stage: Stage, code: Option<u16>) -> bool {
    stage == Stage::MailFrom && matches!(code, None | Some(421))
}

/// Why one send stopped short of a 250.
#[derive(Debug)]
pub(super) enum SendError {
    /// The relay said no (or lettre did not get a usable answer) at `stage`.
    Smtp {
        stage: Stage,
        error: lettre::transport::smtp::Error,
        /// The refused recipient, for RCPT.
        rcpt: Option<String>,
    },
    /// A rule of ours stopped it before anything was sent.
    Local(String),
    /// No TCP connection to the relay.
    Network(std::io::Error),
    /// [`Transport::close`] was called: not sent, try again after a restart.
    Closed,
}

/// The relay's reply code in a lettre error, when it gave one.
fn reply_code(e: &SmtpError) -> Option<u16> {
    e.status().and_then(|c| c.to_string().parse::<u16>().ok())
}

fn reply_of(stage: Stage, e: &lettre::transport::smtp::Error, rcpt: Option<&str>) -> SendResult {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    let text = match rcpt {
        Some(r) => format!("<{r}>: {text}"),
        None => text,
    };
    let (verdict, reply) = match reply_code(e) {
        Some(c) => (
            classify_reply(stage, c),
            PeerReply {
                code: Some(c.to_string()),
                text: Some(text),
            },
        ),
        // No reply code: a client-side refusal would happen again (permanent
        // for this message); TLS, I/O and garbled replies may pass.
        None => {
            let (verdict, kind) = if e.is_client() {
                (Verdict::Failed, "client")
            } else if e.is_tls() {
                (Verdict::Retry, "tls")
            } else if e.is_timeout() {
                (Verdict::Retry, "timeout")
            } else {
                (Verdict::Retry, "network")
            };
            let reply = PeerReply {
                code: Some(kind.to_string()),
                text: Some(e.to_string()),
            };
            (verdict, reply)
        }
    };
    match verdict {
        Verdict::Retry => SendResult::Retry { reply, after: None },
        Verdict::Bounced => SendResult::Bounced { reply },
        Verdict::Failed => SendResult::Failed { reply },
    }
}

fn accepted(r: &Response) -> SendResult {
    SendResult::Accepted {
        provider_id: None,
        reply: PeerReply {
            code: Some(r.code().to_string()),
            text: Some(r.message().collect::<Vec<_>>().join(" ")),
        },
    }
}

/// E-mail through an SMTP relay.
pub struct SmtpTransport {
    pool: Pool,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("endpoint", &self.pool.endpoint)
            .field("auth", &self.pool.credentials.is_some())
            .field("pool_size", &self.pool.size)
            .finish()
    }
}

impl SmtpTransport {
    /// Checks the settings and reads the CA file; connects lazily (on the
    /// first send).
    pub fn new(settings: &SmtpSettings) -> Result<SmtpTransport, SmtpSettingsError> {
        let endpoint = parse_url(&settings.url)?;
        if settings.pool_size == 0 {
            return Err(SmtpSettingsError::PoolSize);
        }
        let mut tls = TlsParameters::builder(endpoint.host.clone());
        if let Some(path) = &settings.ca_file {
            let ca_err = |reason: String| SmtpSettingsError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| SmtpSettingsError::Tls(e.to_string()))?;
        let hello = match &settings.hello_name {
            Some(name) => {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(SmtpSettingsError::HelloName(name.clone()));
                }
                ClientId::Domain(name.clone())
            }
            None => ClientId::default(),
        };
        let credentials = settings
            .username
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|u| Credentials::new(u.clone(), settings.password.expose().to_string()));
        let pool = Pool::new(
            endpoint,
            tls,
            credentials,
            hello,
            settings.pool_size as usize,
        );
        Ok(SmtpTransport {
            pool,
            timeout: settings.timeout,
        })
    }

    /// The relay this transport sends to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.pool.endpoint
    }

    async fn transaction(
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<Response, SendError> {
        let mut params = Vec::new();
        let info = conn.server_info();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::Local(
                    "a non-ASCII address, and the relay does not offer SMTPUTF8".into(),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        fn smtp(stage: Stage, rcpt: Option<&Address>) -> impl FnOnce(SmtpError) -> SendError {
            let rcpt = rcpt.map(|a| a.to_string());
            move |error| SendError::Smtp { stage, error, rcpt }
        }
        conn.command(Mail::new(envelope.from().cloned(), params))
            .await
            .map_err(smtp(Stage::MailFrom, None))?;
        for to in envelope.to() {
            conn.command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(smtp(Stage::RcptTo, Some(to)))?;
        }
        conn.command(Data).await.map_err(smtp(Stage::Data, None))?;
        conn.message(body).await.map_err(smtp(Stage::Data, None))
    }

    async fn send_email(&self, email: &Email) -> SendResult {
        let message = match build_message(email) {
            Ok(m) => m,
            Err(e) => return local_failure(e.to_string()),
        };
        let body = message.formatted();
        let envelope = message.envelope();
        let attempt = async {
            let _permit = self.pool.permit().await?;
            let Taken { mut conn, reused } = self.pool.take().await?;
            let mut result = Self::transaction(&mut conn, envelope, &body).await;
            if let Err(SendError::Smtp { stage, error, .. }) = &result {
                if reused && closed_while_idle(*stage, reply_code(error)) {
                    // Nothing was sent yet: the same transaction on a new connection.
                    conn.abort().await;
                    conn = self.pool.connect().await?;
                    result = Self::transaction(&mut conn, envelope, &body).await;
                }
            }
            match result {
                Ok(response) => {
                    self.pool.park(conn);
                    Ok(response)
                }
                Err(e) => {
                    conn.abort().await;
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(response)) => accepted(&response),
            Ok(Err(SendError::Smtp { stage, error, rcpt })) => {
                reply_of(stage, &error, rcpt.as_deref())
            }
            Ok(Err(SendError::Local(text))) => local_failure(text),
            // The relay could not be reached: nothing was sent.
            Ok(Err(SendError::Network(e))) => SendResult::Unavailable {
                reply: PeerReply {
                    code: Some("network".into()),
                    text: Some(e.to_string()),
                },
                after: None,
            },
            Ok(Err(SendError::Closed)) => SendResult::Retry {
                reply: PeerReply {
                    code: Some("closed".into()),
                    text: Some("the smtp transport is closed".into()),
                },
                after: None,
            },
            Err(_) => SendResult::Retry {
                reply: PeerReply {
                    code: Some("timeout".into()),
                    text: Some(format!("no answer within {:?}", self.timeout)),
                },
                after: None,
            },
        }
    }
}

fn local_failure(text: String) -> SendResult {
    SendResult::Failed {
        reply: PeerReply {
            code: Some("local".into()),
            text: Some(text),
        },
    }
}

/// The answer of an e-mail transport asked to send an SMS.
pub(crate) fn not_email(transport: &str) -> SendResult {
    local_failure(format!(
        "the {transport} transport sends e-mail only, not SMS, WhatsApp or Slack messages"
    ))
}

#[async_trait::async_trait]
impl Transport for SmtpTransport {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        match message {
            Outbound::Email(email) => self.send_email(email).await,
            Outbound::Sms(_) | Outbound::Whatsapp(_) | Outbound::Slack(_) => not_email("smtp"),
        }
    }

    /// Connects (greeting, EHLO, TLS and login as configured), sends NOOP
    /// and QUITs, within the send timeout.
    async fn probe(&self) -> bool {
        let check = async {
            let mut conn = self.pool.connect().await.ok()?;
            let ok = conn.test_connected().await;
            let _ = conn.quit().await;
            Some(ok)
        };
        matches!(
            tokio::time::timeout(self.timeout, check).await,
            Ok(Some(true))
        )
    }

    /// Refuses new sends and QUITs the idle connections.
    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_by_stage_and_code() {
        use Stage::*;
        use Verdict::*;
        let table = [
            (RcptTo, 550, Bounced),
            (RcptTo, 551, Bounced),
            (RcptTo, 553, Bounced),
            (RcptTo, 501, Bounced),
            (Data, 554, Bounced),
            (Data, 552, Bounced),
            (RcptTo, 450, Retry),
            (RcptTo, 451, Retry),
            (Data, 452, Retry),
            (MailFrom, 421, Retry),
            (Connect, 454, Retry),
            (MailFrom, 550, Failed),
            (MailFrom, 553, Failed),
            (MailFrom, 501, Failed),
            (Connect, 554, Failed),
            (Connect, 535, Failed),
            (Connect, 534, Failed),
            (RcptTo, 530, Failed),
            (MailFrom, 530, Failed),
            (Data, 503, Failed),
            (RcptTo, 500, Failed),
            (Data, 250, Retry),
        ];
        for (stage, code, want) in table {
            assert_eq!(classify_reply(stage, code), want, "{stage:?} {code}");
        }
    }

    #[test]
    fn a_reused_connection_is_replaced_only_when_closed_before_the_message() {
        use Stage::*;
        let table = [
            (MailFrom, None, true),
            (MailFrom, Some(421), true),
            (MailFrom, Some(451), false),
            (MailFrom, Some(550), false),
            (Connect, None, false),
            (RcptTo, None, false),
            (RcptTo, Some(421), false),
            (Data, None, false),
            (Data, Some(421), false),
        ];
        for (stage, code, want) in table {
            assert_eq!(closed_while_idle(stage, code), want, "{stage:?} {code:?}");
        }
    }
}
