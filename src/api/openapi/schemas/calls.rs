//! Targets, outdials, outplans, agents and calls.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A number (E.164) or SIP URI to call.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DestinationInput {
    /// `+15551230001` or `sip:pat@example.com`.
    Text(String),
    Object {
        /// tel or sip (guessed from `target` when absent).
        #[serde(rename = "type")]
        kind: Option<String>,
        target: String,
    },
}

/// A person to call.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "Pat Doe", "destinations": ["+15551230001"], "variables": {"appointment_time": "Tue 10:30"}, "timezone": "America/Chicago"}))]
pub struct TargetInput {
    pub name: Option<String>,
    /// Tried in order (1 to 10).
    pub destinations: Option<Vec<DestinationInput>>,
    /// One destination (instead of destinations).
    pub destination: Option<DestinationInput>,
    /// Tries per destination (the outplan's when absent).
    pub try_count_max: Option<u32>,
    /// Passed to the agent (strings, numbers, booleans).
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
    /// An IANA zone (inferred from the number when absent).
    pub timezone: Option<String>,
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The client's own key: a target sent twice with it is stored once.
    pub client_token: Option<String>,
    pub detail: Option<String>,
    /// The consent on record: a compliance profile may require
    /// `express_written` for calls answered by an artificial voice.
    pub consent: Option<Consent>,
    /// When it was given (needs `consent`).
    pub consent_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    None,
    Express,
    ExpressWritten,
}

