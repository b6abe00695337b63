//! The bounce listener: a small receive-only SMTP server for RFC 3464
//! delivery status notifications sent to the VERP Return-Path
//! `bounces+<herald id>@<domain>` of an e-mail.
//!
//! Owns: the listening socket, its sessions (HELO/EHLO, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT; no AUTH, no TLS), the DSN parser ([`parse_dsn`], pure)
//! and the rule from a DSN action to a report ([`report_status`], pure).
//! `failed` becomes [`ReportStatus::Bounced`], `delivered` becomes
//! [`ReportStatus::Delivered`]; `delayed`, `relayed` and `expanded` are not
//! reported. Reports go to the [`ReportSink`] as [`ReportKey::Message`]
//! before the DSN's DATA is answered 250, so an MTA re-sends what herald did
//! not take.
//!
//! Bounded: a line is at most [`MAX_LINE`] bytes, a message at most
//! `max_message_bytes` (the rest is read and dropped, then answered 552),
//! at most `max_recipients` per message and `max_connections` at once (more
//! are answered 421 and closed); every read and write has `idle_timeout`, a
//! whole session `session_timeout`. Nothing a client sends panics it.
//!
//! Must not: relay or store mail; accept mail for other addresses (550);
//! log a message's content; run outside the task that owns it (it stops on
//! its [`CancellationToken`] and waits for its sessions).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::transport::{DeliveryReport, PeerReply, ReportKey, ReportSink, ReportStatus};

/// The local part prefix of a VERP Return-Path.
pub const VERP_PREFIX: &str = "bounces+";

/// The longest command or text line taken (RFC 5321 allows 1,000 with CRLF).
pub const MAX_LINE: usize = 4096;

/// The VERP Return-Path of message `id` at `domain`.
pub fn verp_address(id: Uuid, domain: &str) -> String {
    format!("{VERP_PREFIX}{id}@{domain}")
}

/// herald's message id in a VERP address (`bounces+<uuid>@<any domain>`).
pub fn verp_message_id(address: &str) -> Option<Uuid> {
    let address = address.trim();
    // A source route (`@a,@b:user@domain`) is ignored, as RFC 5321 says.
    let address = match address.strip_prefix('@') {
        Some(_) => address.split_once(':')?.1,
        None => address,
    };
    let (local, domain) = address.rsplit_once('@')?;
    if domain.is_empty() || local.len() <= VERP_PREFIX.len() {
        return None;
    }
    let (prefix, id) = local.split_at_checked(VERP_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(VERP_PREFIX) {
        return None;
    }
    Uuid::parse_str(id).ok()
}

/// The `Action:` of one recipient in a DSN (RFC 3464 §2.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// Anything else, lower-cased.
    Other(String),
}

impl DsnAction {
    fn parse(value: &str) -> DsnAction {
        let word = value
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" => DsnAction::Failed,
            "delayed" => DsnAction::Delayed,
            "delivered" => DsnAction::Delivered,
            "relayed" => DsnAction::Relayed,
            "expanded" => DsnAction::Expanded,
            _ => DsnAction::Other(word),
        }
    }
}

/// One per-recipient block of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub action: DsnAction,
    /// `Status:` (`5.1.1`).
    pub status: Option<String>,
    /// `Diagnostic-Code:` as given (`smtp; 550 5.1.1 ... unknown`).
    pub diagnostic: Option<String>,
    /// `Final-Recipient:` without its type (`ann@example.com`).
    pub recipient: Option<String>,
}

/// Which report a recipient's action makes, if any.
pub fn report_status(action: &DsnAction) -> Option<ReportStatus> {
    match action {
        DsnAction::Failed => Some(ReportStatus::Bounced),
        DsnAction::Delivered => Some(ReportStatus::Delivered),
        _ => None,
    }
}

/// The per-recipient blocks of a `multipart/report;
/// report-type=delivery-status` message (its `message/delivery-status` or
/// `message/global-delivery-status` part). Anything else gives none.
pub fn parse_dsn(raw: &[u8]) -> Vec<DsnRecipient> {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    use mail_parser::MimeHeaders;
    let mut out = Vec::new();
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let is_status = ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            });
        if is_status {
            out.extend(parse_status_fields(&String::from_utf8_lossy(
                part.contents(),
            )));
        }
    }
    out
}

