//! A stored message's rendering read back as what a transport sends: the
//! sender's gate turns each claimed row into an [`Email`], [`Sms`] or
//! [`Whatsapp`] with these (a row they cannot read is `malformed`).

use serde_json::Value;

use super::transport::{Email, Mailbox, Sms, Whatsapp, WhatsappContent};

fn mailbox(v: &Value) -> Option<Mailbox> {
    Some(Mailbox {
        email: v.get("email")?.as_str()?.to_string(),
        name: v.get("name").and_then(Value::as_str).map(str::to_string),
    })
}

fn mailboxes(v: Option<&Value>) -> Vec<Mailbox> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(mailbox).collect())
        .unwrap_or_default()
}

pub(super) fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// An e-mail from its stored rendering (see `api::messages`).
pub fn email_from(id: uuid::Uuid, r: &Value) -> Option<Email> {
    Some(Email {
        id,
        message_id: text(r, "message_id")?,
        from: mailbox(r.get("from")?)?,
        to: mailboxes(r.get("to")),
        cc: mailboxes(r.get("cc")),
        bcc: mailboxes(r.get("bcc")),
        reply_to: r.get("reply_to").and_then(mailbox),
        subject: text(r, "subject")?,
        body_html: text(r, "body_html"),
        body_text: text(r, "body_text"),
        return_path: text(r, "return_path")?,
        list_unsubscribe: text(r, "list_unsubscribe"),
    })
}

/// An SMS from its stored rendering.
pub fn sms_from(id: uuid::Uuid, r: &Value) -> Option<Sms> {
    Some(Sms {
        id,
        from: text(r, "from")?,
        to: text(r, "to")?,
        body: text(r, "body")?,
    })
}

/// A WhatsApp message from its rendering: `{"to", "type": "template",
/// "template": {"name", "language", "parameters"}}` or `{"to", "type":
/// "text", "body"}`.
pub fn whatsapp_from(id: uuid::Uuid, r: &Value) -> Option<Whatsapp> {
    let content = match r.get("type").and_then(Value::as_str)? {
        "template" => {
            let t = r.get("template")?;
            WhatsappContent::Template {
                name: text(t, "name")?,
                language: text(t, "language")?,
                parameters: t
                    .get("parameters")?
                    .as_array()?
                    .iter()
                    .map(|p| p.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
            }
        }
        "text" => WhatsappContent::Text {
            body: text(r, "body")?,
        },
        _ => return None,
    };
    Some(Whatsapp {
        id,
        to: text(r, "to")?,
        content,
    })
}
