//! A send request (`POST /v1/emails`, `POST /v1/sms`) parsed once into a
//! typed request (pure). The typed request serialises back to the API's own
//! field names, so the store keeps it as JSON and a `PATCH` is a JSON merge
//! patch over it, parsed again by the same code.
//!
//! Must not: render templates or look anything up (the handler resolves the
//! template; [`crate::message::template`] renders).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::destination::validate_e164;
use crate::domain::fields::Fields;
use crate::domain::window::CallingWindow;
use crate::domain::FieldError;

/// Recipients of one e-mail (to, cc and bcc together) at most.
pub const MAX_EMAIL_RECIPIENTS: usize = 50;
/// Longest subject, raw or rendered.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Longest raw e-mail body (each of html and text).
pub const MAX_EMAIL_BODY_CHARS: usize = 256 * 1024;
/// Longest raw SMS body (the segment limit applies after rendering).
pub const MAX_SMS_BODY_CHARS: usize = 1600;
/// Template variables, serialised, at most.
pub const MAX_VARIABLES_BYTES: usize = 64 * 1024;
/// Retries of one message at most.
pub const MAX_RETRIES: i64 = 20;
const MAX_KEY_CHARS: usize = 255;

/// One e-mail address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    #[default]
    Transactional,
    Marketing,
}

/// What a message says: a template (by id or code) and its variables, or
/// raw content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub template_variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// When and how often: common to every channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Epoch milliseconds (an RFC 3339 string in JSON, as the API takes it).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_ms")]
    pub scheduled_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_window: Option<CallingWindow>,
    pub max_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// `emergency`, `transactional` or `marketing`; `None`: the channel's
    /// default (marketing e-mail is `marketing`, else `transactional`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl Delivery {
    /// The stored priority (0 emergency, 1 transactional, 2 marketing).
    pub fn rank(&self, marketing: bool) -> i64 {
        match self.priority.as_deref() {
            Some(p) => priority_rank(p),
            None if marketing => 2,
            None => 1,
        }
    }
}

/// A priority's stored rank (0 emergency, 1 transactional, 2 marketing).
pub fn priority_rank(priority: &str) -> i64 {
    match priority {
        "emergency" => 0,
        "marketing" => 2,
        _ => 1,
    }
}

