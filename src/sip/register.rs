//! Registration of trunks that ask for it (`register = true`; RFC 3261 §10):
//! REGISTER at start, answered challenges with the trunk's digest
//! credentials (MD5 or SHA-256, as for INVITEs), a refresh before the granted
//! expiry, re-registration after a failure with backoff (1 s doubling to
//! 60 s, or the registrar's `Retry-After`), and REGISTER with `Expires: 0`
//! on a clean shutdown.
//!
//! Owns: the trunk's registration state (read by the campaigns, which wait
//! while their trunk is not registered, by `GET /v1/trunks` and by
//! `/metrics`). Must not: log the password (the hashing is `digest`'s).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rsipstack::sip::headers::CallId;
use rsipstack::sip::typed::{From as FromHeader, To as ToHeader};
use rsipstack::sip::uri::Auth;
use rsipstack::sip::{Header, Method, Param, Request, Response, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::make_tag;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth;
use super::classify::parse_retry_after;
use super::message::transact;
use super::stack::{header_values, is_local_timeout};
use super::target::{host_port, parse_uri, trunk_credential};
use super::trunk::Trunk;

/// Where a trunk's registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// The first REGISTER is on its way.
    Registering,
    Registered,
    /// The last REGISTER failed; another follows after the backoff.
    Failed,
    /// Unregistered at shutdown.
    Unregistered,
}

impl RegState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegState::Registering => "registering",
            RegState::Registered => "registered",
            RegState::Failed => "failed",
            RegState::Unregistered => "unregistered",
        }
    }
}

/// A trunk's registration as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub state: RegState,
    /// Until when the registrar keeps the binding (registered).
    pub expires_at: Option<DateTime<Utc>>,
    /// Why the last REGISTER failed (a status line, a timeout).
    pub error: Option<String>,
    /// When the state last changed.
    pub since: DateTime<Utc>,
}

impl Registration {
    pub(super) fn starting() -> Registration {
        Registration {
            state: RegState::Registering,
            expires_at: None,
            error: None,
            since: Utc::now(),
        }
    }
}

/// What one REGISTER came to.
#[derive(Debug)]
enum Outcome {
    /// 2xx: the expiry the registrar granted, in seconds.
    Granted(u32),
    /// Refused or unanswered; the registrar's `Retry-After`, if any.
    Failed(String, Option<Duration>),
}

/// The REGISTER's fixed parts for one trunk.
struct Binding {
    registrar: Uri,
    aor: Uri,
    /// The user of the Contact.
    user: String,
    contact: String,
    credential: Option<(String, crate::config::Secret)>,
    call_id: CallId,
    tag: rsipstack::sip::param::Tag,
    /// Where the REGISTERs go on TCP and TLS.
    destination: Option<rsipstack::transport::SipAddr>,
}

/// The registrar URI of a trunk: `registrar`, else its proxy.
pub(super) fn registrar_of(t: &Trunk) -> Result<Uri, String> {
    let r = if t.cfg.registrar.is_empty() {
        &t.cfg.proxy
    } else {
        &t.cfg.registrar
    };
    parse_uri(r)
}

