//! The SIP stack underneath call control: rsipstack's UDP transport,
//! transaction endpoint and dialog layer, plus herald's incoming-request loop.
//!
//! Owns: binding the SIP socket, running the endpoint, answering requests
//! nobody asked for (OPTIONS → 200, unknown dialogs → 481, new INVITEs → 603
//! unless the stack was started with an INVITE handler, as the callee
//! simulator's is), routing in-dialog requests to their dialog, and small
//! helpers that read header values out of rsipstack messages. The socket
//! rsipstack reads is a [`GuardedUdp`]. Must not: decide outcomes (that is
//! `classify`) or leak rsipstack types outside `src/sip/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Headers, Method, Response, StatusCode};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::{TcpListenerConnection, TlsConfig, TlsListenerConnection};
use rsipstack::EndpointBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::classify::parse_q850_cause;
use super::guard::GuardedUdp;
use super::inbound_message::MessageSink;
use crate::metrics::Metrics;

/// RFC 3261's 64*T1 (Timers B, D, F, M…), 32 s by default. herald waits
/// 8 s: a trunk that has not answered an INVITE at all by then is failing
/// (`temporary_failure`), and every finished call's transactions are kept
/// this long, so it bounds memory at high call rates (~25 KB per call).
pub(super) const TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Methods herald answers, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// What the incoming loop tells a live call about requests it routed to it.
#[derive(Debug)]
pub(super) enum CallNote {
    /// The callee sent BYE (the dialog answers it); its Q.850 cause, if any.
    RemoteBye { q850: Option<u16> },
}

/// Live calls by Call-ID, so the incoming loop can reach them.
#[derive(Clone, Default)]
pub(super) struct Registry(Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CallNote>>>>);

impl Registry {
    pub(super) fn insert(&self, call_id: &str) -> mpsc::UnboundedReceiver<CallNote> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut map) = self.0.lock() {
            map.insert(call_id.to_string(), tx);
        }
        rx
    }

    pub(super) fn remove(&self, call_id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(call_id);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn note(&self, call_id: &str, note: CallNote) {
        if let Ok(map) = self.0.lock() {
            if let Some(tx) = map.get(call_id) {
                tx.send(note).ok();
            }
        }
    }
}

/// Where herald accepts SIP over TLS, and with which certificate (PEM).
pub(super) struct TlsListen {
    pub(super) addr: SocketAddr,
    pub(super) cert: Vec<u8>,
    pub(super) key: Vec<u8>,
}

impl TlsListen {
    /// From `[sip] tls_listen`, `tls_cert_file`, `tls_key_file`; `None` when
    /// `tls_listen` is empty. The files must hold a certificate and a key.
    pub(super) fn from_config(sip: &crate::config::SipConfig) -> anyhow::Result<Option<TlsListen>> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if sip.tls_listen.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = sip.tls_listen.parse().map_err(|_| {
            anyhow::anyhow!("sip.tls_listen {:?} is not an ip:port", sip.tls_listen)
        })?;
        let read = |key: &str, path: &str| {
            std::fs::read(path)
                .map_err(|_| anyhow::anyhow!("sip.{key}: cannot be read as a PEM file"))
        };
        let cert = read("tls_cert_file", &sip.tls_cert_file)?;
        let key = read("tls_key_file", &sip.tls_key_file)?;
        if CertificateDer::pem_slice_iter(&cert)
            .next()
            .is_none_or(|c| c.is_err())
        {
            anyhow::bail!("sip.tls_cert_file: holds no PEM certificate");
        }
        if PrivateKeyDer::from_pem_slice(&key).is_err() {
            anyhow::bail!("sip.tls_key_file: holds no PEM private key");
        }
        Ok(Some(TlsListen { addr, cert, key }))
    }
}

/// The running stack.
pub(super) struct Stack {
    pub(super) dialogs: Arc<DialogLayer>,
    pub(super) local_addr: SocketAddr,
    pub(super) registry: Registry,
    /// Where received MESSAGEs go, once someone takes them.
    pub(super) messages: MessageSink,
}

