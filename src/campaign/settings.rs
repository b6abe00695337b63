//! A campaign's settings as its task applies them: read from the campaign,
//! its outplan and its agent in one place ([`load_settings`]), every tick,
//! so PATCHes and status changes apply at once.

use std::time::Duration;

use super::rules::pacing::Priority;
use super::rules::retry::RetryPolicy;
use super::rules::schedule::{schedule_timezone, DailySchedule};
use super::rules::window::Window;
use crate::compliance::Rules;
use crate::domain::specs::amd::AmdSpec;
use crate::domain::specs::{AgentKind, AgentSpec, EndHandle};
use crate::domain::{CampaignStatus, FieldError, StatusCause};
use crate::store::{Store, StoreError};

/// A campaign's settings.
pub(crate) struct Settings {
    pub status: CampaignStatus,
    pub cause: Option<StatusCause>,
    pub outdial_id: String,
    pub trunk: String,
    pub agent_id: Option<String>,
    pub agent_sessions: u32,
    /// The agent's configuration.
    pub agent_spec: Option<AgentSpec>,
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
    /// The compliance gate's rules (None: the campaign has none).
    pub compliance: Option<Rules>,
    /// Its agent is an artificial voice (a bot or a script, not a person).
    pub artificial_voice: bool,
    pub abandon_prompt: Option<String>,
    pub amd: Option<AmdSpec>,
}

/// Reads campaign `id`'s settings.
pub(crate) async fn load_settings(store: &Store, id: &str) -> Result<Settings, StoreError> {
    let c = store.get_campaign(id).await?;
    let plan = store.get_outplan(&c.outplan_id).await?;
    let agent_spec = match &c.agent_id {
        Some(a) => Some(store.get_agent(a).await?),
        None => None,
    };
    let agent_sessions = agent_spec
        .as_ref()
        .map_or(u32::MAX, |a| a.max_concurrent_sessions);
    let status = CampaignStatus::parse(&c.status)
        .ok_or_else(|| StoreError::Corrupt(format!("campaign {id} has status {:?}", c.status)))?;
    let spec = &c.spec;
    // Parsed documents always read; one that does not stops the campaign's
    // task rather than dial outside its window.
    let corrupt = |e: FieldError| StoreError::Corrupt(format!("campaign {id}: {e}"));
    let window = match &spec.calling_window {
        Some(w) => Some(Window::from_spec(w).map_err(corrupt)?),
        None => None,
    };
    let schedule = match &spec.schedule {
        Some(s) => Some(DailySchedule::from_spec(s).map_err(corrupt)?),
        None => None,
    };
    let compliance = spec.compliance.is_set().then(|| spec.compliance.rules());
    let artificial_voice = agent_spec
        .as_ref()
        .is_some_and(|a| a.kind != AgentKind::Sip);
    // A profile's shortest ring applies whatever the outplan says.
    let min_ring = compliance.as_ref().and_then(|r| r.min_ring_s).unwrap_or(0);
    Ok(Settings {
        compliance,
        artificial_voice,
        abandon_prompt: spec.compliance.abandon_prompt.clone(),
        amd: spec.amd.clone(),
        status,
        cause: c.status_cause,
        outdial_id: c.outdial_id,
        trunk: spec.trunk.clone(),
        agent_id: c.agent_id,
        agent_sessions,
        agent_spec,
        max_concurrent: spec.max_concurrent_calls,
        cps: spec.calls_per_second,
        window,
        priority: spec.priority,
        schedule,
        schedule_tz: schedule_timezone(spec),
        end_continue: spec.end_handle == EndHandle::Continue,
        policy: RetryPolicy::from_outplan(&plan),
        ring_timeout: Duration::from_secs(plan.dial_timeout_s.max(min_ring).into()),
        max_duration: Duration::from_secs(plan.max_call_duration_s.into()),
        caller_id: plan.caller_id,
    })
}
