//! Where a call goes and as whom: an [`OriginateRequest`] checked and
//! turned into URIs, credentials and a trunk slot, before anything is sent.
//!
//! Owns: E.164 and URI validation, the trunk lookup and its concurrency slot,
//! the From/Contact identities. Must not: send, or log the password.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::Uri;

use super::trunk::{Trunk, TrunkSlot};
use super::{DialDestination, OriginateError, OriginateRequest};
use crate::config::Secret;

/// Where and how to call, resolved from an [`OriginateRequest`].
pub(super) struct Target {
    pub(super) attempt_id: String,
    pub(super) request_uri: Uri,
    pub(super) from_uri: Uri,
    pub(super) contact: Uri,
    pub(super) headers: Vec<(String, String)>,
    pub(super) credential: Option<(String, Secret)>,
    pub(super) ring_timeout: Duration,
    pub(super) max_duration: Duration,
    /// The trunk a `tel` call goes through (its transport and TLS side).
    pub(super) trunk: Option<Arc<Trunk>>,
    _slot: Option<TrunkSlot>,
}

/// Checks the request and takes a trunk slot; nothing is sent yet.
pub(super) fn resolve(
    req: OriginateRequest,
    trunks: &BTreeMap<String, Arc<Trunk>>,
    advertised: SocketAddr,
) -> Result<Target, OriginateError> {
    let host = host_port(advertised);
    let contact = parse_uri(&format!("sip:herald@{host}"))
        .map_err(|_| OriginateError::InvalidCallerId(host.clone()))?;
    let mut via = None;
    let (request_uri, from_user, from_domain, credential, slot) = match &req.destination {
        DialDestination::Tel { number, trunk } => {
            let t = trunks
                .get(trunk)
                .ok_or_else(|| OriginateError::UnknownTrunk(trunk.clone()))?;
            let uri = tel_request_uri(t, number).map_err(OriginateError::InvalidDestination)?;
            let caller = req
                .caller_id
                .clone()
                .unwrap_or_else(|| t.cfg.caller_id.clone());
            let user = if caller.is_empty() {
                t.cfg.from_user.clone()
            } else {
                caller
            };
            let credential = trunk_credential(t);
            let slot = t.try_acquire().ok_or_else(|| OriginateError::TrunkBusy {
                trunk: trunk.clone(),
                limit: t.cfg.max_concurrent_calls,
            })?;
            via = Some(t.clone());
            (uri, user, t.cfg.from_domain.clone(), credential, Some(slot))
        }
        DialDestination::Sip { uri } => {
            let uri = parse_uri(uri).map_err(OriginateError::InvalidDestination)?;
            let user = req
                .caller_id
                .clone()
                .unwrap_or_else(|| "herald".to_string());
            (uri, user, host.clone(), None, None)
        }
    };
    if !from_user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c))
    {
        return Err(OriginateError::InvalidCallerId(from_user));
    }
    let from_uri = parse_uri(&format!("sip:{from_user}@{from_domain}"))
        .map_err(|_| OriginateError::InvalidCallerId(from_user.clone()))?;
    Ok(Target {
        attempt_id: req.attempt_id,
        request_uri,
        from_uri,
        contact,
        headers: req.headers,
        credential,
        ring_timeout: req.ring_timeout,
        max_duration: req.max_duration,
        trunk: via,
        _slot: slot,
    })
}

/// `sip:NUMBER@PROXY`, the Request-URI of an E.164 `number` sent through
/// trunk `t` (calls and MESSAGEs alike).
pub(super) fn tel_request_uri(t: &Trunk, number: &str) -> Result<Uri, String> {
    if !is_dialable_number(number) {
        return Err(format!("{number:?} is not an E.164 number"));
    }
    let proxy =
        parse_uri(&t.cfg.proxy).map_err(|e| format!("trunk proxy {:?}: {e}", t.cfg.proxy))?;
    parse_uri(&t.transport.uri(Some(number), &proxy.host_with_port))
}

/// The trunk's digest credentials, when it has a username and a password.
pub(super) fn trunk_credential(t: &Trunk) -> Option<(String, Secret)> {
    match (&t.password, t.cfg.username.is_empty()) {
        (Some(p), false) => Some((t.cfg.username.clone(), p.clone())),
        _ => None,
    }
}

fn is_dialable_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