/// Keeps `trunk` registered until `shutdown`, then unregisters it.
pub(super) async fn keep_registered(
    endpoint: EndpointInnerRef,
    trunk: Arc<Trunk>,
    advertised: SocketAddr,
    shutdown: CancellationToken,
) {
    let registrar = match registrar_of(&trunk) {
        Ok(u) => u,
        Err(e) => {
            trunk.set_registration(RegState::Failed, None, Some(e));
            return;
        }
    };
    let user = if trunk.cfg.from_user.is_empty() {
        "herald".to_string()
    } else {
        trunk.cfg.from_user.clone()
    };
    let Ok(mut aor) = parse_uri(&format!("sip:herald@{}", trunk.cfg.from_domain)) else {
        trunk.set_registration(
            RegState::Failed,
            None,
            Some(format!(
                "from_domain {:?} is not a SIP host",
                trunk.cfg.from_domain
            )),
        );
        return;
    };
    aor.auth = Some(Auth {
        user: user.clone(),
        password: None,
    });
    let b = Binding {
        destination: trunk.transport.destination(&registrar),
        registrar,
        aor,
        contact: format!("<sip:{user}@{}>", host_port(advertised)),
        user: user.clone(),
        credential: trunk_credential(&trunk),
        call_id: CallId::from(format!("{}@herald", uuid::Uuid::new_v4().simple())),
        tag: make_tag(),
    };
    let expires = trunk.cfg.register_expires_s.max(1);
    let mut seq = 0u32;
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            o = register_on(&endpoint, &trunk, &b, &mut seq, expires) => o,
            _ = shutdown.cancelled() => break,
        };
        let wait = match outcome {
            Outcome::Granted(granted) => {
                if failures > 0
                    || trunk.registration().map(|r| r.state) != Some(RegState::Registered)
                {
                    info!(trunk = %trunk.name, expires = granted, "trunk registered");
                }
                failures = 0;
                let until = Utc::now() + chrono::Duration::seconds(granted.into());
                trunk.set_registration(RegState::Registered, Some(until), None);
                refresh_after(granted)
            }
            Outcome::Failed(why, retry_after) => {
                warn!(trunk = %trunk.name, error = %why, "registration failed");
                trunk.set_registration(RegState::Failed, None, Some(why));
                failures += 1;
                retry_after.unwrap_or_else(|| backoff(failures))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    let registered = trunk.registration().map(|r| r.state) == Some(RegState::Registered);
    if registered {
        let unregister = register_on(&endpoint, &trunk, &b, &mut seq, 0);
        match tokio::time::timeout(UNREGISTER_WAIT, unregister).await {
            Ok(Outcome::Granted(_)) => info!(trunk = %trunk.name, "trunk unregistered"),
            Ok(Outcome::Failed(why, _)) => {
                warn!(trunk = %trunk.name, error = %why, "unregistering failed")
            }
            Err(_) => warn!(trunk = %trunk.name, "unregistering timed out"),
        }
        trunk.set_registration(RegState::Unregistered, None, None);
    }
}

/// How long shutdown waits for the unregistering REGISTER.
const UNREGISTER_WAIT: Duration = Duration::from_secs(5);

/// Refresh at 75% of the granted expiry (at least 1 s ahead of it when it is
/// that short).
pub(super) fn refresh_after(granted: u32) -> Duration {
    Duration::from_millis((u64::from(granted) * 750).max(500))
}

/// 1 s after the first failure, doubling to 60 s.
pub(super) fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(6)).min(60))
}

/// One REGISTER (and its answers to challenges) to its final response.
/// As [`register`], first opening the trunk's connection if it is a TCP or
/// TLS trunk and none is open.
async fn register_on(
    endpoint: &EndpointInnerRef,
    trunk: &Trunk,
    b: &Binding,
    seq: &mut u32,
    expires: u32,
) -> Outcome {
    let mut local = None;
    if let (Some(link), Some(dest)) = (trunk.link.as_ref(), b.destination.as_ref()) {
        if let Err(e) = link.ensure(&endpoint.transport_layer, dest).await {
            return Outcome::Failed(e.to_string(), None);
        }
        local = link.local_addr().await;
    }
    register(endpoint, b, seq, expires, local.as_ref()).await
}

