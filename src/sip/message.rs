//! One out-of-dialog SIP MESSAGE (RFC 3428): a non-INVITE client transaction
//! through a trunk, its authenticated retry, and its final response.
//!
//! Owns: where the MESSAGE goes and as whom (Request-URI and To from the
//! destination as `tel` calls are dialed, From from the sender or the
//! trunk's `from_user`/`from_domain`), the request itself
//! (`Content-Type: text/plain;charset=UTF-8`), answering a 401/407 with the
//! trunk's credentials, and reading the final response into a
//! [`MessageResult`]. Must not: decide what a response means for the message
//! (the messaging transport does), retry a refused or unanswered MESSAGE, or
//! log the body.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::headers::CallId;
use rsipstack::sip::typed::{From as FromHeader, To as ToHeader};
use rsipstack::sip::uri::Auth;
use rsipstack::sip::{Header, Method, Param, Request, Response, SipMessage, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::{make_tag, Transaction};
use tracing::debug;

use super::auth;
use super::classify::parse_retry_after;
use super::stack::{header_values, is_local_timeout};
use super::target::{host_port, parse_uri, tel_request_uri, trunk_credential};
use super::trunk::Trunk;
use super::{MessageError, MessageResult};
use crate::config::Secret;

/// The body's media type (RFC 3428 §7: text/plain is what every UA takes).
const CONTENT_TYPE: &str = "text/plain;charset=UTF-8";

/// Where a MESSAGE goes and as whom, checked before anything is sent.
#[derive(Debug)]
pub(super) struct MessageTarget {
    pub(super) request_uri: Uri,
    pub(super) from_uri: Uri,
    pub(super) credential: Option<(String, Secret)>,
}

/// Resolves a MESSAGE's destination: an E.164 number goes to the proxy of
/// trunk `trunk` (which answers challenges with its credentials), a SIP URI
/// straight to its host (no credentials, From at herald's own address, as
/// SIP destinations are dialed). The From user is `sender` when given, else
/// the trunk's `from_user`.
pub(super) fn resolve(
    trunk: &str,
    sender: Option<&str>,
    to: &str,
    trunks: &BTreeMap<String, Arc<Trunk>>,
    advertised: SocketAddr,
) -> Result<MessageTarget, MessageError> {
    let sender = sender.map(str::trim).filter(|s| !s.is_empty());
    let (request_uri, user, domain, credential) =
        if to.starts_with("sip:") || to.starts_with("sips:") {
            let uri = parse_uri(to).map_err(MessageError::InvalidDestination)?;
            let user = sender.unwrap_or("herald").to_string();
            (uri, user, host_port(advertised), None)
        } else {
            let t = trunks
                .get(trunk)
                .ok_or_else(|| MessageError::UnknownTrunk(trunk.to_string()))?;
            if !t.cfg.transport.eq_ignore_ascii_case("udp") {
                return Err(MessageError::UnsupportedTransport {
                    trunk: trunk.to_string(),
                    transport: t.cfg.transport.clone(),
                });
            }
            let uri = tel_request_uri(t, to).map_err(MessageError::InvalidDestination)?;
            let user = sender.unwrap_or(&t.cfg.from_user).to_string();
            (uri, user, t.cfg.from_domain.clone(), trunk_credential(t))
        };
    if user.is_empty() || user.len() > 64 || user.chars().any(char::is_control) {
        return Err(MessageError::InvalidSender(user));
    }
    // The user is set after parsing: alphanumeric sender ids may hold
    // spaces, which the URI escapes when written (RFC 3261 §25.1).
    let mut from_uri = parse_uri(&format!("sip:herald@{domain}"))
        .map_err(|_| MessageError::InvalidSender(user.clone()))?;
    from_uri.auth = Some(Auth {
        user,
        password: None,
    });
    Ok(MessageTarget {
        request_uri,
        from_uri,
        credential,
    })
}

/// Sends the MESSAGE and waits for its final response (at most Timer F,
/// twice when a challenge is answered).
pub(super) async fn send(
    endpoint: EndpointInnerRef,
    target: MessageTarget,
    body: &str,
) -> MessageResult {
    let call_id = CallId::from(format!("{}@herald", uuid::Uuid::new_v4().simple()));
    let tag = make_tag();
    let uri = target.request_uri.to_string();
    let mut auth_header: Option<Header> = None;
    let mut rounds = 0u32;
    for seq in 1u32.. {
        let request = match build(
            &endpoint,
            &target,
            &call_id,
            &tag,
            seq,
            body,
            auth_header.take(),
        ) {
            Ok(r) => r,
            Err(e) => return MessageResult::NotSent(e),
        };
        let resp = match transact(&endpoint, request, None).await {
            Ok(Some(resp)) => resp,
            Ok(None) => return MessageResult::TimedOut,
            Err(e) => return MessageResult::NotSent(e),
        };
        if is_local_timeout(&resp) {
            return MessageResult::TimedOut;
        }
        let status = resp.status_code.code();
        if status == 401 || status == 407 {
            if let Some(credential) = &target.credential {
                if let Some(h) = auth::answer_challenge(&resp, credential, "MESSAGE", &uri, rounds)
                {
                    rounds += 1;
                    auth_header = Some(h);
                    continue;
                }
            }
        }
        debug!(status, "MESSAGE answered");
        return replied(&resp);
    }
    MessageResult::NotSent("CSeq exhausted".into())
}

/// One MESSAGE request; every try shares the Call-ID and From tag, with the
/// next CSeq and a fresh Via branch (RFC 3261 §22.2).
fn build(
    endpoint: &EndpointInnerRef,
    target: &MessageTarget,
    call_id: &CallId,
    tag: &rsipstack::sip::param::Tag,
    seq: u32,
    body: &str,
    auth_header: Option<Header>,
) -> Result<Request, String> {
    let via = endpoint
        .get_via(None, None)
        .map_err(|e| format!("no Via for the MESSAGE: {e}"))?;
    let from = FromHeader {
        display_name: None,
        uri: target.from_uri.clone(),
        params: vec![Param::Tag(tag.clone())],
    };
    let to = ToHeader {
        display_name: None,
        uri: target.request_uri.clone(),
        params: vec![],
    };
    let mut request = endpoint.make_request(
        Method::Message,
        target.request_uri.clone(),
        via,
        from,
        to,
        seq,
        Some(call_id.clone()),
    );
    request
        .headers
        .push(Header::ContentType(CONTENT_TYPE.into()));
    if let Some(h) = auth_header {
        request.headers.push(h);
    }
    request.body = body.as_bytes().to_vec();
    Ok(request)
}

/// Runs one client transaction to its final response; `None` when it ended
/// without one.
pub(super) async fn transact(
    endpoint: &EndpointInnerRef,
    request: Request,
    destination: Option<rsipstack::transport::SipAddr>,
) -> Result<Option<Response>, String> {
    let method = request.method.to_string();
    let key = TransactionKey::from_request(&request, TransactionRole::Client)
        .map_err(|e| format!("{method} transaction key: {e}"))?;
    let mut tx = Transaction::new_client(key, request, endpoint.clone(), None);
    tx.destination = destination;
    tx.send()
        .await
        .map_err(|e| format!("{method} not sent: {e}"))?;
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(resp) = msg {
            if resp.status_code.code() >= 200 {
                return Ok(Some(resp));
            }
        }
    }
    Ok(None)
}

