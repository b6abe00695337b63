//! SIP over TCP and TLS to trunks.
//!
//! Owns: what a trunk's `transport` means for the requests sent through it
//! (`sip:…;transport=tcp`, `sips:…`, and the destination the transport layer
//! is told); each TLS trunk's rustls configuration (the system's roots, or the
//! trunk's `tls_ca_file`; the proxy's host, or `tls_server_name`, checked
//! against the certificate); and the connection herald's requests to a TCP or
//! TLS trunk travel on, opened here (with `TCP_NODELAY`) before they are
//! sent. rsipstack then reads and writes it like a connection it dialed
//! itself, so responses and the carrier's requests on it reach the same
//! dialog routing as on UDP.
//!
//! Must not: accept a certificate that does not verify, or fall back to
//! plain TCP or UDP for a TLS trunk (rsipstack's own TLS dial, should it ever
//! run, has no trust anchors and refuses every peer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::transport::Transport;
use rsipstack::sip::{HostWithPort, Uri};
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::tls::TlsConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::TrunkConfig;

/// How long opening a TLS connection (TCP connect and handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A trunk's SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    /// The configured `transport` (checked when the configuration loads).
    pub(super) fn of(cfg: &TrunkConfig) -> SipTransport {
        match cfg.transport.to_ascii_lowercase().as_str() {
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            _ => SipTransport::Udp,
        }
    }

    /// `sip:USER@HOST:PORT` on UDP, with `;transport=tcp` on TCP, `sips:` on TLS.
    pub(super) fn uri(self, user: Option<&str>, host: &HostWithPort) -> String {
        let at = user.map(|u| format!("{u}@")).unwrap_or_default();
        match self {
            SipTransport::Udp => format!("sip:{at}{host}"),
            SipTransport::Tcp => format!("sip:{at}{host};transport=tcp"),
            SipTransport::Tls => format!("sips:{at}{host}"),
        }
    }

    /// Where requests to `proxy` go, for the transport layer; `None` on UDP
    /// (the Request-URI says it).
    pub(super) fn destination(self, proxy: &Uri) -> Option<SipAddr> {
        let r#type = match self {
            SipTransport::Udp => return None,
            SipTransport::Tcp => Transport::Tcp,
            SipTransport::Tls => Transport::Tls,
        };
        let mut addr = proxy.host_with_port.clone();
        if addr.port.is_none() {
            let port: u16 = if self == SipTransport::Tls {
                5061
            } else {
                5060
            };
            addr.port = Some(port.into());
        }
        Some(SipAddr {
            r#type: Some(r#type),
            addr,
        })
    }
}

/// A TCP or TLS trunk's connection: opened here (with `TCP_NODELAY`: a
/// request must not wait for the previous one's ACK), verified on TLS, and
/// opened again once closed.
pub(super) struct TrunkLink {
    /// The verification, on TLS; `None` on TCP.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    live: tokio::sync::Mutex<Option<SipConnection>>,
}

/// Why a connection to a trunk could not be opened.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The proxy's certificate did not verify (wrong name, unknown issuer,
    /// expired): a configuration matter, not a passing one.
    Certificate(String),
    /// Could not connect, or the handshake failed otherwise.
    Connect(String),
}

impl TrunkLink {
    /// A TCP trunk's.
    pub(super) fn tcp() -> TrunkLink {
        TrunkLink {
            tls: None,
            live: tokio::sync::Mutex::new(None),
        }
    }

