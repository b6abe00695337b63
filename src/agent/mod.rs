//! Agents: what talks to the callee once a call is answered.
//!
//! An [`Agent`] is built from an agent configuration (DESIGN.md, Agent
//! configurations). For each call it [`Agent::prepare`]s a [`Session`] while
//! the phone rings (a WebSocket is opened, prompts are loaded, ...), and the
//! session [`Session::run`]s on the answered call's media until the callee or
//! the agent ends it. One file per kind: [`media_stream`], [`sip`], [`script`].
//!
//! A session reports through its [`SessionControl`]: the result (`completed`,
//! `retry`, `opted_out` or a free-form disposition) and a request to hang up.
//! The same control is reachable from the REST API while the call is live
//! (`POST /v1/calls/{id}/result`, Twilio's call update), through [`Sessions`].
//!
//! Must not: write to the store (the scheduler records the result with the
//! attempt), or outlive its call by more than [`SESSION_END_GRACE`].

pub mod media_stream;
pub mod script;
pub mod sip;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::domain::specs::{self, AgentSpec};
use crate::domain::FieldError;
use crate::media::prompts::Prompts;
use crate::sip::CallMedia;
use crate::sip::Telephony;

/// How long a session may take to wrap up after its call has ended.
pub const SESSION_END_GRACE: Duration = Duration::from_secs(2);
/// How long an answered call waits for its session to be ready (e.g. a
/// WebSocket still connecting) before the attempt ends `agent_unavailable`.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest result a session may set.
pub const MAX_RESULT_LEN: usize = 200;

/// Who is being called, for the agent.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The attempt (the `calls` row).
    pub attempt_id: String,
    /// Twilio-shaped ids of this call: `CA…`, `MZ…`, `AC…` (+ 32 hex).
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: String,
    pub campaign_id: Option<String>,
    pub target_id: Option<String>,
    /// The dialed destination (E.164 number or SIP URI).
    pub to: String,
    pub from: Option<String>,
    /// The target's variables.
    pub variables: Map<String, Value>,
}

impl SessionContext {
    /// `customParameters` and `X-Herald-*` headers: the target's variables,
    /// then the agent's parameters, then `campaign_id` and `target_id`.
    pub fn parameters(&self, agent: &AgentConfig) -> Map<String, Value> {
        let mut p = self.variables.clone();
        for (k, v) in &agent.parameters {
            p.insert(k.clone(), v.clone());
        }
        if let Some(c) = &self.campaign_id {
            p.insert("campaign_id".into(), Value::String(c.clone()));
        }
        if let Some(t) = &self.target_id {
            p.insert("target_id".into(), Value::String(t.clone()));
        }
        p
    }
}

/// `CA` + the attempt's UUID as 32 hex digits: the attempt id and the call
/// sid map onto each other.
pub fn call_sid(attempt_id: &str) -> String {
    format!("CA{}", attempt_id.replace('-', ""))
}

/// The attempt id of a call sid made by [`call_sid`].
pub fn attempt_of_call_sid(sid: &str) -> Option<String> {
    let hex = sid.strip_prefix("CA")?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `MZ` + 32 random hex digits.
pub fn stream_sid() -> String {
    format!("MZ{}", uuid::Uuid::new_v4().simple())
}

/// An agent configuration, parsed from its stored spec.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub id: String,
    pub name: String,
    pub kind: AgentKind,
    pub parameters: Map<String, Value>,
    pub max_concurrent_sessions: u32,
}

#[derive(Debug, Clone)]
pub enum AgentKind {
    /// `at_ringing`: the socket opens while the phone rings, not at the answer.
    MediaStream {
        url: String,
        at_ringing: bool,
    },
    Sip {
        uri: String,
    },
    Script {
        script: Arc<script::Script>,
    },
}

impl AgentConfig {
    /// From a parsed agent configuration, loading a script's prompts from
    /// `prompts` (this reads files: call it from a blocking task). A script
    /// that does not compile (unknown step, shipped script or prompt not
    /// found) is an error naming the field, as is a configuration missing
    /// what its kind needs.
    pub fn from_spec(
        id: &str,
        spec: &AgentSpec,
        prompts: &Prompts,
    ) -> Result<AgentConfig, FieldError> {
        let url = || {
            spec.url.clone().ok_or_else(|| {
                FieldError::new("url", format!("a {} agent needs a url", spec.kind.as_str()))
            })
        };
        let kind = match spec.kind {
            specs::AgentKind::MediaStream => AgentKind::MediaStream {
                url: url()?,
                at_ringing: spec.connect.as_deref() == Some("ringing"),
            },
            specs::AgentKind::Sip => AgentKind::Sip { uri: url()? },
            specs::AgentKind::Script => {
                let script = spec
                    .script
                    .as_ref()
                    .ok_or_else(|| FieldError::new("script", "is required for a script agent"))?;
                AgentKind::Script {
                    script: Arc::new(script::Script::from_spec(script, prompts)?),
                }
            }
        };
        Ok(AgentConfig {
            id: id.to_string(),
            name: spec.name.clone(),
            kind,
            parameters: spec.parameters.clone(),
            max_concurrent_sessions: spec.max_concurrent_sessions,
        })
    }
}

