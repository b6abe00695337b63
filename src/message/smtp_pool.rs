//! The SMTP transport's connections to its relay: at most `size` in use at
//! once, idle ones kept for reuse.
//!
//! Owns: the relay's address (the settings URL, [`parse_url`]), opening a
//! connection (the TCP socket, TLS, EHLO, STARTTLS, AUTH), the idle list,
//! and the permits that bound the connections in use.
//!
//! Sockets are opened here, not by lettre, so that they carry TCP_NODELAY
//! (lettre 0.11 sets no socket options): lettre writes a message's body and
//! its final `.` in two writes, and with Nagle's algorithm the second waits
//! for the relay's delayed ACK of the first, about 40 ms a message. TLS is
//! still lettre's (its STARTTLS, or for `smtps://` its TLS stream over this
//! socket).
//!
//! An idle connection is reused without a NOOP: the transaction itself finds
//! out whether the relay closed it (see `smtp::closed_while_idle`). Idle
//! connections older than [`IDLE_TIMEOUT`] are closed instead.
//!
//! Must not: run transactions or map replies (that is `smtp`); keep a
//! connection whose transaction did not end cleanly (the caller decides
//! whether to [`Pool::park`] it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)]
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::smtp::{SendError, SmtpSettingsError, Stage};

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

/// `url` as an error may show it: whatever precedes an `@` in its
/// authority (a user and password put there by mistake) as `***`.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Parses `smtp://HOST[:PORT][?tls=required]` or `smtps://HOST[:PORT]`.
pub fn parse_url(url: &str) -> Result<Endpoint, SmtpSettingsError> {
    let bad = |reason| SmtpSettingsError::Url {
        url: without_userinfo(url),
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

/// Idle connections older than this are closed instead of reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An idle connection and when it was parked.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// How to reach and greet the relay, and the connections to it.
pub(super) struct Pool {
    pub endpoint: Endpoint,
    pub tls: TlsParameters,
    pub credentials: Option<Credentials>,
    pub hello: ClientId,
    pub size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

/// A connection taken for one send.
pub(super) struct Taken {
    pub conn: AsyncSmtpConnection,
    /// It was idle in the pool (so the relay may have closed it meanwhile).
    pub reused: bool,
}

impl Pool {
    pub fn new(
        endpoint: Endpoint,
        tls: TlsParameters,
        credentials: Option<Credentials>,
        hello: ClientId,
        size: usize,
    ) -> Pool {
        Pool {
            endpoint,
            tls,
            credentials,
            hello,
            size,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The right to use one connection; [`SendError::Closed`] after [`Pool::close`].
    pub async fn permit(&self) -> Result<SemaphorePermit<'_>, SendError> {
        self.permits.acquire().await.map_err(|_| SendError::Closed)
    }

    /// The most recently parked idle connection that is not too old, else a
    /// new one. (Call with a [`Pool::permit`] held.)
    pub async fn take(&self) -> Result<Taken, SendError> {
        while let Some(mut idle) = self.take_idle() {
            if idle.since.elapsed() < IDLE_TIMEOUT {
                return Ok(Taken {
                    conn: idle.conn,
                    reused: true,
                });
            }
            idle.conn.abort().await;
        }
        Ok(Taken {
            conn: self.connect().await?,
            reused: false,
        })
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().ok()?.pop()
    }

    /// Keeps a connection whose transaction ended cleanly, for the next send.
    pub fn park(&self, conn: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.size {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
        }
    }

    /// Refuses new permits and QUITs the idle connections.
    pub async fn close(&self) {
        self.permits.close();
        let idle: Vec<Idle> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for mut i in idle {
            let _ = i.conn.quit().await;
        }
    }

    /// A new connection: greeted, EHLO'd, on TLS as the endpoint says,
    /// logged in when there are credentials.
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let at_connect = |error| SendError::Smtp {
            stage: Stage::Connect,
            error,
            rcpt: None,
        };
        let tcp = open_socket(&self.endpoint)
            .await
            .map_err(SendError::Network)?;
        let stream: Box<dyn AsyncTokioStream> = match self.endpoint.security {
            Security::Implicit => Box::new(
                ImplicitTls::over(tcp, self.tls.clone())
                    .await
                    .map_err(at_connect)?,
            ),
            Security::Opportunistic | Security::StartTlsRequired => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
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
            // lettre sees a plain stream here and would offer STARTTLS.
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
}

/// A TCP connection to the relay with TCP_NODELAY set (every address the
/// host resolves to is tried in turn).
pub(super) async fn open_socket(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to {}:{}: {e}", endpoint.host, endpoint.port),
            )
        })?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// lettre's TLS stream over a socket herald opened, for implicit TLS
/// (`smtps://`): lettre takes a ready stream only as an [`AsyncTokioStream`],
/// and its TLS stream type is public but deprecated.
#[allow(deprecated)]
#[derive(Debug)]
struct ImplicitTls(Compat<AsyncNetworkStream>);

#[allow(deprecated)]
impl ImplicitTls {
    async fn over(
        tcp: TcpStream,
        tls: TlsParameters,
    ) -> Result<ImplicitTls, lettre::transport::smtp::Error> {
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(tls).await?;
        Ok(ImplicitTls(stream.compat()))
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn sockets_to_the_relay_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: listener.local_addr().expect("addr").port(),
            security: Security::Opportunistic,
        };
        let tcp = open_socket(&endpoint).await.expect("connects");
        assert!(tcp.nodelay().expect("TCP_NODELAY readable"));
    }
}
