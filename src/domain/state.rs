//! The seven target states and which transitions between them are legal.

use serde::{Deserialize, Serialize};

/// A target's state. Stored as its lowercase string code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Idle,
    Dialing,
    Answered,
    Busy,
    NoAnswer,
    Finished,
    Failed,
}

impl TargetState {
    pub const ALL: [TargetState; 7] = [
        TargetState::Idle,
        TargetState::Dialing,
        TargetState::Answered,
        TargetState::Busy,
        TargetState::NoAnswer,
        TargetState::Finished,
        TargetState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Idle => "idle",
            TargetState::Dialing => "dialing",
            TargetState::Answered => "answered",
            TargetState::Busy => "busy",
            TargetState::NoAnswer => "no_answer",
            TargetState::Finished => "finished",
            TargetState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TargetState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the target will never be dialed again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TargetState::Finished | TargetState::Failed)
    }

    /// The transitions of DESIGN.md's state diagram.
    pub fn can_move_to(self, to: TargetState) -> bool {
        use TargetState::*;
        matches!(
            (self, to),
            (Idle, Dialing)
                | (Idle, Failed) // expired, dnc, no destination left
                | (Dialing, Answered)
                | (Dialing, Busy)
                | (Dialing, NoAnswer)
                | (Dialing, Idle) // error outcome, retry scheduled
                | (Dialing, Failed)
                | (Answered, Finished)
                | (Answered, Idle) // agent asked for a retry
                | (Answered, Failed)
                | (Busy, Idle)
                | (Busy, Failed)
                | (NoAnswer, Idle)
                | (NoAnswer, Failed)
        )
    }
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_code() {
        for s in TargetState::ALL {
            assert_eq!(TargetState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TargetState::parse("ringing"), None);
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in [TargetState::Finished, TargetState::Failed] {
            for to in TargetState::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn busy_goes_on_to_idle_or_failed_only() {
        let outs: Vec<_> = TargetState::ALL
            .into_iter()
            .filter(|t| TargetState::Busy.can_move_to(*t))
            .collect();
        assert_eq!(outs, vec![TargetState::Idle, TargetState::Failed]);
    }
}
