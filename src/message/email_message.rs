//! The one builder that turns an [`Email`] into its RFC 5322 message (lettre's
//! [`Message`]: headers, bodies and the SMTP envelope), shared by the
//! [`smtp`](super::smtp) and [`file`](super::file) transports so the outbox
//! shows what SMTP would send.
//!
//! Owns: which headers an e-mail carries and the checks that keep header
//! values from injecting others. Pure: no I/O.
//!
//! Must not: send, or decide anything about recipients (suppression is the
//! sender's gate).

use lettre::address::{Address, Envelope};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, MultiPart, SinglePart};
use lettre::Message;

use super::transport::{Email, Mailbox};

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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