    /// A TLS trunk's, with its verification: `tls_ca_file` when set, else the
    /// system's roots; the name checked is `tls_server_name`, else the
    /// proxy's host.
    pub(super) fn tls(name: &str, cfg: &TrunkConfig, proxy: &Uri) -> anyhow::Result<TrunkLink> {
        let mut roots = RootCertStore::empty();
        if cfg.tls_ca_file.is_empty() {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                roots.add(cert).ok();
            }
            if roots.is_empty() {
                anyhow::bail!(
                    "trunks.{name}: no system root certificates were found to verify the \
                     proxy's TLS certificate; set trunks.{name}.tls_ca_file"
                );
            }
        } else {
            let pem = std::fs::read(&cfg.tls_ca_file).map_err(|_| {
                anyhow::anyhow!("trunks.{name}.tls_ca_file: cannot be read as a PEM file")
            })?;
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    anyhow::anyhow!("trunks.{name}.tls_ca_file: not a PEM certificate: {e}")
                })?;
                roots.add(cert).map_err(|e| {
                    anyhow::anyhow!("trunks.{name}.tls_ca_file: unusable certificate: {e}")
                })?;
            }
            if roots.is_empty() {
                anyhow::bail!("trunks.{name}.tls_ca_file: holds no PEM certificate");
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("trunks.{name}: TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = if cfg.tls_server_name.is_empty() {
            // An IPv6 literal is written `[::1]` in a URI, `::1` in a certificate.
            let h = proxy.host_with_port.host.to_string();
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        } else {
            cfg.tls_server_name.clone()
        };
        let server_name = ServerName::try_from(host.clone()).map_err(|_| {
            anyhow::anyhow!("trunks.{name}: {host:?} is not a DNS name or IP address for TLS")
        })?;
        Ok(TrunkLink {
            tls: Some((TlsConnector::from(Arc::new(config)), server_name)),
            live: tokio::sync::Mutex::new(None),
        })
    }

    /// Makes sure a connection to `remote` is open and known to the transport
    /// layer (opening one if the last was closed), so the request about to be
    /// sent travels on it. It is known by the address `remote` resolves to,
    /// as the transport layer looks connections up.
    pub(super) async fn ensure(
        &self,
        layer: &TransportLayer,
        remote: &SipAddr,
    ) -> Result<(), LinkError> {
        let mut live = self.live.lock().await;
        if let Some(conn) = live.as_ref() {
            let closed = conn.cancel_token().is_some_and(|t| t.is_cancelled());
            if !closed {
                return Ok(());
            }
        }
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(remote))
            .await
            .map_err(|_| LinkError::Connect(format!("connecting to {remote} timed out")))??;
        layer.add_connection(conn.clone());
        *live = Some(conn);
        Ok(())
    }

    /// herald's end of the open connection (for a Via and a Contact).
    pub(super) async fn local_addr(&self) -> Option<SipAddr> {
        self.live
            .lock()
            .await
            .as_ref()
            .map(|c| c.get_addr().clone())
    }

    async fn connect(&self, remote: &SipAddr) -> Result<SipConnection, LinkError> {
        let host_port = remote.addr.to_string();
        let addr: SocketAddr = tokio::net::lookup_host(&host_port)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| LinkError::Connect(format!("cannot resolve {host_port}")))?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| LinkError::Connect(format!("TCP connect to {addr}: {e}")))?;
        tcp.set_nodelay(true).ok();
        // Its own token: the transport layer cancels it when the connection
        // closes (then `ensure` opens another) and closes it at shutdown.
        let token = CancellationToken::new();
        let Some((connector, server_name)) = &self.tls else {
            let local = SipAddr {
                r#type: Some(Transport::Tcp),
                addr: tcp
                    .local_addr()
                    .map_err(|e| LinkError::Connect(format!("TCP to {addr}: {e}")))?
                    .into(),
            };
            let conn = TcpConnection::from_stream(tcp, local, Some(token))
                .map_err(|e| LinkError::Connect(format!("TCP to {addr}: {e}")))?;
            return Ok(SipConnection::Tcp(conn));
        };
        let stream = connector
            .connect(server_name.clone(), tcp)
            .await
            .map_err(|e| {
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
                {
                    Some(tls) if is_certificate_error(tls) => LinkError::Certificate(format!(
                        "the TLS certificate of {host_port} is refused: {tls}"
                    )),
                    _ => LinkError::Connect(format!("TLS handshake with {host_port}: {e}")),
                }
            })?;
        let resolved = SipAddr {
            r#type: Some(Transport::Tls),
            addr: addr.into(),
        };
        let conn = TlsConnection::from_client_stream(stream, resolved, Some(token))
            .await
            .map_err(|e| LinkError::Connect(format!("TLS connection to {host_port}: {e}")))?;
        Ok(SipConnection::Tls(conn))
    }
}

