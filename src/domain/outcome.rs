//! Attempt outcomes: data, not errors. Each has a stable string code that is
//! stored on the attempt row. The SIP-to-outcome classification lives in
//! `sip::classify`; what each outcome does to a target lives in the campaign
//! rules.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Busy,
    NoAnswer,
    Rejected,
    InvalidDestination,
    TemporaryFailure,
    TrunkError,
    Interrupted,
    /// Kept for attempts stored before `abandoned` existed.
    AgentUnavailable,
    /// Answered by a person nobody was connected to (the agent was not
    /// ready, or would not take the call).
    Abandoned,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Answered,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Rejected,
        Outcome::InvalidDestination,
        Outcome::TemporaryFailure,
        Outcome::TrunkError,
        Outcome::Interrupted,
        Outcome::AgentUnavailable,
        Outcome::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Rejected => "rejected",
            Outcome::InvalidDestination => "invalid_destination",
            Outcome::TemporaryFailure => "temporary_failure",
            Outcome::TrunkError => "trunk_error",
            Outcome::Interrupted => "interrupted",
            Outcome::AgentUnavailable => "agent_unavailable",
            Outcome::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_through_its_code() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
    }
}
