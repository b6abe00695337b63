//! A message request made into the row to store: its content rendered now
//! from the template's active version (by id or code) or taken raw, its
//! channel's checks, and when it may go (its send window).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use crate::api::error::{ApiError, ApiResult};
use crate::api::templates::{render_error, typed};
use crate::campaign::rules::window::Window;
use crate::domain::FieldError;
use crate::message::request::{
    request_hash, Category, Content, Delivery, EmailRequest, SlackRequest, SmsRequest,
};
use crate::message::service::Messaging;
use crate::message::sms_text;
use crate::message::template::{self, Channel, TemplateParts};
use crate::store::messages::NewMessage;
use crate::store::templates::TemplateRow;
use crate::store::{Store, StoreError};

/// Content rendered from a template, or taken raw.
struct Composed {
    template_id: Option<String>,
    template_version: Option<i64>,
    subject: Option<String>,
    body_html: Option<String>,
    body_text: Option<String>,
    body: Option<String>,
    /// WhatsApp: the provider template's name and language, and its
    /// parameters rendered in order.
    provider: Option<(String, String, Vec<String>)>,
    /// E-mail: the template's opt-in to open and click tracking.
    track: (bool, bool),
}

/// A resolved, active template compiled once.
struct Ready {
    row: TemplateRow,
    channel: Channel,
    parts: TemplateParts,
    compiled: template::Compiled,
}

/// The templates one request uses, resolved and compiled once each (a bulk
/// send renders the same template for every recipient).
#[derive(Default)]
pub(crate) struct Templates {
    ready: std::sync::Mutex<HashMap<String, Arc<Ready>>>,
}

impl Templates {
    async fn get(&self, store: &Store, tid: &str) -> ApiResult<Arc<Ready>> {
        if let Some(r) = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tid)
        {
            return Ok(r.clone());
        }
        let t = store.resolve_template(tid).await.map_err(|e| match e {
            StoreError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "template_not_found",
                format!(
                    "no template with id or code {:?}",
                    tid.chars().take(100).collect::<String>()
                ),
            )
            .with_details(json!({"field": "template_id"})),
            other => other.into(),
        })?;
        let (channel, variables, parts) = typed(&t)?;
        let compiled = template::Compiled::new(channel, &variables, &parts)
            .map_err(|e| render_error(template::RenderError::Invalid(e)))?;
        let r = Arc::new(Ready {
            row: t,
            channel,
            parts,
            compiled,
        });
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tid.to_string(), r.clone());
        Ok(r)
    }
}

/// Resolves the template (id or code), checks its channel and status, and
/// renders it; raw content passes through.
async fn compose(
    store: &Store,
    templates: &Templates,
    content: &Content,
    channel: Channel,
) -> ApiResult<Composed> {
    let Some(tid) = &content.template_id else {
        return Ok(Composed {
            template_id: None,
            template_version: None,
            subject: content.subject.clone(),
            body_html: content.body_html.clone(),
            body_text: content.body_text.clone(),
            body: content.body.clone(),
            provider: None,
            track: (false, false),
        });
    };
    let ready = templates.get(store, tid).await?;
    let (t, tchannel, parts) = (&ready.row, ready.channel, &ready.parts);
    if tchannel != channel {
        return Err(FieldError::new(
            "template_id",
            format!(
                "template {:?} is for {}, not {}",
                t.code,
                tchannel.as_str(),
                channel.as_str()
            ),
        )
        .into());
    }
    if t.status != "active" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_inactive",
            format!("template {:?} is inactive; activate it first", t.code),
        )
        .with_details(json!({"field": "template_id"})));
    }
    let r = ready
        .compiled
        .render(&content.template_variables)
        .map_err(render_error)?;
    let provider = parts
        .provider_template
        .as_ref()
        .map(|p| (p.name.clone(), p.language.clone(), r.parameters.clone()));
    Ok(Composed {
        template_id: Some(t.id.clone()),
        template_version: Some(t.version),
        subject: r.subject,
        body_html: r.body_html,
        body_text: r.body_text,
        body: r.body,
        provider,
        track: (parts.track_opens, parts.track_clicks),
    })
}