/// `Option<i64>` epoch milliseconds as an RFC 3339 string.
mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v.and_then(chrono::DateTime::from_timestamp_millis) {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|s| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.timestamp_millis())
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailRequest {
    pub to: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Address>,
    #[serde(default)]
    pub category: Category,
    #[serde(flatten)]
    pub content: Content,
    #[serde(flatten)]
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsRequest {
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(flatten)]
    pub content: Content,
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// A minimal address check: one `@`, a local part and a dotted or single
/// label domain of letters, digits and hyphens; no spaces or control
/// characters; at most 254 characters. Lower-cased for comparison.
pub fn validate_email(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 254 {
        return Err("must be at most 254 characters".into());
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(format!("{s:?} is not an e-mail address: it has no '@'"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(format!(
            "{s:?} is not an e-mail address: the part before '@' must have 1 to 64 characters"
        ));
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(format!(
            "{s:?} is not an e-mail address: the part before '@' has a character that needs quoting"
        ));
    }
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return Err(format!(
            "{s:?} is not an e-mail address: {domain:?} is not a domain name"
        ));
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn address(v: &Value, field: &str) -> Result<Address, FieldError> {
    let f = Fields::new(v, field)?;
    f.deny_unknown(&["email", "name"])?;
    let email = validate_email(f.str_req("email")?).map_err(|r| f.err("email", r))?;
    let name = f
        .str_max("name", 200)?
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Ok(Address { email, name })
}

fn addresses(f: &Fields<'_>, key: &str) -> Result<Vec<Address>, FieldError> {
    let mut out = Vec::new();
    for (i, v) in f.array_opt(key)?.into_iter().flatten().enumerate() {
        out.push(address(v, &format!("{}[{i}]", f.path_of(key)))?);
    }
    Ok(out)
}

/// An SMS sender: E.164, or an alphanumeric sender id (1–11 letters,
/// digits and spaces, at least one letter).
pub fn validate_sms_sender(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with('+') {
        validate_e164(s)?;
        return Ok(s.to_string());
    }
    let ok = (1..=11).contains(&s.chars().count())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && s.chars().any(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is neither E.164 nor an alphanumeric sender id (1 to 11 letters, digits or spaces, with a letter)"
        ))
    }
}

fn content(f: &Fields<'_>, channel_keys: &[&str]) -> Result<Content, FieldError> {
    let template_id = f
        .str_max("template_id", MAX_KEY_CHARS)?
        .map(|s| s.trim().to_string());
    let template_variables = f.map_opt("template_variables", MAX_VARIABLES_BYTES)?;
    let raw_given: Vec<&str> = channel_keys.iter().copied().filter(|k| f.has(k)).collect();
    if let Some(t) = &template_id {
        if t.is_empty() {
            return Err(f.err("template_id", "must not be empty"));
        }
        if let Some(k) = raw_given.first() {
            return Err(f.err(k, "give either template_id or raw content, not both"));
        }
    } else {
        if !template_variables.is_empty() {
            return Err(f.err("template_variables", "needs template_id"));
        }
        if raw_given.is_empty() {
            return Err(f.err(
                "template_id",
                format!("is required unless {} is given", channel_keys.join(" / ")),
            ));
        }
    }
    Ok(Content {
        template_id,
        template_variables,
        subject: None,
        body_html: None,
        body_text: None,
        body: None,
    })
}

fn delivery(f: &Fields<'_>, default_retries: u32) -> Result<Delivery, FieldError> {
    let send_window = match f.get("send_window") {
        None => None,
        Some(w) => {
            Fields::new(w, "send_window")?;
            let cw: CallingWindow = serde_json::from_value(w.clone())
                .map_err(|e| FieldError::new("send_window", e.to_string()))?;
            cw.validate().map_err(|e| e.within("send_window"))?;
            Some(cw)
        }
    };
    let idempotency_key = match f.str_max("idempotency_key", MAX_KEY_CHARS)? {
        Some(k) if k.trim().is_empty() => return Err(f.err("idempotency_key", "must not be empty")),
        k => k.map(str::to_string),
    };
    Ok(Delivery {
        scheduled_at: f.timestamp_opt("scheduled_at")?,
        send_window,
        max_retries: f
            .int_opt("max_retries", 0, MAX_RETRIES)?
            .map(|n| n as u32)
            .unwrap_or(default_retries),
        idempotency_key,
        priority: match f.str_opt("priority")? {
            None => None,
            Some(p @ ("emergency" | "transactional" | "marketing")) => Some(p.to_string()),
            Some(other) => {
                return Err(f.err(
                    "priority",
                    format!("must be emergency, transactional or marketing, got {other:?}"),
                ))
            }
        },
    })
}

impl EmailRequest {
    pub fn parse(body: &Value, default_retries: u32) -> Result<EmailRequest, FieldError> {
        let f = Fields::new(body, "")?;
        f.deny_unknown(&[
            "to",
            "cc",
            "bcc",
            "reply_to",
            "from",
            "template_id",
            "template_variables",
            "subject",
            "body_html",
            "body_text",
            "scheduled_at",
            "send_window",
            "max_retries",
            "idempotency_key",
            "priority",
            "category",
        ])?;
        let to = addresses(&f, "to")?;
        if to.is_empty() {
            return Err(f.err("to", "is required: at least one recipient"));
        }
        let cc = addresses(&f, "cc")?;
        let bcc = addresses(&f, "bcc")?;
        let n = to.len() + cc.len() + bcc.len();
        if n > MAX_EMAIL_RECIPIENTS {
            return Err(f.err(
                "to",
                format!(
                    "at most {MAX_EMAIL_RECIPIENTS} recipients in to, cc and bcc together, got {n}"
                ),
            ));
        }
        let reply_to = f
            .get("reply_to")
            .map(|v| address(v, "reply_to"))
            .transpose()?;
        let from = f.get("from").map(|v| address(v, "from")).transpose()?;
        let category = match f.str_opt("category")? {
            None | Some("transactional") => Category::Transactional,
            Some("marketing") => Category::Marketing,
            Some(other) => {
                return Err(f.err(
                    "category",
                    format!("must be transactional or marketing, got {other:?}"),
                ))
            }
        };
        let mut content = content(&f, &["subject", "body_html", "body_text"])?;
        if content.template_id.is_none() {
            let subject = f.str_max("subject", MAX_SUBJECT_CHARS)?.map(str::to_string);
            let html = f
                .text_opt("body_html", MAX_EMAIL_BODY_CHARS)?
                .map(str::to_string);
            let text = f
                .text_opt("body_text", MAX_EMAIL_BODY_CHARS)?
                .map(str::to_string);
            if subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(f.err("subject", "is required without template_id"));
            }
            if html.is_none() && text.is_none() {
                return Err(f.err(
                    "body_text",
                    "body_html or body_text is required without template_id",
                ));
            }
            content.subject = subject;
            content.body_html = html;
            content.body_text = text;
        }
        Ok(EmailRequest {
            to,
            cc,
            bcc,
            reply_to,
            from,
            category,
            content,
            delivery: delivery(&f, default_retries)?,
        })
    }
}

impl SmsRequest {
    pub fn parse(body: &Value, default_retries: u32) -> Result<SmsRequest, FieldError> {
        let f = Fields::new(body, "")?;
        f.deny_unknown(&[
            "to",
            "from",
            "template_id",
            "template_variables",
            "body",
            "scheduled_at",
            "send_window",
            "max_retries",
            "idempotency_key",
            "priority",
        ])?;
        let to = f.str_req("to")?.trim().to_string();
        validate_e164(&to).map_err(|r| f.err("to", r))?;
        let from = f
            .str_max("from", 32)?
            .map(|s| validate_sms_sender(s).map_err(|r| f.err("from", r)))
            .transpose()?;
        let mut content = content(&f, &["body"])?;
        if content.template_id.is_none() {
            let body = f.text_opt("body", MAX_SMS_BODY_CHARS)?.unwrap_or_default();
            if body.trim().is_empty() {
                return Err(f.err("body", "must not be empty"));
            }
            content.body = Some(body.to_string());
        }
        Ok(SmsRequest {
            to,
            from,
            content,
            delivery: delivery(&f, default_retries)?,
        })
    }
}

/// A Slack message request: `to` is a user id (`U…`, the bot's direct
/// message) or a channel id (`C…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackRequest {
    pub to: String,
    pub content: Content,
    pub delivery: Delivery,
}

