//! SIP MESSAGE requests to herald (RFC 3428, out of dialog): a phone's
//! text, handed to whoever takes them (the inbox) and answered 200 only
//! once it is kept, else 500 so the sender tries again; 405 while nobody
//! takes them, 415 for a body that is not text.

use std::sync::{Arc, OnceLock};

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::stack::header_values;

/// A text a phone sent.
#[derive(Debug)]
pub struct SipInbound {
    /// The From and To URIs' user parts (numbers, as sent).
    pub from: String,
    pub to: String,
    pub body: String,
    /// The Call-ID and CSeq number: the same request sent again is kept once.
    pub id: String,
    /// Answer true once kept.
    pub kept: oneshot::Sender<bool>,
}

/// Where received MESSAGEs go, once someone takes them.
pub(super) type MessageSink = Arc<OnceLock<mpsc::Sender<SipInbound>>>;

/// The user part of a name-addr or addr-spec (`"Bo" <sip:+1555@host>;tag=x`).
pub fn uri_user(value: &str) -> Option<String> {
    let start = value
        .find("sip:")
        .map(|i| i + 4)
        .or_else(|| value.find("sips:").map(|i| i + 5))
        .or_else(|| value.find("tel:").map(|i| i + 4))?;
    let rest = &value[start..];
    let end = rest.find(['@', ';', '>', '?']).unwrap_or(rest.len());
    let user = rest[..end].trim();
    (!user.is_empty() && user.len() <= 64).then(|| user.to_string())
}

/// Answers one MESSAGE (on its own task).
pub(super) async fn handle(mut tx: Transaction, sink: mpsc::Sender<SipInbound>) {
    let req = &tx.original;
    let content_type = header_values(&req.headers, "content-type")
        .first()
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_else(|| "text/plain".into());
    let from = req.from_header().ok().and_then(|h| uri_user(h.value()));
    let to = req.to_header().ok().and_then(|h| uri_user(h.value()));
    let call_id = req
        .call_id_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let cseq = req
        .cseq_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let status = match (from, to, content_type.starts_with("text/")) {
        (_, _, false) => StatusCode::UnsupportedMediaType,
        (Some(from), Some(to), true) => {
            // The text, without the line break some senders end a body with.
            let body = String::from_utf8_lossy(&req.body)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let (kept, answer) = oneshot::channel();
            let m = SipInbound {
                from,
                to,
                body,
                id: format!("{call_id}/{cseq}"),
                kept,
            };
            match sink.send(m).await {
                Ok(()) if answer.await == Ok(true) => StatusCode::OK,
                _ => StatusCode::ServerInternalError,
            }
        }
        _ => StatusCode::BadRequest,
    };
    let headers: Vec<Header> = Vec::new();
    if let Err(e) = tx.reply_with(status, headers, None).await {
        // The sender's request was too broken to answer (see sip::stack::reply).
        debug!(error = %e, "replying to a MESSAGE failed");
    }
}

#[cfg(test)]
mod tests {
    use super::uri_user;

    #[test]
    fn user_parts_come_from_name_addrs_and_addr_specs() {
        assert_eq!(
            uri_user("\"Bo\" <sip:+15551230001@10.0.0.1:5060>;tag=1").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(
            uri_user("sip:15550009999@host").as_deref(),
            Some("15550009999")
        );
        assert_eq!(
            uri_user("<tel:+15551230001>").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(uri_user("<sip:host>").as_deref(), Some("host"));
        assert_eq!(uri_user("nothing"), None);
    }
}