/// When the message may go: `scheduled_at` (or now), moved into its send window.
fn due_at(delivery: &Delivery, now: i64) -> ApiResult<i64> {
    let at = delivery.scheduled_at.unwrap_or(now).max(now);
    let Some(w) = &delivery.send_window else {
        return Ok(at);
    };
    let (window, tz) = Window::from_spec(w).map_err(|e| e.within("send_window"))?;
    Ok(window
        .dial_time(tz, crate::store::from_ms(at))
        .timestamp_millis())
}

pub(crate) fn unavailable(channel: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "channel_unavailable",
        format!("the {channel} channel is not configured on this server ([channels.{channel}])"),
    )
}

/// Builds the row of an e-mail request (new, or changed by a PATCH).
pub(crate) async fn email_row(
    store: &Store,
    messaging: &Messaging,
    templates: &Templates,
    id: &str,
    req: &EmailRequest,
    now: i64,
) -> ApiResult<NewMessage> {
    let d = messaging
        .email
        .as_ref()
        .ok_or_else(|| unavailable("email"))?;
    let c = compose(store, templates, &req.content, Channel::Email).await?;
    let subject = c.subject.unwrap_or_default();
    if subject.trim().is_empty() {
        return Err(FieldError::new("subject", "rendered empty").into());
    }
    if subject.contains(['\r', '\n']) {
        return Err(FieldError::new(
            "subject",
            "must be one line (it rendered with a line break)",
        )
        .into());
    }
    let from = req
        .from
        .clone()
        .map(|a| json!(a))
        .unwrap_or_else(|| json!({"email": d.from.email, "name": d.from.name}));
    let list_unsubscribe = (req.category == Category::Marketing).then(|| {
        format!(
            "{}/unsubscribe/{id}",
            d.unsubscribe_base_url.trim_end_matches('/')
        )
    });
    let mut body_html = c.body_html;
    let mut tracking = serde_json::Value::Null;
    if let (Some(html), (opens, clicks)) = (&body_html, c.track) {
        if opens || clicks {
            let (out, links) = crate::message::tracking::instrument(
                html,
                &d.unsubscribe_base_url,
                id,
                opens,
                clicks,
            );
            tracking = json!({"opens": opens, "clicks": clicks, "links": links});
            body_html = Some(out);
        }
    }
    let rendered = json!({
        "message_id": format!("{id}@{}", d.bounce_domain),
        "return_path": format!("bounces+{id}@{}", d.bounce_domain),
        "from": from,
        "to": req.to,
        "cc": req.cc,
        "bcc": req.bcc,
        "reply_to": req.reply_to,
        "subject": subject,
        "body_html": body_html,
        "body_text": c.body_text,
        "list_unsubscribe": list_unsubscribe,
        "tracking": tracking,
    });
    Ok(NewMessage {
        id: id.to_string(),
        channel: "email".into(),
        recipient: req.to[0].email.to_ascii_lowercase(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: rendered.to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: Some(format!("{id}@{}", d.bounce_domain)),
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
        priority: req.delivery.rank(req.category == Category::Marketing),
    })
}

pub(crate) async fn sms_row(
    store: &Store,
    messaging: &Messaging,
    templates: &Templates,
    id: &str,
    req: &SmsRequest,
    now: i64,
) -> ApiResult<NewMessage> {
    let d = messaging.sms.as_ref().ok_or_else(|| unavailable("sms"))?;
    let c = compose(store, templates, &req.content, Channel::Sms).await?;
    let body = c.body.unwrap_or_default();
    if body.trim().is_empty() {
        return Err(FieldError::new("body", "rendered empty").into());
    }
    let info = sms_text::analyse(&body);
    if info.segments > sms_text::MAX_SEGMENTS {
        let field = if req.content.template_id.is_some() {
            "template_variables"
        } else {
            "body"
        };
        return Err(FieldError::new(
            field,
            format!(
                "the text needs {} segments ({:?}, {} characters); at most {} are sent",
                info.segments,
                info.encoding,
                body.chars().count(),
                sms_text::MAX_SEGMENTS
            ),
        )
        .into());
    }
    let rendered = json!({
        "from": req.from.clone().unwrap_or_else(|| d.from.clone()),
        "to": req.to,
        "body": body,
        "encoding": info.encoding,
        "segments": info.segments,
    });
    Ok(NewMessage {
        id: id.to_string(),
        channel: "sms".into(),
        recipient: req.to.clone(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: rendered.to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: None,
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
        priority: req.delivery.rank(false),
    })
}

/// How long after a contact's last message free text may be sent to them
/// on WhatsApp (the customer service window).
pub const WHATSAPP_WINDOW_MS: i64 = 24 * 3_600_000;

/// Builds the row of a WhatsApp request: a template, or free text inside
/// the contact's 24-hour window.
pub(crate) async fn whatsapp_row(
    store: &Store,
    messaging: &Messaging,
    templates: &Templates,
    id: &str,
    req: &SmsRequest,
    now: i64,
) -> ApiResult<NewMessage> {
    messaging
        .whatsapp
        .as_ref()
        .ok_or_else(|| unavailable("whatsapp"))?;
    if req.from.is_some() {
        return Err(FieldError::new(
            "from",
            "WhatsApp messages go from channels.whatsapp.phone_number_id; give no from",
        )
        .into());
    }
    let c = compose(store, templates, &req.content, Channel::Whatsapp).await?;
    let rendered = match c.provider {
        Some((name, language, parameters)) => json!({
            "to": req.to, "type": "template",
            "template": {"name": name, "language": language, "parameters": parameters},
        }),
        None => {
            let last = store.last_inbound_at("whatsapp", &req.to).await?;
            let open_until = last.map(|t| t + WHATSAPP_WINDOW_MS);
            if open_until.is_none_or(|t| t <= now) {
                let (message, closed) = match open_until {
                    Some(t) => (
                        format!(
                            "free text can be sent only within 24 hours of the contact's last message; \
                             the window closed at {}; send a template",
                            crate::store::from_ms(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        json!(crate::store::from_ms(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    ),
                    None => (
                        "free text can be sent only within 24 hours of the contact's last message, \
                         and this contact has sent none; send a template"
                            .to_string(),
                        serde_json::Value::Null,
                    ),
                };
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "outside_24h_window",
                    message,
                )
                .with_details(json!({"field": "body", "window_closed_at": closed})));
            }
            json!({"to": req.to, "type": "text", "body": c.body.unwrap_or_default()})
        }
    };
    Ok(NewMessage {
        id: id.to_string(),
        channel: "whatsapp".into(),
        recipient: req.to.clone(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: rendered.to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: None,
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
        priority: req.delivery.rank(false),
    })
}

/// Builds the row of a Slack request: a `slack` template's body, or raw text.
pub(crate) async fn slack_row(
    store: &Store,
    messaging: &Messaging,
    templates: &Templates,
    id: &str,
    req: &SlackRequest,
    now: i64,
) -> ApiResult<NewMessage> {
    messaging
        .slack
        .as_ref()
        .ok_or_else(|| unavailable("slack"))?;
    let c = compose(store, templates, &req.content, Channel::Slack).await?;
    let text = c.body.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(FieldError::new("body", "rendered empty").into());
    }
    Ok(NewMessage {
        id: id.to_string(),
        channel: "slack".into(),
        recipient: req.to.clone(),
        request: serde_json::to_string(req).map_err(ApiError::internal)?,
        rendered: json!({"to": req.to, "text": text}).to_string(),
        template_id: c.template_id,
        template_version: c.template_version,
        idempotency_key: req.delivery.idempotency_key.clone(),
        request_hash: request_hash(req),
        rfc_message_id: None,
        max_retries: req.delivery.max_retries as i64,
        due_at: due_at(&req.delivery, now)?,
        priority: req.delivery.rank(false),
    })
}