pub(super) fn parse_uri(s: &str) -> Result<Uri, String> {
    if !s.starts_with("sip:") && !s.starts_with("sips:") {
        return Err(format!("{s:?} is not a sip: URI"));
    }
    Uri::try_from(s).map_err(|e| format!("{s:?} is not a valid SIP URI: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkConfig;
    use std::time::Duration;

    fn trunks(transport: &str, username: &str, password: &str) -> BTreeMap<String, Arc<Trunk>> {
        let cfg = TrunkConfig {
            proxy: "sip:10.0.0.1:5070".into(),
            transport: transport.into(),
            from_user: "acct".into(),
            from_domain: "carrier.example".into(),
            caller_id: "+15550001111".into(),
            username: username.into(),
            password: Secret(password.into()),
            password_env: String::new(),
            max_concurrent_calls: 1,
            max_calls_per_second: 1,
            ..Default::default()
        };
        [("c".to_string(), Trunk::new("c", &cfg).unwrap())]
            .into_iter()
            .collect()
    }

    fn req(dest: DialDestination, caller_id: Option<&str>) -> OriginateRequest {
        OriginateRequest {
            attempt_id: "a1".into(),
            destination: dest,
            caller_id: caller_id.map(str::to_string),
            ring_timeout: Duration::from_secs(1),
            max_duration: Duration::from_secs(1),
            headers: vec![],
        }
    }

    fn tel(number: &str) -> DialDestination {
        DialDestination::Tel {
            number: number.into(),
            trunk: "c".into(),
        }
    }

    const HERE: &str = "127.0.0.1:5060";

    #[test]
    fn tel_goes_to_the_trunk_proxy_with_the_trunk_caller_id_and_credentials() {
        let t = resolve(
            req(tel("+15557654321"), None),
            &trunks("udp", "u", "p"),
            HERE.parse().unwrap(),
        )
        .unwrap();
        assert_eq!(t.request_uri.to_string(), "sip:+15557654321@10.0.0.1:5070");
        assert_eq!(t.from_uri.to_string(), "sip:+15550001111@carrier.example");
        assert_eq!(t.contact.to_string(), "sip:herald@127.0.0.1:5060");
        assert_eq!(t.credential.as_ref().map(|c| c.0.as_str()), Some("u"));
    }

    #[test]
    fn the_request_caller_id_wins_and_no_username_means_no_credentials() {
        let t = resolve(
            req(tel("15557654321"), Some("+4930123")),
            &trunks("UDP", "", "p"),
            HERE.parse().unwrap(),
        )
        .unwrap();
        assert_eq!(t.from_uri.to_string(), "sip:+4930123@carrier.example");
        assert!(t.credential.is_none());
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_sent() {
        let here: SocketAddr = HERE.parse().unwrap();
        let ts = trunks("udp", "", "");
        let err = |r| {
            resolve(r, &ts, here)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(req(tel("+1 555"), None)).contains("E.164"));
        assert!(err(req(tel("+1234567890123456"), None)).contains("E.164"));
        assert!(err(req(tel(""), None)).contains("E.164"));
        assert!(err(req(tel("+15551234567"), Some("bob\r\nX: y"))).contains("caller id"));
        let unknown = DialDestination::Tel {
            number: "+1555".into(),
            trunk: "zz".into(),
        };
        assert!(matches!(
            resolve(req(unknown, None), &ts, here),
            Err(OriginateError::UnknownTrunk(_))
        ));
        let sip = |u: &str| req(DialDestination::Sip { uri: u.into() }, None);
        assert!(err(sip("tel:+15551234567")).contains("not a sip: URI"));
        assert!(resolve(sip("sip:alice@pbx.example.com"), &ts, here).is_ok());
        let tcp = trunks("tcp", "", "");
        let t = resolve(req(tel("+15551234567"), None), &tcp, here).unwrap();
        assert_eq!(
            t.request_uri.to_string(),
            "sip:+15551234567@10.0.0.1:5070;transport=TCP"
        );
        assert_eq!(
            t.trunk
                .as_ref()
                .and_then(|t| t.destination.clone())
                .map(|d| d.to_string()),
            Some("TCP 10.0.0.1:5070".to_string())
        );
    }

    #[test]
    fn a_full_trunk_refuses_and_a_finished_call_frees_its_slot() {
        let ts = trunks("udp", "", "");
        let here: SocketAddr = HERE.parse().unwrap();
        let first = resolve(req(tel("+15551234567"), None), &ts, here).unwrap();
        assert!(matches!(
            resolve(req(tel("+15551234567"), None), &ts, here),
            Err(OriginateError::TrunkBusy { limit: 1, .. })
        ));
        drop(first);
        assert!(resolve(req(tel("+15551234567"), None), &ts, here).is_ok());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("[::1]:5060".parse().unwrap()), "[::1]:5060");
        assert_eq!(host_port("10.1.2.3:7".parse().unwrap()), "10.1.2.3:7");
    }
}
