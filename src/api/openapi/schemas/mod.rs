//! Request and response bodies as the document describes them. Handlers
//! read bodies through the domain's parsers (which name the field that is
//! wrong) and answer with JSON built from stored rows; these types are the
//! shapes of both, kept beside the handlers' `#[utoipa::path]`s.

// Types made to be described, never built.
#![allow(dead_code, clippy::large_enum_variant)]

mod calls;
mod messages;
pub use calls::*;
pub use messages::*;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A page of a list.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` for the next page; null on the last.
    pub next_page_token: Option<String>,
}

/// When a campaign may dial, in a time zone.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"timezone": "America/Chicago", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "20:00"}))]
pub struct CallingWindow {
    /// An IANA zone name.
    pub timezone: String,
    /// Lower-case weekday names (every day when absent).
    pub days: Option<Vec<String>>,
    /// `HH:MM`, 24-hour.
    pub start: String,
    /// `HH:MM`, 24-hour; before `start` means past midnight.
    pub end: String,
}

/// A campaign's daily schedule: it wakes at `daily_start` on each of `days`.
#[derive(Serialize, ToSchema)]
pub struct DailySchedule {
    /// `HH:MM`, 24-hour.
    pub daily_start: String,
    pub days: Option<Vec<String>>,
    pub timezone: Option<String>,
}

/// A message sent to a target that ends `failed` with every try spent.
#[derive(Serialize, ToSchema)]
pub struct Fallback {
    #[schema(pattern = "^(sms|email)$")]
    pub channel: String,
    pub template_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    Emergency,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndHandle {
    Stop,
    Continue,
}

/// A campaign as created.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "name": "flu shot reminders", "outdial_id": "019b0000-0000-7000-8000-00000000000a",
    "outplan_id": "019b0000-0000-7000-8000-00000000000b", "agent_id": "019b0000-0000-7000-8000-00000000000c",
    "trunk": "default", "calls_per_second": 5, "max_concurrent_calls": 20,
    "calling_window": {"timezone": "America/Chicago", "start": "09:00", "end": "20:00"}}))]
pub struct CampaignInput {
    pub name: String,
    pub detail: Option<String>,
    pub outdial_id: String,
    pub outplan_id: String,
    pub agent_id: String,
    /// A configured trunk's name ("default" when absent).
    pub trunk: Option<String>,
    #[schema(minimum = 1)]
    pub max_concurrent_calls: Option<u32>,
    /// New calls per second (0.01 to 1000).
    pub calls_per_second: Option<f64>,
    pub calling_window: Option<CallingWindow>,
    pub schedule: Option<DailySchedule>,
    pub priority: Option<Priority>,
    pub end_handle: Option<EndHandle>,
    pub fallback: Option<Fallback>,
    pub amd: Option<Amd>,
    #[serde(flatten)]
    pub compliance: Compliance,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceProfile {
    UsTcpa,
    UkOfcom,
    FrConsumer,
    CaCrtc,
    Emergency,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapScope {
    Attempts,
    Conversations,
}

/// At most `max` contacts per `per_days` days per recipient number, counted
/// across every campaign and one-off call.
#[derive(Serialize, ToSchema)]
pub struct FrequencyCap {
    #[schema(maximum = 10000)]
    pub max: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub per_days: u32,
    pub scope: Option<CapScope>,
}

/// Answering-machine detection after the answer (after Twilio's
/// MachineDetection). The agent takes the call after the verdict.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"mode": "detect_message_end", "on_machine": "voicemail_drop", "voicemail_prompt": "appointment-ask.wav"}))]
pub struct Amd {
    /// off (the default), detect (a machine at its greeting's start) or
    /// detect_message_end (at the greeting's end: the beep, or silence).
    pub mode: Option<String>,
    #[schema(minimum = 3000, maximum = 59000)]
    pub timeout_ms: Option<u32>,
    #[schema(minimum = 1000, maximum = 6000)]
    pub speech_threshold_ms: Option<u32>,
    #[schema(minimum = 500, maximum = 5000)]
    pub speech_end_threshold_ms: Option<u32>,
    #[schema(minimum = 2000, maximum = 10000)]
    pub silence_timeout_ms: Option<u32>,
    /// hangup (the default; result machine), agent, or voicemail_drop
    /// (voicemail_prompt after the greeting; result voicemail_left).
    pub on_machine: Option<String>,
    pub voicemail_prompt: Option<String>,
    /// Where the verdict is POSTed as Twilio's AsyncAmd status callback
    /// (form: CallSid, AnsweredBy, MachineDetectionDuration).
    pub callback_url: Option<String>,
}

/// A campaign's compliance: a profile's rules, and its own, which may be
/// stricter, never looser (a looser one is a 422 naming the profile's limit).
/// Checked right before every call; a call refused only "for now" is
/// rescheduled to the first moment every rule allows.
#[derive(Serialize, ToSchema)]
pub struct Compliance {
    pub compliance_profile: Option<ComplianceProfile>,
    pub frequency_caps: Option<Vec<FrequencyCap>>,
    #[schema(maximum = 3650)]
    pub quiet_after_refusal_days: Option<u32>,
    #[schema(maximum = 87600)]
    pub redial_after_machine_hours: Option<u32>,
    #[schema(maximum = 87600)]
    pub redial_after_abandon_hours: Option<u32>,
    /// A share of live-answered calls (0.03 is 3%).
    #[schema(minimum = 0, maximum = 1)]
    pub max_abandon_rate: Option<f64>,
    /// A prompt (shipped, or a WAV under agents.prompt_dir) played to a
    /// person answered with no agent to take the call; required by us_tcpa
    /// and uk_ofcom.
    pub abandon_prompt: Option<String>,
}

/// A stored campaign.
#[derive(Serialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub detail: String,
    pub outdial_id: String,
    pub outplan_id: String,
    pub agent_id: String,
    pub trunk: String,
    pub max_concurrent_calls: u32,
    pub calls_per_second: f64,
    pub calling_window: Option<CallingWindow>,
    pub schedule: Option<DailySchedule>,
    pub priority: Priority,
    pub end_handle: EndHandle,
    pub fallback: Option<Fallback>,
    pub amd: Option<Amd>,
    #[serde(flatten)]
    pub compliance: Compliance,
    /// draft, running, paused, waiting, stopping, stopped or finished.
    pub status: String,
    /// Why it is in that status (e.g. "outside the calling window").
    pub status_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A JSON merge patch (RFC 7396) of the resource's fields; the result is
/// checked as a whole, as a new one would be.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object, example = json!({"calls_per_second": 10}))]
pub struct MergePatch(pub Value);

/// `POST /v1/campaigns/{id}/stop`'s optional body.
#[derive(Serialize, ToSchema)]
pub struct StopRequest {
    /// Hang up the live calls too (otherwise they run to their end).
    pub force: Option<bool>,
}

/// A campaign's numbers now.
#[derive(Serialize, ToSchema)]
pub struct CampaignStats {
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    /// `total` and `by_state` (idle, dialing, answered, … → count).
    #[schema(value_type = Object)]
    pub targets: Value,
    /// `total` and `by_outcome` (outcome → count).
    #[schema(value_type = Object)]
    pub attempts: Value,
    pub live_calls: i64,
    /// `current` (over the last 5 s) and `limit`, in calls per second.
    #[schema(value_type = Object)]
    pub calls_per_second: Value,
    /// For a campaign with an abandonment ceiling: `live_answered`,
    /// `abandoned`, `machine_false_positives` (estimated, where the profile
    /// counts them), `rate`, `max_rate`, `window_hours`.
    #[schema(value_type = Option<Object>)]
    pub abandonment: Option<Value>,
}

/// Any JSON object; its fields are described beside the route.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct AnyObject(pub Value);

/// The error shape of every route (the document's `Error`).
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorRef {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub details: Value,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// ok or unavailable.
    pub status: String,
    /// ok or unreachable.
    pub database: String,
}

/// `POST /v1/dnc`: one number or several.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"numbers": ["+15551230001", "+15551230002"], "reason": "asked not to be called"}))]
pub struct DncAdd {
    /// An E.164 number.
    pub number: Option<String>,
    pub numbers: Option<Vec<String>>,
    /// Up to 500 characters ("requested" when absent).
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DncAdded {
    pub added: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DncEntry {
    pub number: String,
    pub reason: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/suppressions`: an address no message goes to.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "email", "address": "pat@example.com", "reason": "complained"}))]