/// The fields of a delivery-status body: groups of header-like lines
/// separated by blank lines; the first (per-message) group has no `Action`.
fn parse_status_fields(body: &str) -> Vec<DsnRecipient> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(action) = get("action") {
            out.push(DsnRecipient {
                action: DsnAction::parse(&action),
                status: get("status").and_then(|s| s.split_whitespace().next().map(str::to_string)),
                diagnostic: get("diagnostic-code"),
                recipient: get("final-recipient")
                    .or_else(|| get("original-recipient"))
                    .map(|r| match r.split_once(';') {
                        Some((_, addr)) => addr.trim().to_string(),
                        None => r,
                    }),
            });
        }
        fields.clear();
    };
    for line in body.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// Where and how the listener runs.
#[derive(Debug, Clone)]
pub struct BounceSettings {
    /// `bounce_listen` (port 0 in tests).
    pub listen: SocketAddr,
    /// The name in the greeting and EHLO answer.
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// For every read and write.
    pub idle_timeout: Duration,
    /// For a whole connection.
    pub session_timeout: Duration,
}

impl Default for BounceSettings {
    fn default() -> Self {
        BounceSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: "herald".into(),
            max_message_bytes: 1024 * 1024,
            max_recipients: 100,
            max_connections: 64,
            idle_timeout: Duration::from_secs(60),
            session_timeout: Duration::from_secs(600),
        }
    }
}

/// A bound bounce listener; [`BounceListener::run`] serves it.
pub struct BounceListener {
    listener: TcpListener,
    settings: Arc<BounceSettings>,
    sink: ReportSink,
}