/// One REGISTER with its challenge answered; `local`: herald's end of the
/// trunk's TCP or TLS connection, for the Via and the Contact.
async fn register(
    endpoint: &EndpointInnerRef,
    b: &Binding,
    seq: &mut u32,
    expires: u32,
    local: Option<&rsipstack::transport::SipAddr>,
) -> Outcome {
    let uri = b.registrar.to_string();
    let mut auth_header: Option<Header> = None;
    let mut rounds = 0u32;
    loop {
        *seq += 1;
        let request = match build(endpoint, b, *seq, expires, auth_header.take(), local) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e, None),
        };
        let resp = match transact(endpoint, request, b.destination.clone()).await {
            Ok(Some(resp)) if !is_local_timeout(&resp) => resp,
            Ok(_) => return Outcome::Failed("no answer from the registrar".into(), None),
            Err(e) => return Outcome::Failed(e, None),
        };
        let status = resp.status_code.code();
        if status == 401 || status == 407 {
            if let Some(credential) = &b.credential {
                if let Some(h) = auth::answer_challenge(&resp, credential, "REGISTER", &uri, rounds)
                {
                    rounds += 1;
                    auth_header = Some(h);
                    continue;
                }
            }
        }
        if (200..300).contains(&status) {
            return Outcome::Granted(granted_expiry(&resp, expires));
        }
        let reason = resp
            .wire_reason
            .clone()
            .unwrap_or_else(|| resp.status_code.text().to_string());
        let retry_after = header_values(&resp.headers, "retry-after")
            .first()
            .and_then(|v| parse_retry_after(v))
            .map(|d| d.min(Duration::from_secs(MAX_RETRY_AFTER_S)));
        return Outcome::Failed(format!("{status} {reason}"), retry_after);
    }
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER_S: u64 = 600;

/// The expiry a 2xx granted: the `expires` parameter of a Contact, else the
/// `Expires` header, else what was asked.
fn granted_expiry(resp: &Response, asked: u32) -> u32 {
    let from_contact = header_values(&resp.headers, "contact")
        .iter()
        .find_map(|c| {
            c.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| v.trim().parse::<u32>().ok())?
            })
        });
    from_contact
        .or_else(|| {
            header_values(&resp.headers, "expires")
                .first()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(asked)
}

fn build(
    endpoint: &EndpointInnerRef,
    b: &Binding,
    seq: u32,
    expires: u32,
    auth_header: Option<Header>,
    local: Option<&rsipstack::transport::SipAddr>,
) -> Result<Request, String> {
    let via = endpoint
        .get_via(local.cloned(), None)
        .map_err(|e| format!("no Via for the REGISTER: {e}"))?;
    let contact = match local {
        Some(a) => {
            let tls = a.r#type == Some(rsipstack::sip::transport::Transport::Tls);
            let (scheme, t) = if tls { ("sips", "tls") } else { ("sip", "tcp") };
            format!("<{scheme}:{}@{};transport={t}>", b.user, a.addr)
        }
        None => b.contact.clone(),
    };
    let from = FromHeader {
        display_name: None,
        uri: b.aor.clone(),
        params: vec![Param::Tag(b.tag.clone())],
    };
    let to = ToHeader {
        display_name: None,
        uri: b.aor.clone(),
        params: vec![],
    };
    let mut request = endpoint.make_request(
        Method::Register,
        b.registrar.clone(),
        via,
        from,
        to,
        seq,
        Some(b.call_id.clone()),
    );
    request.headers.push(Header::Contact(contact.into()));
    request
        .headers
        .push(Header::Expires(expires.to_string().into()));
    if let Some(h) = auth_header {
        request.headers.push(h);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    #[test]
    fn refreshes_come_before_the_expiry_and_failures_back_off() {
        assert_eq!(refresh_after(3600), Duration::from_secs(2700));
        assert_eq!(refresh_after(2), Duration::from_millis(1500));
        assert_eq!(refresh_after(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn the_granted_expiry_comes_from_the_contact_then_the_header() {
        let resp = |headers: &str| -> Response {
            let raw = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\
                 {headers}Content-Length: 0\r\n\r\n"
            );
            match SipMessage::try_from(raw.as_str()).unwrap() {
                SipMessage::Response(r) => r,
                SipMessage::Request(_) => unreachable!("a response"),
            }
        };
        assert_eq!(
            granted_expiry(
                &resp("Contact: <sip:h@1.2.3.4>;expires=60\r\nExpires: 90\r\n"),
                3600
            ),
            60
        );
        assert_eq!(granted_expiry(&resp("Expires: 90\r\n"), 3600), 90);
        assert_eq!(granted_expiry(&resp(""), 3600), 3600);
    }
}
