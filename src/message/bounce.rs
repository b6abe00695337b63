//! The bounce listener: a small receive-only SMTP server for RFC 3464
//! delivery status notifications sent to the VERP Return-Path
//! `bounces+<herald id>@<domain>` of an e-mail.
//!
//! Owns: the listening socket and its sessions (HELO/EHLO, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT; no AUTH, no TLS). Each DSN is read with
//! [`super::dsn::parse_dsn`] and its actions mapped by
//! [`super::dsn::report_status`]. Reports go to the [`ReportSink`] as [`ReportKey::Message`]
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

use super::dsn::{parse_dsn, report_status, verp_message_id};
use super::transport::{DeliveryReport, PeerReply, ReportKey, ReportSink};

/// The longest command or text line taken (RFC 5321 allows 1,000 with CRLF).
pub const MAX_LINE: usize = 4096;

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
    use crate::message::dsn::tests::POSTFIX_DSN;
    use crate::message::transport::ReportStatus;
    use tokio::io::AsyncReadExt;

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