impl SlackRequest {
    pub fn parse(body: &Value, default_retries: u32) -> Result<SlackRequest, FieldError> {
        let f = Fields::new(body, "")?;
        f.deny_unknown(&[
            "to",
            "template_id",
            "template_variables",
            "body",
            "scheduled_at",
            "send_window",
            "max_retries",
            "idempotency_key",
            "priority",
        ])?;
        let to = f.str_req("to")?.trim().to_string();
        if to.is_empty()
            || to.len() > 80
            || !to
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "#_-.".contains(c))
        {
            return Err(f.err(
                "to",
                "must be a Slack user or channel id (letters, digits, # _ - .; at most 80)",
            ));
        }
        let mut content = content(&f, &["body"])?;
        if content.template_id.is_none() {
            let body = f.text_opt("body", 40_000)?.unwrap_or_default();
            if body.trim().is_empty() {
                return Err(f.err("body", "must not be empty"));
            }
            content.body = Some(body.to_string());
        }
        Ok(SlackRequest {
            to,
            content,
            delivery: delivery(&f, default_retries)?,
        })
    }
}

/// The hash an idempotency key is bound to: SHA-256 over the typed
/// request's JSON (fields in a fixed order, objects with sorted keys), so
/// the same request written differently (key order, whitespace) matches.
pub fn request_hash<T: Serialize>(request: &T) -> String {
    let v = serde_json::to_value(request).unwrap_or(Value::Null);
    let mut h = Sha256::new();
    canonical(&v, &mut h);
    hex::encode(h.finalize())
}