/// Why a session could not be had: the attempt ends `agent_unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AgentUnavailable(pub String);

/// Prepares sessions for calls.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Gets a session ready (while the phone rings, or at the answer: see
    /// [`Agent::prepares_at_ringing`]). Dropping the session (the call was
    /// not answered) releases what it holds.
    async fn prepare(&self, ctx: &SessionContext) -> Result<Box<dyn Session>, AgentUnavailable>;

    /// Whether its session is prepared while the phone rings (else when the
    /// call is answered).
    fn prepares_at_ringing(&self) -> bool {
        true
    }
}

/// One agent session on one answered call.
#[async_trait]
pub trait Session: Send {
    /// Runs until the call ends (`media.next_event()` returns `None`: the
    /// callee hung up or herald ended the call) or the agent is done (it
    /// calls [`SessionControl::hang_up`] and returns). The result goes
    /// through `ctl`.
    async fn run(self: Box<Self>, media: CallMedia, ctl: Arc<SessionControl>);
}

/// What the rest of herald needs to build agents.
#[derive(Clone)]
pub struct AgentDeps {
    /// For the second call leg of SIP agents.
    pub telephony: Arc<dyn Telephony>,
    /// Where script agents' prompts are read from.
    pub prompts: Prompts,
}

/// Builds the agent for a configuration.
pub fn build(config: &AgentConfig, deps: &AgentDeps) -> Arc<dyn Agent> {
    match &config.kind {
        AgentKind::MediaStream { url, .. } => Arc::new(media_stream::MediaStreamAgent::new(
            url.clone(),
            config.clone(),
        )),
        AgentKind::Sip { uri } => Arc::new(sip::SipAgent::new(
            uri.clone(),
            config.clone(),
            deps.telephony.clone(),
        )),
        AgentKind::Script { script } => Arc::new(script::ScriptAgent::new(script.clone())),
    }
}

/// An agent and the spec it was built from.
type Built = (AgentSpec, Arc<dyn Agent>);

/// Agents built from their stored configurations, the live sessions, and
/// what sessions need from the rest of herald. Cheap to clone.
#[derive(Clone)]
pub struct AgentRuntime {
    pub sessions: Sessions,
    /// The `AC…` sid shown to bots and accepted on the Twilio-style REST routes.
    pub account_sid: String,
    pub prepare_timeout: Duration,
    deps: AgentDeps,
    /// By agent id: the spec an agent was built from, and the agent.
    built: Arc<Mutex<HashMap<String, Built>>>,
}

impl AgentRuntime {
    pub fn new(deps: AgentDeps, account_sid: String, prepare_timeout: Duration) -> AgentRuntime {
        AgentRuntime {
            sessions: Sessions::default(),
            account_sid,
            prepare_timeout,
            deps,
            built: Arc::default(),
        }
    }