/// The compliance gate's last refusal of a target.
#[derive(Serialize, ToSchema)]
pub struct Refusal {
    /// dnc, consent_required, outside_calling_hours, public_holiday,
    /// holiday_table_expired, frequency_cap, quiet_after_refusal,
    /// redial_after_machine, redial_after_abandon, recipient_zone_unknown.
    pub reason: String,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// When every rule allows the call (absent: not by waiting).
    pub next_allowed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /v1/outdials/{id}/targets`: one target, a list, or `{"targets": [...]}`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TargetsInput {
    One(TargetInput),
    List(Vec<TargetInput>),
    Wrapped { targets: Vec<TargetInput> },
}

/// A target and where it stands.
#[derive(Serialize, ToSchema)]
pub struct Target {
    pub id: String,
    pub outdial_id: String,
    pub name: String,
    #[schema(value_type = Vec<Object>)]
    pub destinations: Value,
    pub destination_index: i64,
    pub try_count_max: i64,
    pub try_count_current: i64,
    /// idle, dialing, answered, busy, no_answer, finished or failed.
    pub state: String,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub timezone: Option<String>,
    #[schema(value_type = Object)]
    pub variables: Value,
    pub client_token: Option<String>,
    pub last_outcome: Option<String>,
    pub fallback_message_id: Option<String>,
    pub reason: Option<String>,
    pub consent: Option<Consent>,
    pub consent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_refusal: Option<Refusal>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What a list (JSON or CSV) added: counts, and each duplicate and
/// rejected row with its line (or index), column (or field) and reason.
#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    pub received: i64,
    pub created: i64,
    pub existing: i64,
    pub duplicate_count: i64,
    pub invalid_count: i64,
    #[schema(value_type = Vec<Object>)]
    pub duplicates: Value,
    #[schema(value_type = Vec<Object>)]
    pub invalid: Value,
    /// More were duplicate or rejected than are listed.
    pub truncated: bool,
    /// Per row, for JSON lists of up to 10,000.
    #[schema(value_type = Option<Vec<Object>>)]
    pub items: Option<Value>,
}

/// A single target (200 when its client_token was seen) or a list's report.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TargetsAdded {
    Report(ImportReport),
    Target(Target),
}

/// A target's state transition.
#[derive(Serialize, ToSchema)]
pub struct TargetEvent {
    pub id: i64,
    pub target_id: String,
    pub campaign_id: Option<String>,
    pub from: String,
    pub to: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub attempt_id: Option<String>,
    pub sip_code: Option<i64>,
    pub reason: Option<String>,
}

/// `POST /v1/calls`: a one-off call.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"to": "+15551230001", "agent_id": "019b0000-0000-7000-8000-00000000000c", "schedule_type": "scheduled", "scheduled_at": "2026-12-05T15:00:00Z", "max_retries": 2}))]
pub struct CallInput {
    /// An E.164 number or a SIP URI.
    pub to: String,
    /// The caller id (E.164); the trunk's when absent.
    pub from: Option<String>,
    pub agent_id: Option<String>,
    pub trunk: Option<String>,
    /// immediate (the default) or scheduled.
    pub schedule_type: Option<String>,
    /// Required with scheduled; in the past dials at once.
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds, 1 to 86400 (3600).
    pub max_duration: Option<u32>,
    /// Tries after the first, 0 to 10.
    pub max_retries: Option<u32>,
    /// Seconds, 5 to 600.
    pub ring_timeout: Option<u32>,
    /// Seconds between tries.
    pub retry_delay: Option<u32>,
    /// The callee's zone (IANA), for a compliance profile's calling hours;
    /// else inferred from the number.
    pub timezone: Option<String>,
    pub consent: Option<Consent>,
    pub amd: Option<super::Amd>,
    #[serde(flatten)]
    pub compliance: super::Compliance,
}

/// A call: a campaign attempt or a one-off call (with its tries).
#[derive(Serialize, ToSchema)]
pub struct Call {
    pub id: String,
    pub campaign_id: Option<String>,
    pub target_id: Option<String>,
    pub destination_index: Option<i64>,
    pub attempt: Option<i64>,
    pub agent_id: Option<String>,
    pub trunk: Option<String>,
    pub status: String,
    pub sip_call_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// answered, busy, no_answer, rejected, invalid_number, trunk_error, …
    pub outcome: Option<String>,
    pub sip_code: Option<i64>,
    pub q850_cause: Option<i64>,
    /// The agent's result (completed, retry, opted_out or a disposition).
    pub result: Option<String>,
    pub hangup_by: Option<String>,
    pub reason: Option<String>,
    /// Who answered, when answering-machine detection ran: human,
    /// machine_start, machine_end_beep, machine_end_silence,
    /// machine_end_other, fax or unknown.
    pub answered_by: Option<String>,
    /// When the verdict came, in ms after the answer.
    pub amd_ms: Option<i64>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub invite_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ringing_at: Option<chrono::DateTime<chrono::Utc>>,
    pub answered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_ms: Option<i64>,
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A one-off call's request.
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
    /// A one-off call's tries.
    #[schema(value_type = Option<Vec<Object>>)]
    pub attempts: Option<Value>,
}

/// `PATCH /v1/calls/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Reschedule {
    pub scheduled_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/calls/{id}/cancel` and the like.
#[derive(Serialize, ToSchema)]
pub struct Reason {
    pub reason: Option<String>,
}

/// `POST /v1/calls/{id}/result`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"result": "completed"}))]
pub struct ResultInput {
    /// completed, retry, opted_out or a disposition of your own.
    pub result: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResultSet {
    pub id: String,
    pub result: Option<String>,
    pub live: bool,
}

/// `POST /v1/outdials`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "december reminders"}))]
pub struct OutdialInput {
    pub name: String,
    pub detail: Option<String>,
}

/// An outdial: a list of targets.
#[derive(Serialize, ToSchema)]
pub struct Outdial {
    pub id: String,
    pub name: String,
    pub detail: String,
    /// On a single outdial: its targets' count, and by state.
    pub target_count: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub target_counts: Option<Value>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/outplans`: how targets are retried.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "three tries", "dial_timeout_s": 30, "try_count_max": 3, "retry": {"busy_s": 600, "no_answer_s": 3600}}))]
pub struct OutplanInput {
    pub name: String,
    pub detail: Option<String>,
    pub caller_id: Option<String>,
    pub dial_timeout_s: Option<u32>,
    pub try_count_max: Option<u32>,
    /// Seconds before the next try, by outcome.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<Value>,
    pub max_call_duration_s: Option<u32>,
}

/// A stored outplan.
#[derive(Serialize, ToSchema)]
pub struct Outplan {
    pub id: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Value,
}

/// `POST /v1/agents`: who talks to an answered call.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "reminder bot", "kind": "media_stream", "url": "wss://bot.example.com/stream", "parameters": {"clinic": "North"}}))]
pub struct AgentInput {
    pub name: String,
    pub detail: Option<String>,
    /// media_stream (a WebSocket bot, Twilio Media Streams), sip or script.
    pub kind: String,
    /// ws:// or wss:// (media_stream), a SIP URI (sip).
    pub url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    pub max_concurrent_sessions: Option<u32>,
    /// A shipped script's name or a script object (script).
    #[schema(value_type = Option<Object>)]
    pub script: Option<Value>,
    /// media_stream only: the socket opens at answer (the default) or at
    /// ringing.
    pub connect: Option<String>,
}

/// A stored agent.
#[derive(Serialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Value,
}
