//! A notification request (`POST /v1/notifications/send`, the notification
//! platform's shape) parsed and checked, and each channel's part of it
//! written as that channel's own request (`/v1/emails`, `/v1/sms`,
//! `/v1/calls`), so every channel keeps the one validation it already has
//! (pure).

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::domain::fields::Fields;
use crate::domain::FieldError;

/// Most channels in one notification.
pub const MAX_CHANNELS: usize = 5;
/// Longest `fallback_after_s` (a week).
pub const MAX_FALLBACK_AFTER_S: i64 = 7 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NotifyChannel {
    Email,
    Sms,
    Whatsapp,
    Slack,
    Voice,
}

impl NotifyChannel {
    pub const ALL: [NotifyChannel; 5] = [
        NotifyChannel::Email,
        NotifyChannel::Sms,
        NotifyChannel::Whatsapp,
        NotifyChannel::Slack,
        NotifyChannel::Voice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Email => "email",
            NotifyChannel::Sms => "sms",
            NotifyChannel::Whatsapp => "whatsapp",
            NotifyChannel::Slack => "slack",
            NotifyChannel::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyChannel> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The recipient field this channel sends to.
    pub fn recipient_field(self) -> &'static str {
        match self {
            NotifyChannel::Email => "email",
            NotifyChannel::Sms | NotifyChannel::Voice => "phone",
            NotifyChannel::Whatsapp => "whatsapp",
            NotifyChannel::Slack => "slack_user_id",
        }
    }

    /// The seed's template policy: `required` (WhatsApp: business-initiated
    /// messages are templates), `optional` (template or raw content) or
    /// `none` (voice: an agent speaks).
    pub fn template_policy(self) -> &'static str {
        match self {
            NotifyChannel::Whatsapp => "required",
            NotifyChannel::Voice => "none",
            _ => "optional",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every channel at once.
    All,
    /// Channels in order: the next when the previous fails, or is not
    /// delivered within `fallback_after_s`.
    Fallback,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::All => "all",
            Strategy::Fallback => "fallback",
        }
    }
}

/// Who the notification is for; each channel uses its own field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recipient {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub slack_user_id: Option<String>,
    pub whatsapp: Option<String>,
}

impl Recipient {
    pub fn field(&self, name: &str) -> Option<&str> {
        match name {
            "email" => self.email.as_deref(),
            "phone" => self.phone.as_deref(),
            "slack_user_id" => self.slack_user_id.as_deref(),
            "whatsapp" => self.whatsapp.as_deref(),
            _ => None,
        }
    }

    /// The first field given, as stored for filters.
    pub fn key(&self) -> String {
        [
            self.email.as_ref().map(|e| e.to_ascii_lowercase()),
            self.phone.clone(),
            self.whatsapp.clone(),
            self.slack_user_id.clone(),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_default()
    }
}

/// Which template each channel renders: one for every channel whose
/// channel it is, or one per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TemplateChoice {
    One(String),
    PerChannel(std::collections::BTreeMap<NotifyChannel, String>),
}

impl TemplateChoice {
    /// The template named for `channel`: the per-channel entry, or the one
    /// template (whose own channel is checked when it is resolved).
    pub fn for_channel(&self, channel: NotifyChannel) -> Option<&str> {
        match self {
            TemplateChoice::One(t) => Some(t),
            TemplateChoice::PerChannel(m) => m.get(&channel).map(String::as_str),
        }
    }
}

/// A parsed notification request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRequest {
    pub recipient: Recipient,
    pub channels: Vec<NotifyChannel>,
    pub template: Option<TemplateChoice>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub data: Map<String, Value>,
    pub agent_id: Option<String>,
    pub strategy: Strategy,
    pub fallback_after_s: Option<i64>,
    pub idempotency_key: Option<String>,
    pub priority: String,
}

const PRIORITIES: [&str; 3] = ["emergency", "transactional", "marketing"];