fn replied(resp: &Response) -> MessageResult {
    let reason = resp
        .wire_reason
        .clone()
        .unwrap_or_else(|| resp.status_code.text().to_string());
    MessageResult::Replied {
        status: resp.status_code.code(),
        reason,
        retry_after: header_values(&resp.headers, "retry-after")
            .first()
            .and_then(|v| parse_retry_after(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkConfig;

    fn trunks(username: &str) -> BTreeMap<String, Arc<Trunk>> {
        let cfg = TrunkConfig {
            proxy: "sip:10.0.0.1:5070".into(),
            transport: "udp".into(),
            from_user: "acct".into(),
            from_domain: "carrier.example".into(),
            caller_id: "+15550001111".into(),
            username: username.into(),
            password: Secret("p".into()),
            password_env: String::new(),
            max_concurrent_calls: 0,
            max_calls_per_second: 1,
            ..Default::default()
        };
        [("c".to_string(), Trunk::new("c", &cfg).unwrap())]
            .into_iter()
            .collect()
    }

    fn here() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    #[test]
    fn numbers_go_to_the_trunk_proxy_from_the_sender_or_the_trunk_user() {
        let ts = trunks("u");
        let t = resolve("c", Some("+15551112222"), "+15557654321", &ts, here()).unwrap();
        assert_eq!(t.request_uri.to_string(), "sip:+15557654321@10.0.0.1:5070");
        assert_eq!(t.from_uri.to_string(), "sip:+15551112222@carrier.example");
        assert_eq!(t.credential.as_ref().map(|c| c.0.as_str()), Some("u"));
        // A full trunk (max_concurrent_calls 0 here) does not hold messages back.
        let t = resolve("c", None, "+15557654321", &ts, here()).unwrap();
        assert_eq!(t.from_uri.to_string(), "sip:acct@carrier.example");
    }

    #[test]
    fn an_alphanumeric_sender_with_a_space_is_escaped() {
        let t = resolve("c", Some("My Clinic"), "+15557654321", &trunks(""), here()).unwrap();
        assert_eq!(t.from_uri.to_string(), "sip:My%20Clinic@carrier.example");
        assert!(t.credential.is_none());
    }

    #[test]
    fn sip_uris_go_straight_to_their_host_without_credentials() {
        let t = resolve("c", None, "sip:bob@pbx.example.com", &trunks("u"), here()).unwrap();
        assert_eq!(t.request_uri.to_string(), "sip:bob@pbx.example.com");
        assert_eq!(t.from_uri.to_string(), "sip:herald@127.0.0.1:5060");
        assert!(t.credential.is_none());
    }

    #[test]
    fn bad_destinations_senders_and_trunks_are_refused() {
        let ts = trunks("");
        assert!(matches!(
            resolve("zz", None, "+15557654321", &ts, here()),
            Err(MessageError::UnknownTrunk(_))
        ));
        assert!(matches!(
            resolve("c", None, "+1 555", &ts, here()),
            Err(MessageError::InvalidDestination(_))
        ));
        assert!(matches!(
            resolve("c", Some("a\r\nb"), "+15557654321", &ts, here()),
            Err(MessageError::InvalidSender(_))
        ));
    }
}