pub struct SuppressionAdd {
    /// email or sms.
    pub channel: String,
    /// An e-mail address or an E.164 number.
    pub address: String,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Suppression {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/webhooks`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"url": "https://crm.example.com/herald", "event_types": ["target.transition", "campaign.status"], "secret": "a-long-random-secret"}))]
pub struct WebhookInput {
    /// An http:// or https:// URL.
    pub url: String,
    /// Event types, or "*" for all (the default).
    pub event_types: Option<Vec<String>>,
    /// Signs each delivery (HMAC-SHA256); 16 to 256 characters; never shown again.
    pub secret: String,
}

/// A webhook and how its deliveries go.
#[derive(Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// enabled or disabled.
    pub status: String,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_success_at: Option<chrono::DateTime<chrono::Utc>>,
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    pub consecutive_failures: i64,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub delivered_count: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `{"ok": true}`.
#[derive(Serialize, ToSchema)]
pub struct Ok {
    pub ok: bool,
}

/// The Twilio call update's form (`Status=completed` hangs up).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TwilioUpdate {
    /// completed or canceled.
    pub status: String,
}

/// A call as Twilio's REST API shows it.
#[derive(Serialize, ToSchema)]
pub struct TwilioCall {
    /// CA followed by 32 hex digits.
    pub sid: String,
    pub account_sid: String,
    pub to: Option<String>,
    pub from: Option<String>,
    /// queued, ringing, in-progress, completed, busy, no-answer, canceled or failed.
    pub status: String,
    pub direction: String,
    pub api_version: String,
    /// RFC 2822.
    pub date_created: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// Seconds, as a string.
    pub duration: Option<String>,
    pub answered_by: Option<String>,
    pub uri: String,
}
