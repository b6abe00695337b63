//! A campaign's settings as its task applies them: read from the campaign,
//! its outplan and its agent in one place ([`load_settings`]), every tick,
//! so PATCHes and status changes apply at once.

use std::time::Duration;

use serde_json::Value;

use super::rules::pacing::Priority;
use super::rules::retry::RetryPolicy;
use super::rules::schedule::{schedule_timezone, DailySchedule};
use super::rules::window::Window;
use crate::domain::{CampaignStatus, StatusCause};
use crate::store::documents::{AGENTS, OUTPLANS};
use crate::store::{Store, StoreError};

/// A campaign's settings.
pub(crate) struct Settings {
    pub status: CampaignStatus,
    pub cause: Option<StatusCause>,
    pub outdial_id: String,
    pub trunk: String,
    pub agent_id: Option<String>,
    pub agent_sessions: u32,
    /// The agent's stored spec.
    pub agent_spec: Option<Value>,
    pub max_concurrent: u32,
    pub cps: f64,
    pub window: Option<(Window, chrono_tz::Tz)>,
    pub priority: Priority,
    pub end_continue: bool,
    pub schedule: Option<DailySchedule>,
    pub schedule_tz: chrono_tz::Tz,
    pub policy: RetryPolicy,
    pub ring_timeout: Duration,
    pub max_duration: Duration,
    pub caller_id: Option<String>,
}

/// Reads campaign `id`'s settings.
pub(crate) async fn load_settings(store: &Store, id: &str) -> Result<Settings, StoreError> {
    let c = store.get_campaign(id).await?;
    let plan = store.get_doc(OUTPLANS, &c.outplan_id).await?;
    let agent_spec = match &c.agent_id {
        Some(a) => Some(store.get_doc(AGENTS, a).await?.spec),
        None => None,
    };
    let agent_sessions = match &agent_spec {
        Some(spec) => crate::agent::max_concurrent_sessions(spec),
        None => u32::MAX,
    };
    let status = CampaignStatus::parse(&c.status)
        .ok_or_else(|| StoreError::Corrupt(format!("campaign {id} has status {:?}", c.status)))?;
    Ok(Settings {
        status,
        cause: c.status_cause,
        outdial_id: c.outdial_id,
        trunk: c.spec["trunk"].as_str().unwrap_or("default").to_string(),
        agent_id: c.agent_id,
        agent_sessions,
        agent_spec,
        max_concurrent: c.spec["max_concurrent_calls"].as_u64().unwrap_or(10) as u32,
        cps: c.spec["calls_per_second"].as_f64().unwrap_or(1.0),
        window: Window::from_spec(&c.spec["calling_window"]),
        priority: Priority::from_spec(&c.spec),
        schedule: DailySchedule::from_spec(&c.spec["schedule"]),
        schedule_tz: schedule_timezone(&c.spec),
        end_continue: c.spec["end_handle"] == "continue",
        policy: RetryPolicy::from_outplan(&plan.spec),
        ring_timeout: Duration::from_secs(plan.spec["dial_timeout_s"].as_u64().unwrap_or(30)),
        max_duration: Duration::from_secs(
            plan.spec["max_call_duration_s"].as_u64().unwrap_or(3600),
        ),
        caller_id: plan.spec["caller_id"].as_str().map(str::to_string),
    })
}