impl Stack {
    /// Binds UDP on `listen` (and TCP on its port, and TLS where `tls` says)
    /// and starts the endpoint and the incoming loop on `tasks`. Both stop
    /// when `stop` is cancelled. Malformed datagrams never reach rsipstack;
    /// they are counted in `metrics` (see `guard`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start(
        listen: SocketAddr,
        public: Option<SocketAddr>,
        user_agent: &str,
        tasks: &TaskTracker,
        stop: CancellationToken,
        invites: Option<InviteSender>,
        metrics: Arc<Metrics>,
        tls: Option<TlsListen>,
    ) -> anyhow::Result<Stack> {
        let transport = TransportLayer::new(stop.child_token());
        let socket = bind_udp(listen).with_context(|| format!("binding SIP UDP on {listen}"))?;
        let udp_addr = socket.local_addr().ok();
        let socket = Arc::new(GuardedUdp::new(socket, metrics));
        let udp = UdpConnection::from_socket(socket, public, Some(stop.child_token()))
            .await
            .map_err(|e| anyhow::anyhow!("SIP UDP transport on {listen}: {e}"))?;
        transport.add_transport(udp.into());
        // TCP on the same port, for carriers that open a connection of their
        // own to send a request (RFC 3261 §18.2.1); calls on TCP and TLS
        // trunks go on the connection herald opens.
        if let Some(at) = udp_addr {
            let tcp = TcpListenerConnection::new(at, public)
                .await
                .map_err(|e| anyhow::anyhow!("SIP TCP listener on {at}: {e}"))?;
            transport.add_transport(tcp.into());
        }
        if let Some(t) = tls {
            let config = TlsConfig {
                cert: Some(t.cert),
                key: Some(t.key),
                ..TlsConfig::default()
            };
            let listener = TlsListenerConnection::new(t.addr, None, config)
                .await
                .map_err(|e| anyhow::anyhow!("SIP TLS listener on {}: {e}", t.addr))?;
            transport.add_transport(listener.into());
        }
        let endpoint = EndpointBuilder::new()
            .with_option(EndpointOption {
                t1x64: TRANSACTION_TIMEOUT,
                ..EndpointOption::default()
            })
            .with_cancel_token(stop.clone())
            .with_transport_layer(transport)
            .with_user_agent(user_agent)
            .build();
        let local_addr = endpoint
            .get_addrs()
            .first()
            .and_then(|a| a.addr.to_string().parse::<SocketAddr>().ok())
            .context("the SIP transport has no usable local address")?;
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| anyhow::anyhow!("taking the incoming request channel: {e}"))?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let inner = endpoint.inner.clone();
        tasks.spawn(async move { endpoint.serve().await });
        let registry = Registry::default();
        let messages = MessageSink::default();
        tasks.spawn(incoming_loop(
            incoming,
            dialogs.clone(),
            registry.clone(),
            tasks.clone(),
            invites,
            messages.clone(),
            stop,
        ));
        drop(inner);
        Ok(Stack {
            dialogs,
            local_addr,
            registry,
            messages,
        })
    }
}

/// Socket buffer size asked for the SIP socket: a burst of responses from a
/// busy trunk must not overflow the kernel's default (~200 KB, which holds
/// only ~170 small datagrams). The kernel caps it at `net.core.rmem_max`.
const SIP_SOCKET_BUFFER: usize = 4 << 20;

fn bind_udp(listen: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, it just drops bursts sooner.
    socket.set_recv_buffer_size(SIP_SOCKET_BUFFER).ok();
    socket.set_send_buffer_size(SIP_SOCKET_BUFFER).ok();
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Where new INVITEs go when the stack takes calls (the callee simulator).
pub(super) type InviteSender = mpsc::UnboundedSender<Transaction>;

async fn incoming_loop(
    mut incoming: TransactionReceiver,
    dialogs: Arc<DialogLayer>,
    registry: Registry,
    tasks: TaskTracker,
    invites: Option<InviteSender>,
    messages: MessageSink,
    stop: CancellationToken,
) {
    loop {
        let tx = tokio::select! {
            _ = stop.cancelled() => break,
            tx = incoming.recv() => match tx {
                Some(tx) => tx,
                None => break,
            },
        };
        route(tx, &dialogs, &registry, &tasks, invites.as_ref(), &messages);
    }
    debug!("SIP incoming loop stopped");
}

/// Sends one request where it belongs. Never blocks the loop: replies are
/// sent from tasks on `tasks`.
fn route(
    mut tx: Transaction,
    dialogs: &DialogLayer,
    registry: &Registry,
    tasks: &TaskTracker,
    invites: Option<&InviteSender>,
    messages: &MessageSink,
) {
    let method = tx.original.method;
    let has_to_tag = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some();
    if has_to_tag {
        if let Some(Dialog::Invite(mut dialog)) = dialogs.match_dialog(&tx) {
            if method == Method::Bye {
                let q850 = parse_q850_cause(
                    header_values(&tx.original.headers, "reason")
                        .iter()
                        .map(String::as_str),
                );
                registry.note(&dialog.id().call_id, CallNote::RemoteBye { q850 });
            }
            if method == Method::Options {
                tasks.spawn(async move { reply(&mut tx, StatusCode::OK).await });
                return;
            }
            tasks.spawn(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    debug!(error = %e, "in-dialog request failed");
                }
            });
            return;
        }
    }
    if method == Method::Message && !has_to_tag {
        if let Some(sink) = messages.get() {
            tasks.spawn(super::inbound_message::handle(tx, sink.clone()));
            return;
        }
    }
    if method == Method::Invite && !has_to_tag {
        if let Some(invites) = invites {
            // The handler answers it; if it is gone (shutting down) the
            // transaction is dropped and the caller's INVITE times out.
            invites.send(tx).ok();
            return;
        }
    }
    let status = match method {
        Method::Options => StatusCode::OK,
        _ if has_to_tag => StatusCode::CallTransactionDoesNotExist,
        // herald places calls; it does not take them.
        Method::Invite => StatusCode::Decline,
        _ => StatusCode::MethodNotAllowed,
    };
    tasks.spawn(async move { reply(&mut tx, status).await });
}