impl NotificationRequest {
    pub fn parse(body: &Value) -> Result<NotificationRequest, FieldError> {
        let f = Fields::new(body, "")?;
        f.deny_unknown(&[
            "recipient",
            "notification",
            "strategy",
            "fallback_after_s",
            "idempotency_key",
            "priority",
        ])?;
        let r = f
            .obj_opt("recipient")?
            .ok_or_else(|| f.err("recipient", "is required"))?;
        r.deny_unknown(&["email", "phone", "slack_user_id", "whatsapp"])?;
        let field = |k: &str| -> Result<Option<String>, FieldError> {
            Ok(r.str_max(k, 320)?
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string))
        };
        let recipient = Recipient {
            email: field("email")?,
            phone: field("phone")?,
            slack_user_id: field("slack_user_id")?,
            whatsapp: field("whatsapp")?,
        };
        let n = f
            .obj_opt("notification")?
            .ok_or_else(|| f.err("notification", "is required"))?;
        n.deny_unknown(&[
            "channels",
            "template_id",
            "subject",
            "body",
            "data",
            "agent_id",
        ])?;
        let channels = channels(&n)?;
        let template = match n.get("template_id") {
            None => None,
            Some(Value::String(_)) => n
                .str_max("template_id", 200)?
                .map(|t| TemplateChoice::One(t.trim().to_string())),
            Some(Value::Object(m)) => {
                let mut per = std::collections::BTreeMap::new();
                for (k, v) in m {
                    let path = format!("notification.template_id.{k}");
                    let ch = NotifyChannel::parse(k).ok_or_else(|| {
                        FieldError::new(
                            &path,
                            "is not a channel (email, sms, whatsapp, slack, voice)",
                        )
                    })?;
                    let t = v
                        .as_str()
                        .filter(|t| !t.trim().is_empty() && t.len() <= 200)
                        .ok_or_else(|| FieldError::new(&path, "must be a template id or code"))?;
                    per.insert(ch, t.trim().to_string());
                }
                Some(TemplateChoice::PerChannel(per))
            }
            Some(_) => {
                return Err(n.err(
                    "template_id",
                    "must be a template id or code, or an object of one per channel",
                ))
            }
        };
        let strategy = match f
            .choice_or("strategy", &["all", "fallback"], "all")?
            .as_str()
        {
            "fallback" => Strategy::Fallback,
            _ => Strategy::All,
        };
        let fallback_after_s = f.int_opt("fallback_after_s", 1, MAX_FALLBACK_AFTER_S)?;
        if fallback_after_s.is_some() && strategy != Strategy::Fallback {
            return Err(f.err("fallback_after_s", "applies only with strategy fallback"));
        }
        let idempotency_key = f
            .str_max("idempotency_key", 200)?
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        Ok(NotificationRequest {
            recipient,
            channels,
            template,
            subject: n.str_max("subject", 998)?.map(str::to_string),
            body: n.text_opt("body", 100_000)?.map(str::to_string),
            data: n.map_opt("data", 64 * 1024)?,
            agent_id: n.str_max("agent_id", 200)?.map(str::to_string),
            strategy,
            fallback_after_s,
            idempotency_key,
            priority: f.choice_or("priority", &PRIORITIES, "transactional")?,
        })
    }

    /// Checks what does not need the store: each channel's recipient field
    /// and template policy.
    pub fn check_channels(&self) -> Result<(), ChannelRefusal> {
        for &c in &self.channels {
            let field = c.recipient_field();
            if self.recipient.field(field).is_none() {
                return Err(ChannelRefusal::field(
                    format!("recipient.{field}"),
                    format!("recipient.{field} is required for {}", c.as_str()),
                ));
            }
            let template = self.template.as_ref().and_then(|t| t.for_channel(c));
            match c.template_policy() {
                "required" if template.is_none() => {
                    return Err(ChannelRefusal {
                        code: "template_required",
                        field: "notification.template_id".into(),
                        message: format!(
                            "{} messages must use an approved template: give notification.template_id",
                            c.as_str()
                        ),
                    })
                }
                "none" if self.agent_id.is_none() => {
                    return Err(ChannelRefusal::field(
                        "notification.agent_id".into(),
                        "notification.agent_id is required for voice: the agent that speaks on the call".into(),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The channel's own request body (`/v1/emails`, `/v1/sms`, `/v1/calls`)
    /// for this notification; `template` is the template this channel
    /// renders (None: raw content). Errors from that channel's parser are
    /// named back in this request's terms by [`rename_field`].
    pub fn channel_body(&self, channel: NotifyChannel, template: Option<&str>) -> Value {
        let mut o = Map::new();
        let to = self
            .recipient
            .field(channel.recipient_field())
            .unwrap_or_default();
        match channel {
            NotifyChannel::Email => {
                o.insert("to".into(), json!([{"email": to}]));
                if self.priority == "marketing" {
                    o.insert("category".into(), json!("marketing"));
                }
            }
            NotifyChannel::Voice => {
                o.insert("to".into(), json!(to));
                o.insert("agent_id".into(), json!(self.agent_id));
                return Value::Object(o);
            }
            _ => {
                o.insert("to".into(), json!(to));
            }
        }
        o.insert("priority".into(), json!(self.priority));
        match template {
            Some(t) => {
                o.insert("template_id".into(), json!(t));
                o.insert(
                    "template_variables".into(),
                    Value::Object(self.data.clone()),
                );
            }
            None => {
                if channel == NotifyChannel::Email {
                    o.insert("subject".into(), json!(self.subject));
                    o.insert("body_text".into(), json!(self.body));
                } else {
                    o.insert("body".into(), json!(self.body));
                }
            }
        }
        Value::Object(o)
    }
}

/// Names a channel request's field as the notification request names it.
pub fn rename_field(channel: NotifyChannel, e: FieldError) -> FieldError {
    let field = match e.field.as_str() {
        f if f == "to" || f.starts_with("to[") => {
            format!("recipient.{}", channel.recipient_field())
        }
        "template_variables" => "notification.data".into(),
        "template_id" => "notification.template_id".into(),
        "subject" => "notification.subject".into(),
        "body" | "body_text" | "body_html" => "notification.body".into(),
        "agent_id" => "notification.agent_id".into(),
        other => format!("notification.{other}"),
    };
    FieldError::new(field, format!("{} ({})", e.reason, channel.as_str()))
}

/// Why a channel cannot take this notification, with the API's error code.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRefusal {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl ChannelRefusal {
    fn field(field: String, message: String) -> Self {
        ChannelRefusal {
            code: "validation_failed",
            field,
            message,
        }
    }
}

fn channels(n: &Fields<'_>) -> Result<Vec<NotifyChannel>, FieldError> {
    let list = n.array_opt("channels")?.ok_or_else(|| {
        n.err(
            "channels",
            "is required: at least one of email, sms, whatsapp, slack, voice",
        )
    })?;
    if list.is_empty() || list.len() > MAX_CHANNELS {
        return Err(n.err(
            "channels",
            format!("must list 1 to {MAX_CHANNELS} channels"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let path = format!("notification.channels[{i}]");
        let c = v.as_str().and_then(NotifyChannel::parse).ok_or_else(|| {
            FieldError::new(
                &path,
                format!("must be one of email, sms, whatsapp, slack, voice, got {v}"),
            )
        })?;
        if out.contains(&c) {
            return Err(FieldError::new(
                path,
                format!("{} is listed twice", c.as_str()),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<NotificationRequest, FieldError> {
        NotificationRequest::parse(&v)
    }

    #[test]
    fn a_seed_request_parses_with_its_defaults() {
        let r = parse(json!({
            "recipient": {"email": "Ann@Example.com", "phone": "+15550001111"},
            "notification": {"channels": ["email", "sms"], "subject": "Hi", "body": "Hello", "data": {"a": 1}}
        }))
        .unwrap();
        assert_eq!(r.channels, vec![NotifyChannel::Email, NotifyChannel::Sms]);
        assert_eq!(r.strategy, Strategy::All);
        assert_eq!(r.priority, "transactional");
        assert_eq!(r.recipient.key(), "ann@example.com");
        assert!(r.check_channels().is_ok());
        assert_eq!(
            r.channel_body(NotifyChannel::Sms, None),
            json!({"to": "+15550001111", "body": "Hello", "priority": "transactional"})
        );
        assert_eq!(
            r.channel_body(NotifyChannel::Email, Some("welcome")),
            json!({"to": [{"email": "Ann@Example.com"}], "template_id": "welcome", "template_variables": {"a": 1},
                   "priority": "transactional"})
        );
    }

    #[test]
    fn bad_requests_name_their_field() {
        let cases = [
            (json!({"notification": {"channels": ["sms"]}}), "recipient"),
            (
                json!({"recipient": {}, "notification": {}}),
                "notification.channels",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["fax"]}}),
                "notification.channels[0]",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["sms", "sms"]}}),
                "notification.channels[1]",
            ),
            (
                json!({"recipient": {"pager": "1"}, "notification": {"channels": ["sms"]}}),
                "recipient.pager",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["sms"]}, "strategy": "some"}),
                "strategy",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["sms"]}, "fallback_after_s": 5}),
                "fallback_after_s",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["sms"], "template_id": {"fax": "x"}}}),
                "notification.template_id.fax",
            ),
            (
                json!({"recipient": {}, "notification": {"channels": ["sms"]}, "priority": "urgent"}),
                "priority",
            ),
        ];
        for (body, field) in cases {
            let e = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.field, field, "{body}: {e:?}");
        }
    }

    #[test]
    fn channels_check_their_recipient_field_and_template_policy() {
        let r = parse(json!({"recipient": {"email": "a@b.c"}, "notification": {"channels": ["email", "sms"], "body": "x"}})).unwrap();
        let e = r.check_channels().unwrap_err();
        assert_eq!(e.message, "recipient.phone is required for sms");
        assert_eq!(e.field, "recipient.phone");

        let r = parse(json!({"recipient": {"whatsapp": "+15550001111"}, "notification": {"channels": ["whatsapp"], "body": "x"}})).unwrap();
        assert_eq!(r.check_channels().unwrap_err().code, "template_required");

        let r = parse(json!({"recipient": {"phone": "+15550001111"}, "notification": {"channels": ["voice"]}})).unwrap();
        assert_eq!(
            r.check_channels().unwrap_err().field,
            "notification.agent_id"
        );

        let r = parse(json!({"recipient": {"whatsapp": "+1555", "email": "a@b.c"},
            "notification": {"channels": ["email", "whatsapp"], "template_id": {"whatsapp": "t"}, "subject": "s", "body": "b"}})).unwrap();
        assert!(r.check_channels().is_ok());
        assert_eq!(
            r.template
                .as_ref()
                .unwrap()
                .for_channel(NotifyChannel::Email),
            None
        );
    }

    #[test]
    fn channel_errors_are_renamed_to_the_notification_fields() {
        let e = rename_field(NotifyChannel::Sms, FieldError::new("to", "must be E.164"));
        assert_eq!(e.field, "recipient.phone");
        let e = rename_field(NotifyChannel::Email, FieldError::new("to[0].email", "bad"));
        assert_eq!(e.field, "recipient.email");
        let e = rename_field(
            NotifyChannel::Email,
            FieldError::new("template_variables", "missing name"),
        );
        assert_eq!(e.field, "notification.data");
        assert!(e.reason.ends_with("(email)"));
    }
}