fn canonical(v: &Value, h: &mut Sha256) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                h.update(b":");
                canonical(&m[k], h);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                canonical(x, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn e_mail_addresses_are_checked_and_their_domain_lower_cased() {
        let cases = [
            ("jane@Example.COM", Ok("jane@example.com")),
            ("a.b+tag@mail.example.org", Ok("a.b+tag@mail.example.org")),
            ("jane@localhost", Ok("jane@localhost")),
            ("jane", Err("has no '@'")),
            ("@example.com", Err("1 to 64")),
            ("ja ne@example.com", Err("needs quoting")),
            ("jane@exa_mple.com", Err("not a domain name")),
            ("jane@example..com", Err("not a domain name")),
            (".jane@example.com", Err("needs quoting")),
        ];
        for (input, want) in cases {
            match (validate_email(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{input}"),
                (Err(got), Err(w)) => assert!(got.contains(w), "{input}: {got}"),
                (got, w) => panic!("{input}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn sms_senders_are_e164_or_alphanumeric() {
        assert_eq!(validate_sms_sender("+15551234567").unwrap(), "+15551234567");
        assert_eq!(validate_sms_sender("Clinic 24").unwrap(), "Clinic 24");
        assert!(validate_sms_sender("123456").is_err());
        assert!(validate_sms_sender("ABCDEFGHIJKL").is_err());
        assert!(validate_sms_sender("+0123").is_err());
    }

    #[test]
    fn an_email_needs_a_template_or_a_subject_and_a_body() {
        let err = |v: Value| EmailRequest::parse(&v, 3).unwrap_err();
        assert_eq!(err(json!({})).field, "to");
        assert_eq!(err(json!({"to": []})).field, "to");
        assert_eq!(err(json!({"to": [{"email": "x"}]})).field, "to[0].email");
        assert_eq!(
            err(json!({"to": [{"email": "a@b.c"}], "body_text": "hi"})).field,
            "subject"
        );
        assert_eq!(
            err(json!({"to": [{"email": "a@b.c"}], "subject": "s"})).field,
            "body_text"
        );
        assert_eq!(
            err(json!({"to": [{"email": "a@b.c"}], "template_id": "t", "subject": "s"})).field,
            "subject"
        );
        assert_eq!(
            err(json!({"to": [{"email": "a@b.c"}], "template_id": "t", "category": "spam"})).field,
            "category"
        );
        assert_eq!(
            err(json!({"to": [{"email": "a@b.c"}], "template_id": "t", "max_retries": "3"})).field,
            "max_retries"
        );
        let many: Vec<Value> = (0..51)
            .map(|i| json!({"email": format!("p{i}@x.io")}))
            .collect();
        assert_eq!(err(json!({"to": many, "template_id": "t"})).field, "to");
    }

    #[test]
    fn an_email_request_round_trips_through_its_json() {
        let body = json!({
            "to": [{"email": "Jane@Example.com", "name": "Jane"}],
            "bcc": [{"email": "audit@example.com"}],
            "template_id": "order_shipped",
            "template_variables": {"order": "A-1"},
            "category": "marketing",
            "scheduled_at": "2026-12-01T10:00:00Z",
            "send_window": {"timezone": "Europe/Paris", "start": "09:00", "end": "18:00"},
            "idempotency_key": "k1"
        });
        let r = EmailRequest::parse(&body, 3).unwrap();
        assert_eq!(r.to[0].email, "Jane@example.com");
        assert_eq!(r.delivery.max_retries, 3);
        assert_eq!(r.category, Category::Marketing);
        let again = EmailRequest::parse(&serde_json::to_value(&r).unwrap(), 9).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn the_request_hash_ignores_key_order_but_not_content() {
        let a = SmsRequest::parse(&json!({"to": "+15551234567", "body": "hi"}), 3).unwrap();
        let b: SmsRequest =
            serde_json::from_value(json!({"body": "hi", "max_retries": 3, "to": "+15551234567"}))
                .unwrap();
        let c = SmsRequest::parse(&json!({"to": "+15551234567", "body": "hi!"}), 3).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    #[test]
    fn an_sms_needs_an_e164_recipient_and_a_body_or_template() {
        let err = |v: Value| SmsRequest::parse(&v, 3).unwrap_err();
        assert_eq!(err(json!({"to": "5551234", "body": "x"})).field, "to");
        assert_eq!(err(json!({"to": "+15551234567"})).field, "template_id");
        assert_eq!(
            err(json!({"to": "+15551234567", "body": " "})).field,
            "body"
        );
        assert_eq!(
            err(json!({"to": "+15551234567", "body": "x", "from": "!!"})).field,
            "from"
        );
        assert_eq!(
            err(json!({"to": "+15551234567", "body": "x", "send_window": {"timezone": "Mars/Base", "start": "09:00", "end": "18:00"}})).field.split('.').next().unwrap(),
            "send_window"
        );
    }
}