async fn reply(tx: &mut Transaction, status: StatusCode) {
    let headers = vec![Header::Allow(ALLOW.into())];
    if let Err(e) = tx.reply_with(status, headers, None).await {
        // A request too broken to answer (no To, a mangled header) is the
        // sender's: not a warning per datagram, which anyone could flood.
        debug!(error = %e, "replying to an incoming request failed");
    }
}

/// The values of every header called `name` (case-insensitive; compact
/// forms are not needed for the headers herald reads).
pub(super) fn header_values(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| {
            let (n, v): (&str, String) = match h {
                Header::WwwAuthenticate(v) => ("www-authenticate", v.value().to_string()),
                Header::ProxyAuthenticate(v) => ("proxy-authenticate", v.value().to_string()),
                Header::Reason(v) => ("reason", v.value().to_string()),
                Header::RetryAfter(v) => ("retry-after", v.value().to_string()),
                Header::ContentType(v) => ("content-type", v.value().to_string()),
                Header::Contact(v) => ("contact", v.value().to_string()),
                Header::Expires(v) => ("expires", v.value().to_string()),
                Header::Allow(v) => ("allow", v.value().to_string()),
                Header::SessionExpires(v) => ("session-expires", v.value().to_string()),
                Header::MinSE(v) => ("min-se", v.value().to_string()),
                Header::Other(n, v) => (n.as_str(), v.clone()),
                _ => return None,
            };
            n.eq_ignore_ascii_case(name).then_some(v)
        })
        .collect()
}

/// rsipstack reports its own Timer B/C (INVITE) or F (non-INVITE) expiry as
/// a 408 built from our request, so without a To tag; a 408 from a peer
/// carries one.
pub(super) fn is_local_timeout(resp: &Response) -> bool {
    resp.status_code.code() == 408
        && resp
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_none()
}

/// "486 Busy Here", with the peer's own phrase when it sent one.
pub(super) fn status_line(resp: &Response) -> String {
    match &resp.wire_reason {
        Some(phrase) => format!("{} {phrase}", resp.status_code.code()),
        None => resp.status_code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_listener_needs_an_address_a_certificate_and_a_key() {
        let mut sip = crate::config::SipConfig::default();
        assert!(TlsListen::from_config(&sip).unwrap().is_none());
        sip.tls_listen = "nowhere".into();
        let err =
            |sip: &crate::config::SipConfig| TlsListen::from_config(sip).err().unwrap().to_string();
        assert_eq!(err(&sip), "sip.tls_listen \"nowhere\" is not an ip:port");
        sip.tls_listen = "127.0.0.1:5061".into();
        sip.tls_cert_file = "/nonexistent/cert.pem".into();
        assert_eq!(err(&sip), "sip.tls_cert_file: cannot be read as a PEM file");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM").unwrap();
        sip.tls_cert_file = junk.display().to_string();
        sip.tls_key_file = junk.display().to_string();
        assert_eq!(err(&sip), "sip.tls_cert_file: holds no PEM certificate");
    }
}
