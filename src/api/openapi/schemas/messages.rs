//! Templates, messages, notifications and conversations.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A template variable: its key, whether it is required, its default.
#[derive(Serialize, ToSchema)]
pub struct TemplateVariable {
    pub key: String,
    pub required: Option<bool>,
    pub default: Option<String>,
}

/// `POST /v1/templates`: a draft; the parts are the channel's.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code": "appt_reminder", "name": "Appointment reminder", "channel": "sms",
    "body_template": "Hi {{ name }}, see you {{ when }}. Reply STOP to opt out.",
    "variables": [{"key": "name", "required": true}, {"key": "when", "required": true}]}))]
pub struct TemplateInput {
    /// Letters, digits, '_', '-' and '.', 1 to 100; unique.
    pub code: String,
    pub name: String,
    /// email, sms, whatsapp or slack.
    pub channel: String,
    pub variables: Option<Vec<TemplateVariable>>,
    /// E-mail: the subject (minijinja).
    pub subject_template: Option<String>,
    pub body_html_template: Option<String>,
    pub body_text_template: Option<String>,
    /// SMS and Slack: the text.
    pub body_template: Option<String>,
    /// WhatsApp: the approved template's name, language and parameters.
    #[schema(value_type = Option<Object>)]
    pub provider_template: Option<Value>,
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
}