    /// The agent of a stored configuration, built again only when its spec
    /// has changed (a script's prompts are loaded once).
    /// A prompt's μ-law audio (shipped, or under `agents.prompt_dir`), read
    /// in a blocking task.
    pub async fn load_prompt(&self, name: &str) -> Result<bytes::Bytes, String> {
        let (prompts, name) = (self.deps.prompts.clone(), name.to_string());
        tokio::task::spawn_blocking(move || prompts.load(&name).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }

    pub fn agent(&self, id: &str, spec: &AgentSpec) -> Result<Arc<dyn Agent>, String> {
        if let Some((s, a)) = self.built.lock().expect("agents").get(id) {
            if s == spec {
                return Ok(a.clone());
            }
        }
        let config =
            AgentConfig::from_spec(id, spec, &self.deps.prompts).map_err(|e| e.to_string())?;
        let agent = build(&config, &self.deps);
        self.keep(id, spec.clone(), agent.clone());
        Ok(agent)
    }

    /// Builds the agent of a new or changed configuration on a blocking
    /// task (a script's prompts are read from disk, never on the request's
    /// thread); the API calls it before storing the configuration, so a
    /// script that does not load is refused naming the field.
    pub async fn build_checked(&self, spec: &AgentSpec) -> Result<Arc<dyn Agent>, FieldError> {
        let (spec, deps) = (spec.clone(), self.deps.clone());
        tokio::task::spawn_blocking(move || {
            let config = AgentConfig::from_spec("", &spec, &deps.prompts)?;
            Ok(build(&config, &deps))
        })
        .await
        .map_err(|e| FieldError::new("script", format!("could not be loaded: {e}")))?
    }

    /// Keeps `agent`, built from `spec`, as agent `id`'s until its spec changes.
    pub fn keep(&self, id: &str, spec: AgentSpec, agent: Arc<dyn Agent>) {
        self.built
            .lock()
            .expect("agents")
            .insert(id.to_string(), (spec, agent));
    }

    /// The context of one call for its agent.
    pub fn context(
        &self,
        attempt_id: &str,
        campaign_id: Option<&str>,
        target_id: Option<&str>,
        to: &str,
        from: Option<&str>,
        variables: &Value,
    ) -> SessionContext {
        SessionContext {
            attempt_id: attempt_id.to_string(),
            call_sid: call_sid(attempt_id),
            stream_sid: stream_sid(),
            account_sid: self.account_sid.clone(),
            campaign_id: campaign_id.map(str::to_string),
            target_id: target_id.map(str::to_string),
            to: to.to_string(),
            from: from.map(str::to_string),
            variables: variables.as_object().cloned().unwrap_or_default(),
        }
    }
}

/// A live session's shared state: its result and a way to end the call.
#[derive(Debug, Default)]
pub struct SessionControl {
    hangup: CancellationToken,
    result: Mutex<Option<String>>,
    answered: std::sync::atomic::AtomicBool,
    connected: std::sync::atomic::AtomicBool,
}

impl SessionControl {
    /// Asks for the call to be hung up (the agent is done, or a REST client said so).
    pub fn hang_up(&self) {
        self.hangup.cancel();
    }

    pub fn hangup_requested(&self) -> &CancellationToken {
        &self.hangup
    }

    /// Sets the result; the last one set wins. Refuses an empty or overlong
    /// value, or one with control characters.
    pub fn set_result(&self, value: &str) -> Result<(), String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("must not be empty".into());
        }
        if v.len() > MAX_RESULT_LEN {
            return Err(format!("must be at most {MAX_RESULT_LEN} bytes"));
        }
        if v.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        *self.result.lock().expect("session result") = Some(v.to_string());
        Ok(())
    }

    pub fn result(&self) -> Option<String> {
        self.result.lock().expect("session result").clone()
    }

    pub fn mark_answered(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_answered(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The agent's session took the answered call.
    pub fn mark_connected(&self) {
        self.connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The controls of live calls, by attempt id: where the REST API finds them.
#[derive(Clone, Default)]
pub struct Sessions {
    live: Arc<Mutex<HashMap<String, Arc<SessionControl>>>>,
}

impl Sessions {
    /// Registers a call's control until the guard is dropped.
    pub fn register(&self, attempt_id: &str) -> (Arc<SessionControl>, SessionGuard) {
        let ctl = Arc::new(SessionControl::default());
        self.live
            .lock()
            .expect("sessions")
            .insert(attempt_id.to_string(), ctl.clone());
        let guard = SessionGuard {
            sessions: self.clone(),
            attempt_id: attempt_id.to_string(),
        };
        (ctl, guard)
    }

    pub fn get(&self, attempt_id: &str) -> Option<Arc<SessionControl>> {
        self.live.lock().expect("sessions").get(attempt_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.live.lock().expect("sessions").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a call's control from [`Sessions`] when dropped.
pub struct SessionGuard {
    sessions: Sessions,
    attempt_id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions
            .live
            .lock()
            .expect("sessions")
            .remove(&self.attempt_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sids_and_attempt_ids_map_onto_each_other() {
        let id = uuid::Uuid::now_v7().to_string();
        let sid = call_sid(&id);
        assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");
        assert_eq!(attempt_of_call_sid(&sid).as_deref(), Some(id.as_str()));
        assert_eq!(attempt_of_call_sid("CA123"), None);
        assert_eq!(attempt_of_call_sid(&format!("MZ{}", &sid[2..])), None);
        assert_eq!(
            attempt_of_call_sid("CAzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            None
        );
        let mz = stream_sid();
        assert!(mz.starts_with("MZ") && mz.len() == 34);
    }

    #[test]
    fn results_are_checked_and_the_last_wins() {
        let c = SessionControl::default();
        assert!(c.set_result("  ").is_err());
        assert!(c.set_result(&"x".repeat(201)).is_err());
        assert!(c.set_result("a\nb").is_err());
        assert_eq!(c.result(), None);
        c.set_result("retry").unwrap();
        c.set_result(" confirmed ").unwrap();
        assert_eq!(c.result().as_deref(), Some("confirmed"));
    }
}