impl BounceListener {
    pub async fn bind(settings: BounceSettings, sink: ReportSink) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        Ok(BounceListener {
            listener,
            settings: Arc::new(settings),
            sink,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel`, then tells open sessions 421 and waits for them.
    pub async fn run(self, cancel: CancellationToken) {
        let sessions = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(self.settings.max_connections.max(1)));
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, not spin.
                    tracing::warn!(error = %e, "bounce listener: accept failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Best effort, never waiting on the client.
                let _ = stream.try_write(b"421 4.3.2 too many connections\r\n");
                tracing::debug!(%peer, "bounce listener: too many connections");
                continue;
            };
            let settings = self.settings.clone();
            let sink = self.sink.clone();
            let cancel = cancel.clone();
            sessions.spawn(async move {
                let _slot = slot;
                let limit = settings.session_timeout;
                let served =
                    tokio::time::timeout(limit, serve_session(stream, &settings, &sink, &cancel))
                        .await;
                match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "bounce session ended"),
                    Err(_) => tracing::debug!(%peer, "bounce session took too long"),
                }
            });
        }
        sessions.close();
        sessions.wait().await;
    }
}

/// How reading one line went.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (with its ending) fits in the buffer.
    Whole,
    /// Longer than the limit: the buffer holds its start, the rest was read
    /// and dropped.
    TooLong,
    /// End of stream (the buffer may hold an unfinished line).
    Eof,
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take > room {
            too_long = true;
        }
        buf.extend_from_slice(&available[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Helo,
    Ehlo,
    /// The reverse path (may be empty: DSNs are sent with `MAIL FROM:<>`)
    /// and the declared SIZE.
    Mail(Option<u64>),
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    /// A known verb with a bad argument.
    Syntax,
    Unknown,
}

/// The path in `FROM:<path> params` / `TO:<path> params`, and the params.
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let (kw, rest) = arg.split_once(':')?;
    if !kw.trim().eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let (path, params) = inner.split_once('>')?;
        Some((path, params))
    } else {
        // Lenient: a bare path up to the first space.
        Some(rest.split_once(' ').unwrap_or((rest, "")))
    }
}

fn parse_command(line: &str) -> Command {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => Command::Helo,
        "EHLO" => Command::Ehlo,
        "MAIL" => match path_arg(arg, "FROM") {
            Some((_, params)) => Command::Mail(params.split_whitespace().find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.eq_ignore_ascii_case("SIZE")
                    .then(|| v.parse().ok())
                    .flatten()
            })),
            None => Command::Syntax,
        },
        "RCPT" => match path_arg(arg, "TO") {
            Some((path, _)) => Command::Rcpt(path.to_string()),
            None => Command::Syntax,
        },
        "DATA" => Command::Data,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy,
        _ => Command::Unknown,
    }
}

/// Bad commands before the session is closed.
const MAX_ERRORS: u32 = 10;

struct Session<'a, R, W> {
    reader: R,
    writer: W,
    settings: &'a BounceSettings,
    cancel: &'a CancellationToken,
    line: Vec<u8>,
}

/// Why a session stops.
enum Stop {
    Io(std::io::Error),
    /// Client gone, QUIT, cancelled, timed out: nothing more to say.
    Done,
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

impl<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    async fn reply(&mut self, text: &str) -> Result<(), Stop> {
        let write = async {
            self.writer.write_all(text.as_bytes()).await?;
            self.writer.write_all(b"\r\n").await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(self.settings.idle_timeout, write).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Stop::Done),
        }
    }

    /// Reads one line; `max` bounds what is kept.
    async fn read(&mut self, max: usize) -> Result<Line, Stop> {
        let read = tokio::time::timeout(
            self.settings.idle_timeout,
            read_line(&mut self.reader, &mut self.line, max),
        );
        tokio::select! {
            _ = self.cancel.cancelled() => {
                let _ = self.reply("421 4.3.2 shutting down").await;
                Err(Stop::Done)
            }
            r = read => match r {
                Ok(Ok(Line::Eof)) => Err(Stop::Done),
                Ok(Ok(line)) => Ok(line),
                Ok(Err(e)) => Err(Stop::Io(e)),
                Err(_) => {
                    let _ = self.reply("421 4.4.2 idle too long").await;
                    Err(Stop::Done)
                }
            },
        }
    }

    /// Reads the message after 354 up to the lone dot; `None` when it was
    /// too big or had a line too long (all of it is read anyway).
    async fn read_data(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let max = self.settings.max_message_bytes;
        let mut message = Vec::new();
        let mut refused = false;
        loop {
            let line = self.read(MAX_LINE).await?;
            let bytes = self.line.as_slice();
            if line == Line::Whole && (bytes == b".\r\n" || bytes == b".\n") {
                return Ok((!refused).then_some(message));
            }
            if line == Line::TooLong {
                refused = true;
            }
            let bytes = bytes.strip_prefix(b".").unwrap_or(bytes);
            if refused || message.len() + bytes.len() > max {
                refused = true;
                message = Vec::new();
                continue;
            }
            message.extend_from_slice(bytes);
        }
    }

    async fn run(&mut self, sink: &ReportSink) -> Result<(), Stop> {
        let host = self.settings.hostname.clone();
        self.reply(&format!("220 {host} ESMTP herald bounce listener"))
            .await?;
        let mut in_mail = false;
        let mut rcpts: Vec<Uuid> = Vec::new();
        let mut errors = 0u32;
        loop {
            let line = self.read(MAX_LINE).await?;
            let command = if line == Line::TooLong {
                Command::Syntax
            } else {
                parse_command(&String::from_utf8_lossy(&self.line))
            };
            let answer: String = match command {
                Command::Helo => {
                    (in_mail, rcpts) = (false, Vec::new());
                    format!("250 {host}")
                }
                Command::Ehlo => {
                    (in_mail, rcpts) = (false, Vec::new());
                    format!(
                        "250-{host}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES",
                        self.settings.max_message_bytes
                    )
                }
                Command::Mail(_) if in_mail => "503 5.5.1 MAIL already given".into(),
                Command::Mail(Some(size)) if size > self.settings.max_message_bytes as u64 => {
                    "552 5.3.4 message too big".into()
                }
                Command::Mail(_) => {
                    in_mail = true;
                    "250 2.1.0 OK".into()
                }
                Command::Rcpt(_) if !in_mail => "503 5.5.1 MAIL first".into(),
                Command::Rcpt(_) if rcpts.len() >= self.settings.max_recipients => {
                    "452 4.5.3 too many recipients".into()
                }
                Command::Rcpt(path) => match verp_message_id(&path) {
                    Some(id) => {
                        if !rcpts.contains(&id) {
                            rcpts.push(id);
                        }
                        "250 2.1.5 OK".into()
                    }
                    None => "550 5.1.1 no such mailbox here".into(),
                },
                Command::Data if rcpts.is_empty() => "503 5.5.1 RCPT first".into(),
                Command::Data => {
                    self.reply("354 end with <CRLF>.<CRLF>").await?;
                    let message = self.read_data().await?;
                    let ids = std::mem::take(&mut rcpts);
                    in_mail = false;
                    match message {
                        None => "552 5.3.4 message too big or a line too long".into(),
                        // 250 only once every report is kept: else the
                        // sending server tries again later.
                        Some(raw) => match self.report(sink, &ids, &raw).await? {
                            true => "250 2.0.0 OK".into(),
                            false => "451 4.3.0 not kept; try again later".into(),
                        },
                    }
                }
                Command::Rset => {
                    (in_mail, rcpts) = (false, Vec::new());
                    "250 2.0.0 OK".into()
                }
                Command::Noop => "250 2.0.0 OK".into(),
                Command::Vrfy => "252 2.5.2 not verified".into(),
                Command::Quit => {
                    self.reply("221 2.0.0 bye").await?;
                    return Ok(());
                }
                Command::Syntax => {
                    errors += 1;
                    "501 5.5.4 syntax error".into()
                }
                Command::Unknown => {
                    errors += 1;
                    "502 5.5.2 command not recognised".into()
                }
            };
            if errors >= MAX_ERRORS {
                self.reply("421 4.7.0 too many errors").await?;
                return Ok(());
            }
            self.reply(&answer).await?;
        }
    }

    /// Sends a report per message id and DSN recipient that has one;
    /// whether every one was kept.
    async fn report(&mut self, sink: &ReportSink, ids: &[Uuid], raw: &[u8]) -> Result<bool, Stop> {
        let mut all_kept = true;
        let recipients = parse_dsn(raw);
        if recipients.is_empty() {
            tracing::debug!(messages = ids.len(), "bounce listener: not a DSN, dropped");
        }
        for id in ids {
            for r in &recipients {
                let Some(status) = report_status(&r.action) else {
                    continue;
                };
                let report = DeliveryReport {
                    key: ReportKey::Message(*id),
                    status,
                    reply: PeerReply {
                        code: r.status.clone(),
                        text: r.diagnostic.clone(),
                    },
                    address: None,
                };
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(Stop::Done),
                    kept = sink.report(report) => if !kept {
                        tracing::warn!("bounce listener: the report could not be kept");
                        all_kept = false;
                    },
                }
            }
        }
        Ok(all_kept)
    }
}

async fn serve_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    settings: &BounceSettings,
    sink: &ReportSink,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let (r, w) = tokio::io::split(stream);
    let mut session = Session {
        reader: BufReader::new(r),
        writer: w,
        settings,
        cancel,
        line: Vec::with_capacity(256),
    };
    match session.run(sink).await {
        Ok(()) | Err(Stop::Done) => Ok(()),
        Err(Stop::Io(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Shaped like Postfix's bounce: a notification, the delivery-status
    /// part, the returned headers.
    pub(crate) const POSTFIX_DSN: &str = "Return-Path: <>\r\n\
Received: by mx.herald.test (Postfix) id 3F2A1C0041; Tue,  4 Mar 2025 10:00:01 +0000 (UTC)\r\n\
Date: Tue,  4 Mar 2025 10:00:01 +0000 (UTC)\r\n\
From: MAILER-DAEMON@mx.herald.test (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@herald.test\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"3F2A1C0041.1741082401/mx.herald.test\"\r\n\
Message-Id: <20250304100001.3F2A1C0041@mx.herald.test>\r\n\
\r\n\
This is a MIME-encapsulated message.\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at host mx.herald.test.\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
<nobody@example.com>: host mx.example.com[192.0.2.10] said: 550 5.1.1\r\n\
\x20   <nobody@example.com>: Recipient address rejected: User unknown (in reply to\r\n\
\x20   RCPT TO command)\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.herald.test\r\n\
X-Postfix-Queue-ID: 3F2A1C0041\r\n\
X-Postfix-Sender: rfc822; bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@herald.test\r\n\
Arrival-Date: Tue,  4 Mar 2025 10:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; nobody@example.com\r\n\
Original-Recipient: rfc822;nobody@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.com\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address\r\n\
\x20   rejected: User unknown\r\n\
\r\n\
Final-Recipient: rfc822; slow@example.com\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
Diagnostic-Code: X-Postfix; connect to mx.example.com: Connection timed out\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Herald News <news@herald.test>\r\n\
To: nobody@example.com\r\n\
Subject: Hello\r\n\
Message-ID: <abc@herald.test>\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test--\r\n";

    #[test]
    fn a_postfix_dsn_gives_each_recipient_action_status_and_diagnostic() {
        let got = parse_dsn(POSTFIX_DSN.as_bytes());
        assert_eq!(
            got,
            vec![
                DsnRecipient {
                    action: DsnAction::Failed,
                    status: Some("5.1.1".into()),
                    diagnostic: Some(
                        "smtp; 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
                            .into()
                    ),
                    recipient: Some("nobody@example.com".into()),
                },
                DsnRecipient {
                    action: DsnAction::Delayed,
                    status: Some("4.4.1".into()),
                    diagnostic: Some(
                        "X-Postfix; connect to mx.example.com: Connection timed out".into()
                    ),
                    recipient: Some("slow@example.com".into()),
                },
            ]
        );
    }

    fn dsn(action: &str, status: &str) -> String {
        format!(
            "From: <>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: text/plain\n\nreport\n--b\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx\n\nfinal-recipient: rfc822;a@b.test\nACTION: {action}\nstatus: {status} (comment)\n\n--b--\n"
        )
    }

    #[test]
    fn actions_map_to_reports_or_none() {
        let table = [
            ("failed", Some(ReportStatus::Bounced)),
            ("delivered", Some(ReportStatus::Delivered)),
            ("Delivered", Some(ReportStatus::Delivered)),
            ("delayed", None),
            ("relayed", None),
            ("expanded", None),
            ("exploded", None),
        ];
        for (action, want) in table {
            let got = parse_dsn(dsn(action, "2.0.0").as_bytes());
            assert_eq!(got.len(), 1, "{action}");
            assert_eq!(report_status(&got[0].action), want, "{action}");
            assert_eq!(got[0].status.as_deref(), Some("2.0.0"));
            assert_eq!(got[0].recipient.as_deref(), Some("a@b.test"));
        }
    }

    #[test]
    fn what_is_not_a_dsn_gives_nothing() {
        for raw in [
            &b""[..],
            b"garbage",
            b"\xff\xfe\x00\r\n\r\n\x00",
            b"Subject: hi\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n",
        ] {
            assert!(parse_dsn(raw).is_empty(), "{raw:?}");
        }
    }

    #[test]
    fn verp_addresses_name_the_message() {
        let id = Uuid::parse_str("7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44").expect("uuid");
        assert_eq!(verp_message_id(&verp_address(id, "herald.test")), Some(id));
        let table = [
            (
                "bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@x.test",
                Some(id),
            ),
            ("BOUNCES+7d1b2f9e3c4a4e559a3b0c6f8e2d1a44@x.test", Some(id)),
            (
                "@relay.test:bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@x.test",
                Some(id),
            ),
            ("bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@", None),
            ("bounces+nope@x.test", None),
            ("bounces@x.test", None),
            ("postmaster@x.test", None),
            ("", None),
            ("bounces+", None),
            ("é@x", None),
        ];
        for (addr, want) in table {
            assert_eq!(verp_message_id(addr), want, "{addr}");
        }
    }

    #[test]
    fn commands_parse_leniently_and_never_panic() {
        assert_eq!(
            parse_command("MAIL FROM:<> SIZE=100\r\n"),
            Command::Mail(Some(100))
        );
        assert_eq!(parse_command("mail from: <a@b>\r\n"), Command::Mail(None));
        assert_eq!(
            parse_command("RCPT TO:<bounces+x@y>\r\n"),
            Command::Rcpt("bounces+x@y".into())
        );
        assert_eq!(parse_command("RCPT TO:a@b\n"), Command::Rcpt("a@b".into()));
        assert_eq!(parse_command("RCPT FROM:<a@b>\r\n"), Command::Syntax);
        assert_eq!(parse_command("RCPT TO:<a@b\r\n"), Command::Syntax);
        assert_eq!(parse_command("\r\n"), Command::Unknown);
        assert_eq!(parse_command("é\u{0}"), Command::Unknown);
    }

    fn settings() -> BounceSettings {
        BounceSettings {
            max_message_bytes: 4096,
            ..BounceSettings::default()
        }
    }

    /// Plays `input` against a session and returns what it answered.
    async fn converse(input: &[u8]) -> (String, Vec<DeliveryReport>) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = ReportSink::channel(16);
        // Keeps each report as it comes (as the store would).
        let keeper = tokio::spawn(async move {
            let mut reports = Vec::new();
            while let Some(r) = rx.recv().await {
                reports.push(r.kept());
            }
            reports
        });
        let cancel = CancellationToken::new();
        let settings = settings();
        let serve = serve_session(server, &settings, &tx, &cancel);
        let talk = async {
            client.write_all(input).await.expect("write");
            client.shutdown().await.expect("shutdown");
            let mut out = String::new();
            client.read_to_string(&mut out).await.expect("read");
            out
        };
        let (served, out) = tokio::join!(serve, talk);
        served.expect("session");
        drop(tx);
        (out, keeper.await.expect("keeper"))
    }

    #[tokio::test]
    async fn a_dsn_session_reports_the_bounce_for_the_verp_id() {
        let body = POSTFIX_DSN.replace("\r\n.", "\r\n..");
        let input = format!(
            "EHLO mx\r\nMAIL FROM:<>\r\nRCPT TO:<someone@herald.test>\r\n\
RCPT TO:<bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@herald.test>\r\nDATA\r\n{body}.\r\nQUIT\r\n"
        );
        let (out, reports) = converse(input.as_bytes()).await;
        let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
        assert_eq!(
            codes,
            ["220", "250", "250", "250", "250", "250", "550", "250", "354", "250", "221"],
            "{out}"
        );
        let id = Uuid::parse_str("7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44").expect("uuid");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].key, ReportKey::Message(id));
        assert_eq!(reports[0].status, ReportStatus::Bounced);
        assert_eq!(reports[0].reply.code.as_deref(), Some("5.1.1"));
    }

    #[tokio::test]
    async fn oversized_data_and_long_lines_are_refused_and_the_session_goes_on() {
        let big = "x".repeat(100);
        let mut input = String::from(
            "HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@h>\r\nDATA\r\n",
        );
        for _ in 0..100 {
            input.push_str(&big);
            input.push_str("\r\n");
        }
        input.push_str(".\r\nMAIL FROM:<> SIZE=999999999\r\n");
        input.push_str(&"y".repeat(MAX_LINE * 3));
        input.push_str("\r\nNOOP\r\n");
        let (out, reports) = converse(input.as_bytes()).await;
        let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
        assert_eq!(
            codes,
            ["220", "250", "250", "250", "354", "552", "552", "501", "250"],
            "{out}"
        );
        assert!(reports.is_empty());
    }

    #[tokio::test]
    async fn too_many_bad_commands_close_the_session() {
        let input = "BOGUS\r\n".repeat(50);
        let (out, _) = converse(input.as_bytes()).await;
        assert!(
            out.trim_end().ends_with("421 4.7.0 too many errors"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1 + MAX_ERRORS as usize, "{out}");
    }
}
