//! E-mail over SMTP (lettre's connection, our own bounded pool), and the one
//! builder that turns an [`Email`] into RFC 5322 bytes (shared with the
//! [`file`](super::file) transport, so the outbox shows what SMTP would send).
//!
//! Owns: the SMTP settings, the connections to the relay (at most
//! `pool_size` at once, idle ones kept for reuse), and the mapping of what
//! the relay said to a [`SendResult`] ([`classify_reply`], a pure rule).
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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;
use lettre::Message;
use tokio::sync::Semaphore;

use super::transport::{Email, Mailbox, Outbound, PeerReply, SendResult, Transport};
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
    /// Connect timeout, and the deadline of one whole send (waiting for a
    /// connection, the transaction and the relay's final answer).
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

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS when offered.
    Opportunistic,
    /// STARTTLS, or the send fails.
    StartTlsRequired,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// The relay named by a settings URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

/// Parses `smtp://HOST[:PORT][?tls=required]` or `smtps://HOST[:PORT]`.
pub fn parse_url(url: &str) -> Result<Endpoint, SmtpSettingsError> {
    let bad = |reason| SmtpSettingsError::Url {
        url: url.to_string(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or(bad("no scheme"))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let mut security = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => Security::Opportunistic,
        "smtps" => Security::Implicit,
        _ => return Err(bad("the scheme must be smtp or smtps")),
    };
    match query {
        None | Some("") => {}
        Some("tls=required") if security == Security::Opportunistic => {
            security = Security::StartTlsRequired
        }
        Some("tls=opportunistic") if security == Security::Opportunistic => {}
        Some(_) => return Err(bad("the only query is tls=required (smtp://)")),
    }
    if authority.contains(['@', '/']) {
        return Err(bad("credentials go in username/password, not the url"));
    }
    let default_port = if security == Security::Implicit {
        465
    } else {
        25
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(bad("unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(bad("bad port")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
        security,
    })
}

/// Why an [`Email`] could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("bad {field} address `{address}`: {reason}")]
    Address {
        field: &'static str,
        address: String,
        reason: String,
    },
    #[error("bad {field}: {reason}")]
    Header {
        field: &'static str,
        reason: &'static str,
    },
    #[error("no recipient (to, cc and bcc are empty)")]
    NoRecipient,
    #[error("cannot build the message: {0}")]
    Message(String),
}

fn address(field: &'static str, raw: &str) -> Result<Address, BuildError> {
    raw.trim()
        .parse::<Address>()
        .map_err(|e| BuildError::Address {
            field,
            address: raw.to_string(),
            reason: e.to_string(),
        })
}

fn mailbox(field: &'static str, m: &Mailbox) -> Result<LettreMailbox, BuildError> {
    let name = m.name.as_ref().filter(|n| !n.trim().is_empty());
    if let Some(n) = name {
        if n.contains(['\r', '\n']) {
            return Err(BuildError::Header {
                field,
                reason: "a display name has a line break",
            });
        }
    }
    Ok(LettreMailbox::new(name.cloned(), address(field, &m.email)?))
}

/// A header value that goes out as given: printable ASCII, no spaces or
/// angle brackets (a URL or a Message-ID), so nothing can be injected.
fn plain_token(field: &'static str, value: &str) -> Result<(), BuildError> {
    let bad = |reason| Err(BuildError::Header { field, reason });
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > 900 {
        return bad("longer than 900 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    {
        return bad("only printable ASCII without spaces or angle brackets");
    }
    Ok(())
}

/// The RFC 5322 message of an e-mail: From, To, Cc, Reply-To, Subject,
/// Message-ID, the List-Unsubscribe pair (RFC 8058) for marketing mail,
/// multipart/alternative when both bodies exist. Bcc recipients are in the
/// envelope only; the envelope sender is `return_path`.
pub fn build_message(email: &Email) -> Result<Message, BuildError> {
    let mut builder = Message::builder().from(mailbox("from", &email.from)?);
    let mut rcpts = Vec::new();
    for m in &email.to {
        let mb = mailbox("to", m)?;
        rcpts.push(mb.email.clone());
        builder = builder.to(mb);
    }
    for m in &email.cc {
        let mb = mailbox("cc", m)?;
        rcpts.push(mb.email.clone());
        builder = builder.cc(mb);
    }
    for m in &email.bcc {
        rcpts.push(mailbox("bcc", m)?.email);
    }
    if rcpts.is_empty() {
        return Err(BuildError::NoRecipient);
    }
    if let Some(r) = &email.reply_to {
        builder = builder.reply_to(mailbox("reply_to", r)?);
    }
    plain_token("message_id", &email.message_id)?;
    builder = builder
        .subject(email.subject.replace(['\r', '\n'], " "))
        .message_id(Some(format!("<{}>", email.message_id)));
    if let Some(url) = &email.list_unsubscribe {
        plain_token("list_unsubscribe", url)?;
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    let sender = address("return_path", &email.return_path)?;
    let envelope =
        Envelope::new(Some(sender), rcpts).map_err(|e| BuildError::Message(e.to_string()))?;
    builder = builder.envelope(envelope);
    let built = match (&email.body_text, &email.body_html) {
        (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
        (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
        (None, None) => builder.singlepart(SinglePart::plain(String::new())),
    };
    built.map_err(|e| BuildError::Message(e.to_string()))
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

/// Why one send stopped short of a 250.
#[derive(Debug)]
enum SendError {
    /// The relay said no (or lettre did not get a usable answer) at `stage`.
    Smtp {
        stage: Stage,
        error: lettre::transport::smtp::Error,
        /// The refused recipient, for RCPT.
        rcpt: Option<String>,
    },
    /// A rule of ours stopped it before anything was sent.
    Local(String),
    /// [`Transport::close`] was called: not sent, try again after a restart.
    Closed,
}

fn reply_of(stage: Stage, e: &lettre::transport::smtp::Error, rcpt: Option<&str>) -> SendResult {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    let text = match rcpt {
        Some(r) => format!("<{r}>: {text}"),
        None => text,
    };
    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
    let (verdict, reply) = match code {
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

/// An idle connection and when it was parked.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// E-mail through an SMTP relay.
pub struct SmtpTransport {
    endpoint: Endpoint,
    tls: TlsParameters,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    pool_size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.credentials.is_some())
            .field("pool_size", &self.pool_size)
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
        Ok(SmtpTransport {
            endpoint,
            tls,
            credentials,
            hello,
            timeout: settings.timeout,
            pool_size: settings.pool_size as usize,
            permits: Semaphore::new(settings.pool_size as usize),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The relay this transport sends to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().ok()?.pop()
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.pool_size {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let at_connect = |error| SendError::Smtp {
            stage: Stage::Connect,
            error,
            rcpt: None,
        };
        let implicit = match self.endpoint.security {
            Security::Implicit => Some(self.tls.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.endpoint.host.as_str(), self.endpoint.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(at_connect)?;
        let starttls = match self.endpoint.security {
            Security::Opportunistic => conn.can_starttls(),
            Security::StartTlsRequired => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(SendError::Local(
                        "the relay does not offer STARTTLS (tls=required)".into(),
                    ));
                }
                true
            }
            Security::Implicit => false,
        };
        if starttls {
            conn.starttls(self.tls.clone(), &self.hello)
                .await
                .map_err(at_connect)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(at_connect)?;
        }
        Ok(conn)
    }

    /// A live connection: an idle one that still answers NOOP, else a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendError> {
        while let Some(mut idle) = self.take_idle() {
            if idle.since.elapsed() < IDLE_TIMEOUT && idle.conn.test_connected().await {
                return Ok(idle.conn);
            }
            idle.conn.abort().await;
        }
        self.connect().await
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
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| SendError::Closed)?;
            let mut conn = self.connection().await?;
            match Self::transaction(&mut conn, envelope, &body).await {
                Ok(response) => {
                    self.park(conn);
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
        "the {transport} transport sends e-mail only, not SMS"
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
            Outbound::Sms(_) => not_email("smtp"),
        }
    }

    /// Refuses new sends and QUITs the idle connections.
    async fn close(&self) {
        self.permits.close();
        let idle: Vec<Idle> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for mut i in idle {
            let _ = i.conn.quit().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
    fn urls_name_host_port_and_security() {
        let ok = [
            (
                "smtp://mail.example.com",
                "mail.example.com",
                25,
                Security::Opportunistic,
            ),
            (
                "smtp://127.0.0.1:2525",
                "127.0.0.1",
                2525,
                Security::Opportunistic,
            ),
            (
                "smtp://relay:587?tls=required",
                "relay",
                587,
                Security::StartTlsRequired,
            ),
            ("smtps://relay", "relay", 465, Security::Implicit),
            ("SMTPS://relay:10465/", "relay", 10465, Security::Implicit),
            ("smtp://[::1]:2525", "::1", 2525, Security::Opportunistic),
        ];
        for (url, host, port, security) in ok {
            let e = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (e.host.as_str(), e.port, e.security),
                (host, port, security)
            );
        }
        for bad in [
            "mail.example.com",
            "http://relay",
            "smtp://",
            "smtp://relay:x",
            "smtp://relay:0",
            "smtp://user:pw@relay",
            "smtps://relay?tls=required",
            "smtp://relay?tls=bogus",
            "smtp://[::1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
    }

    fn email() -> Email {
        Email {
            id: Uuid::nil(),
            message_id: "abc@herald.test".into(),
            from: Mailbox {
                email: "news@herald.test".into(),
                name: Some("Herald News".into()),
            },
            to: vec![Mailbox {
                email: "ann@example.com".into(),
                name: None,
            }],
            cc: vec![],
            bcc: vec![Mailbox {
                email: "audit@herald.test".into(),
                name: None,
            }],
            reply_to: None,
            subject: "Hello".into(),
            body_html: Some("<p>Hi</p>".into()),
            body_text: Some("Hi".into()),
            return_path: "bounces+00000000-0000-0000-0000-000000000000@herald.test".into(),
            list_unsubscribe: None,
        }
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let m = build_message(&email()).expect("builds");
        let raw = String::from_utf8(m.formatted()).expect("ascii");
        assert!(!raw.to_ascii_lowercase().contains("bcc"), "{raw}");
        assert!(!raw.contains("audit@herald.test"), "{raw}");
        let to: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["ann@example.com", "audit@herald.test"]);
        assert_eq!(
            m.envelope().from().map(|a| a.to_string()).as_deref(),
            Some("bounces+00000000-0000-0000-0000-000000000000@herald.test")
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(!raw.contains("List-Unsubscribe"), "{raw}");
    }

    #[test]
    fn header_injection_and_bad_addresses_are_refused() {
        let mut e = email();
        e.list_unsubscribe = Some("https://x.test/u\r\nBcc: evil@x.test".into());
        assert!(matches!(
            build_message(&e),
            Err(BuildError::Header {
                field: "list_unsubscribe",
                ..
            })
        ));
        let mut e = email();
        e.message_id = "a b@x".into();
        assert!(build_message(&e).is_err());
        let mut e = email();
        e.to[0].email = "not an address".into();
        let err = build_message(&e).expect_err("refused");
        assert!(err.to_string().contains("not an address"), "{err}");
        let mut e = email();
        e.subject = "Hi\r\nBcc: evil@x.test".into();
        let raw = String::from_utf8(build_message(&e).expect("builds").formatted()).expect("ascii");
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
        let mut e = email();
        e.to.clear();
        e.bcc.clear();
        assert_eq!(build_message(&e).err(), Some(BuildError::NoRecipient));
    }
}