fn is_certificate_error(e: &tokio_rustls::rustls::Error) -> bool {
    use tokio_rustls::rustls::Error as E;
    matches!(
        e,
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType
    )
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Certificate(s) | LinkError::Connect(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (its key was thrown away).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBkjCCATmgAwIBAgIUBshMhI8Jq5Lt+wisazjET30H0/MwCgYIKoZIzj0EAwIw\nHjEcMBoGA1UEAwwTaGVyYWxkIHVuaXQgdGVzdCBDQTAgFw0yNjEyMDUyMzUxNTZa\nGA8yMTI2MTExMTIzNTE1NlowHjEcMBoGA1UEAwwTaGVyYWxkIHVuaXQgdGVzdCBD\nQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKep+6lNprrtdZIJavPjfwscDwj7\nETma+rT0CbHQZMVxrzdT4y9LlIUN+c4Ga0HkbeYF9e0FMsQO0nbxeuOgbTijUzBR\nMB0GA1UdDgQWBBQKGb7dR/QRxyF6xRHCGUIV6zye4jAfBgNVHSMEGDAWgBQKGb7d\nR/QRxyF6xRHCGUIV6zye4jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA\nMEQCIBiIBPY76x/86n3elqhBZ7WDEMHPjBOp67iA4sNDo86iAiBIwU39fi1Q1YOq\nrpB57g1s7r5DZnOAztcNXyG0jAiEcA==\n-----END CERTIFICATE-----\n";

    fn host(s: &str) -> HostWithPort {
        Uri::try_from(format!("sip:{s}").as_str())
            .unwrap()
            .host_with_port
    }

    #[test]
    fn each_transport_writes_its_uri_and_destination() {
        let h = host("127.0.0.1:5070");
        assert_eq!(
            SipTransport::Udp.uri(Some("+1555"), &h),
            "sip:+1555@127.0.0.1:5070"
        );
        assert_eq!(
            SipTransport::Tcp.uri(Some("+1555"), &h),
            "sip:+1555@127.0.0.1:5070;transport=tcp"
        );
        assert_eq!(SipTransport::Tls.uri(None, &h), "sips:127.0.0.1:5070");
        let proxy = Uri::try_from("sip:carrier.example").unwrap();
        assert!(SipTransport::Udp.destination(&proxy).is_none());
        let tls = SipTransport::Tls.destination(&proxy).unwrap();
        assert_eq!(tls.r#type, Some(Transport::Tls));
        assert_eq!(tls.addr.to_string(), "carrier.example:5061");
        let tcp = SipTransport::Tcp.destination(&proxy).unwrap();
        assert_eq!(tcp.addr.to_string(), "carrier.example:5060");
    }

    #[test]
    fn an_ipv6_proxy_is_checked_against_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let cfg = TrunkConfig {
            tls_ca_file: ca.display().to_string(),
            ..TrunkConfig::default()
        };
        let proxy = Uri::try_from("sips:[::1]:5061").unwrap();
        let link = TrunkLink::tls("t", &cfg, &proxy).unwrap();
        let (_, name) = link.tls.as_ref().unwrap();
        assert_eq!(name.to_str(), "::1");
    }

    #[test]
    fn an_unreadable_ca_file_says_so_without_saying_whether_it_exists() {
        let cfg = TrunkConfig {
            tls_ca_file: "/nonexistent/ca.pem".into(),
            ..TrunkConfig::default()
        };
        let proxy = Uri::try_from("sips:127.0.0.1:5061").unwrap();
        let err = TrunkLink::tls("t", &cfg, &proxy).err().unwrap().to_string();
        assert_eq!(err, "trunks.t.tls_ca_file: cannot be read as a PEM file");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let cfg = TrunkConfig {
            tls_ca_file: junk.display().to_string(),
            ..cfg
        };
        let err = TrunkLink::tls("t", &cfg, &proxy).err().unwrap().to_string();
        assert_eq!(err, "trunks.t.tls_ca_file: holds no PEM certificate");
    }
}
