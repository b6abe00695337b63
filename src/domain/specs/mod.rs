//! The settings documents herald is configured with: outplans, agents,
//! campaigns and one-off call requests. Each is parsed once from a request
//! body into a typed struct (`Outplan::parse`, ...): every field checked,
//! the first error named with its path, defaults filled in. The struct is
//! what is stored (with serde: the JSON document shape of the API) and what
//! the rest of herald reads back.
//!
//! Defaults live here only: in each struct's `Default`, which the parsers
//! fill absent fields from and serde falls back on for documents stored
//! before a field existed.
//!
//! Must not: touch the store, the filesystem, the network or the agents.
//! Checks that need more than the document (an agent's script compiles and
//! its prompts load, a referenced id exists) are the caller's: a script is
//! compiled when its agent is built.

mod agent;
pub mod amd;
mod call;
mod campaign;
pub mod compliance;
mod outplan;

pub use agent::{AgentKind, AgentSpec};
pub use call::{CallRequest, ScheduleType};
pub use campaign::{CampaignSpec, DailyScheduleSpec, EndHandle, Priority, MIN_CALLS_PER_SECOND};
pub use outplan::{Outplan, RetryDelays};

/// One day in seconds: the bound of most durations.
const DAY_S: i64 = 86_400;

/// Serializes a parsed document into the JSON stored and returned by the API.
pub fn to_document<T: serde::Serialize>(spec: &T) -> serde_json::Value {
    serde_json::to_value(spec).expect("a settings document serializes")
}