/// A stored template (its parts beside these fields).
#[derive(Serialize, ToSchema)]
pub struct Template {
    pub id: String,
    pub code: String,
    pub name: String,
    pub channel: String,
    /// draft, active or inactive.
    pub status: String,
    pub version: i64,
    #[schema(value_type = Vec<Object>)]
    pub variables: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/templates/{id}/render`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"variables": {"name": "Pat", "when": "Tuesday 10:30"}}))]
pub struct RenderInput {
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
}

/// What a template renders to: by channel, the subject and bodies, the
/// SMS text with its encoding and segments, or WhatsApp's parameters.
#[derive(Serialize, ToSchema)]
pub struct Rendered {
    pub channel: String,
    pub template_id: String,
    pub version: i64,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    pub body: Option<String>,
    /// gsm7 or ucs2.
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// Which messages a sender takes first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessagePriority {
    Emergency,
    Transactional,
    Marketing,
}

/// An e-mail address with an optional display name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"email": "pat@example.com", "name": "Pat Doe"}))]
pub struct Address {
    pub email: String,
    /// Up to 200 characters.
    pub name: Option<String>,
}

/// When a message may go: local hours on some days.
#[derive(Serialize, ToSchema)]
pub struct SendWindow {
    pub timezone: String,
    pub days: Option<Vec<String>>,
    pub start: String,
    pub end: String,
}

/// `POST /v1/emails`: from a template (`template_id`, `template_variables`)
/// or with its own subject and bodies.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"to": [{"email": "pat@example.com"}], "template_id": "019b0000-0000-7000-8000-00000000000d",
    "template_variables": {"name": "Pat"}, "idempotency_key": "order-1234-confirmation"}))]
pub struct EmailInput {
    pub to: Vec<Address>,
    pub cc: Option<Vec<Address>>,
    pub bcc: Option<Vec<Address>>,
    pub reply_to: Option<Address>,
    pub from: Option<Address>,
    pub template_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub template_variables: Option<Value>,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub send_window: Option<SendWindow>,
    pub max_retries: Option<u32>,
    /// The same key with the same body is accepted once (the first
    /// message is answered again); with another body it is a 422.
    pub idempotency_key: Option<String>,
    pub category: Option<String>,
    /// Which messages go first (transactional when absent).
    pub priority: Option<MessagePriority>,
}

/// `POST /v1/sms` and `POST /v1/whatsapp`: from a template or with a body.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"to": "+15551230001", "body": "Your code is 123456", "priority": "transactional", "idempotency_key": "otp-88121"}))]
pub struct TextInput {
    /// E.164.
    pub to: String,
    /// SMS: a sender id or number (the channel's when absent).
    pub from: Option<String>,
    pub template_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub template_variables: Option<Value>,
    pub body: Option<String>,
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub send_window: Option<SendWindow>,
    pub max_retries: Option<u32>,
    pub idempotency_key: Option<String>,
    /// Which messages go first (transactional when absent).
    pub priority: Option<MessagePriority>,
}

/// A message (e-mail, SMS, WhatsApp, Slack) and how its sending goes.
#[derive(Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub channel: String,
    /// queued, sending, sent, delivered, failed, cancelled, …
    pub status: String,
    pub reason: Option<String>,
    /// E-mail: an address (with a name); SMS, WhatsApp: a number.
    pub from: Option<Value>,
    /// E-mail: a list of addresses; SMS, WhatsApp: a number.
    pub to: Option<Value>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    pub message_id: Option<String>,
    pub opens: Option<i64>,
    pub clicks: Option<i64>,
    pub template_id: Option<String>,
    pub template_version: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub template_variables: Option<Value>,
    pub scheduled_at: Option<String>,
    pub max_retries: i64,
    pub tries: i64,
    pub provider_id: Option<String>,
    pub provider: Option<String>,
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub final_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When read one at a time: each try with the peer's reply.
    #[schema(value_type = Option<Vec<Object>>)]
    pub attempts: Option<Value>,
}

/// Who a notification goes to, by channel.
#[derive(Serialize, ToSchema)]
pub struct Recipient {
    pub email: Option<String>,
    /// E.164: SMS and voice.
    pub phone: Option<String>,
    pub slack_user_id: Option<String>,
    /// E.164 (the phone's when absent).
    pub whatsapp: Option<String>,
}

/// What to say: channels in order, a template (one, or one per channel)
/// or a subject and body, and data for the template.
#[derive(Serialize, ToSchema)]
pub struct NotificationContent {
    /// email, sms, whatsapp, slack, voice.
    pub channels: Vec<String>,
    /// A template id, or {channel: template id}.
    #[schema(value_type = Option<Object>)]
    pub template_id: Option<Value>,
    pub subject: Option<String>,
    pub body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Voice: the agent that talks.
    pub agent_id: Option<String>,
}

/// `POST /v1/notifications/send`: one notification over one or more channels.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"recipient": {"email": "pat@example.com", "phone": "+15551230001"},
    "notification": {"channels": ["sms", "email"], "template_id": "019b0000-0000-7000-8000-00000000000d", "data": {"name": "Pat"}},
    "strategy": "fallback", "fallback_after_s": 300, "idempotency_key": "appt-991-reminder"}))]
pub struct NotificationInput {
    pub recipient: Recipient,
    pub notification: NotificationContent,
    /// all (every channel at once) or fallback (the next when one fails or is not delivered in time).
    pub strategy: Option<String>,
    pub fallback_after_s: Option<u32>,
    pub idempotency_key: Option<String>,
    /// Which messages go first (transactional when absent).
    pub priority: Option<MessagePriority>,
}

/// One channel's delivery of a notification.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub channel: String,
    pub status: String,
    pub reason: Option<String>,
    pub message_id: Option<String>,
    pub attempts: i64,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A notification and its deliveries.
#[derive(Serialize, ToSchema)]
pub struct Notification {
    pub id: String,
    pub notification_id: String,
    pub status: String,
    pub strategy: String,
    pub fallback_after_s: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub recipient: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<Value>,
    pub priority: Option<String>,
    pub idempotency_key: Option<String>,
    pub bulk_id: Option<String>,
    pub deliveries: Vec<Delivery>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub final_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /v1/notifications/bulk`: shared content, one row per recipient
/// (each with its own `data`), up to the body limit.
#[derive(Serialize, ToSchema)]
pub struct BulkInput {
    pub channels: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub template_id: Option<Value>,
    pub subject: Option<String>,
    pub body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub agent_id: Option<String>,
    /// Each: `recipient` and optional `data`, `idempotency_key`.
    #[schema(value_type = Vec<Object>)]
    pub recipients: Value,
    pub strategy: Option<String>,
    pub fallback_after_s: Option<u32>,
    pub idempotency_key: Option<String>,
    pub priority: Option<MessagePriority>,
}

/// What a bulk accepted; rejected rows by index, code, field and reason.
#[derive(Serialize, ToSchema)]
pub struct BulkAccepted {
    pub bulk_id: String,
    pub total: i64,
    pub accepted: i64,
    pub written: i64,
    #[schema(value_type = Vec<Object>)]
    pub rejected: Value,
}

/// A bulk's notifications by status.
#[derive(Serialize, ToSchema)]
pub struct BulkStatus {
    pub bulk_id: String,
    pub total: i64,
    #[schema(value_type = Object)]
    pub by_status: Value,
    /// Where to list them.
    pub notifications: String,
}

/// Each channel: configured, ready, its limits, rate and health.
#[derive(Serialize, ToSchema)]
pub struct Capabilities {
    #[schema(value_type = Vec<Object>)]
    pub channels: Value,
}

/// `POST /v1/conversations`: a worker's first message to a contact.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "sms", "to": "+15551230001", "worker": "nurse-ana", "body": "Hi, this is Ana from North Clinic. Can we move your visit to 3pm?"}))]
pub struct ConversationInput {
    /// sms or whatsapp.
    pub channel: String,
    pub to: String,
    pub from: Option<String>,
    /// Who the replies go to (GET /v1/workers/{worker}/events).
    pub worker: String,
    /// worker (the default) or any.
    pub route_replies: Option<String>,
    pub body: Option<String>,
    pub template_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub template_variables: Option<Value>,
}

/// A conversation between a worker and a contact.
#[derive(Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    pub worker: Option<String>,
    pub route_replies: String,
    /// open or closed.
    pub status: String,
    pub closed_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
    pub closed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// On open: the first message.
    pub first_message: Option<ConversationMessage>,
}

/// A message in a conversation, either way.
#[derive(Serialize, ToSchema)]
pub struct ConversationMessage {
    pub seq: i64,
    /// out (the worker's) or in (the contact's).
    pub direction: String,
    pub message_id: Option<String>,
    pub body: Option<String>,
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Serialize, ToSchema)]
pub struct ReplyInput {
    pub body: Option<String>,
    pub template_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub template_variables: Option<Value>,
}

/// A conversation's messages, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ConversationMessages {
    pub conversation_id: String,
    #[schema(value_type = Vec<Object>)]
    pub items: Value,
}
