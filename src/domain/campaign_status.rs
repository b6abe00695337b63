//! A campaign's status, the moves between statuses (the API's verbs and the
//! scheduler's own), and the typed cause of a status that control flow
//! branches on (a forced stop, a wait for the daily start). The
//! `status_reason` text shown by the API is for people; the cause is for code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignStatus {
    Draft,
    Running,
    /// Running, with nothing to dial until a window opens or a daily start.
    Waiting,
    Paused,
    /// Stop requested: no new calls; stopped once live calls end.
    Stopping,
    Stopped,
    Finished,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 7] = [
        CampaignStatus::Draft,
        CampaignStatus::Running,
        CampaignStatus::Waiting,
        CampaignStatus::Paused,
        CampaignStatus::Stopping,
        CampaignStatus::Stopped,
        CampaignStatus::Finished,
    ];

    /// The statuses the scheduler keeps a task for.
    pub const ACTIVE: [CampaignStatus; 4] = [
        CampaignStatus::Running,
        CampaignStatus::Waiting,
        CampaignStatus::Paused,
        CampaignStatus::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Running => "running",
            CampaignStatus::Waiting => "waiting",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Stopping => "stopping",
            CampaignStatus::Stopped => "stopped",
            CampaignStatus::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignStatus> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of status: a verb of the API or a step of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMove {
    /// `POST …/start`.
    Start,
    /// `POST …/pause`, or the scheduler pausing on a trunk or agent error.
    Pause,
    /// `POST …/resume`.
    Resume,
    /// `POST …/stop`.
    Stop,
    /// The scheduler: nothing to dial before a window opening or a daily start.
    Wait,
    /// The scheduler: dialing again after a wait.
    Wake,
    /// The scheduler: every target is done.
    Finish,
    /// The scheduler: a stopping campaign's last call ended.
    Halt,
}

impl StatusMove {
    /// The statuses this move applies to.
    pub fn from(self) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match self {
            StatusMove::Start => &[Draft, Stopped, Finished],
            StatusMove::Pause => &[Running, Waiting],
            StatusMove::Resume => &[Paused],
            StatusMove::Stop => &[Running, Waiting, Paused],
            StatusMove::Wait => &[Running],
            StatusMove::Wake => &[Waiting],
            StatusMove::Finish => &[Running],
            StatusMove::Halt => &[Stopping],
        }
    }

    /// The status it leads to.
    pub fn to(self) -> CampaignStatus {
        match self {
            StatusMove::Start | StatusMove::Resume | StatusMove::Wake => CampaignStatus::Running,
            StatusMove::Pause => CampaignStatus::Paused,
            StatusMove::Stop => CampaignStatus::Stopping,
            StatusMove::Wait => CampaignStatus::Waiting,
            StatusMove::Finish => CampaignStatus::Finished,
            StatusMove::Halt => CampaignStatus::Stopped,
        }
    }

    /// Whether a campaign that is `current` may make this move.
    pub fn allowed(self, current: CampaignStatus) -> bool {
        self.from().contains(&current)
    }

    /// [`StatusMove::from`] as the strings the store compares with.
    pub fn from_strs(self) -> Vec<&'static str> {
        self.from().iter().map(|s| s.as_str()).collect()
    }
}

/// A status change asked for: the move, its reason text for people, its
/// typed cause, and who asked (`scheduler`, `api:<key name>`,
/// `console:<key name>`; kept in the status log and the event).
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub m: StatusMove,
    pub reason: Option<&'a str>,
    pub cause: Option<StatusCause>,
    pub by: &'a str,
}

impl<'a> StatusChange<'a> {
    /// The scheduler's own move.
    pub fn scheduler(m: StatusMove, reason: Option<&'a str>, cause: Option<StatusCause>) -> Self {
        StatusChange {
            m,
            reason,
            cause,
            by: SCHEDULER,
        }
    }
}

/// Who made the scheduler's own status changes.
pub const SCHEDULER: &str = "scheduler";

/// Why a campaign is in its status, when code must know (stored beside the
/// `status_reason` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCause {
    /// Stopping with `{"force": true}`: live calls are hung up.
    ForceStop,
    /// Waiting for the next daily start of its schedule.
    DailyStart,
}

impl StatusCause {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCause::ForceStop => "force_stop",
            StatusCause::DailyStart => "daily_start",
        }
    }

    pub fn parse(s: &str) -> Option<StatusCause> {
        [StatusCause::ForceStop, StatusCause::DailyStart]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::*;
    use super::*;

    #[test]
    fn statuses_and_causes_round_trip_through_their_codes() {
        for s in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CampaignStatus::parse("done"), None);
        for c in [StatusCause::ForceStop, StatusCause::DailyStart] {
            assert_eq!(StatusCause::parse(c.as_str()), Some(c));
        }
        assert_eq!(StatusCause::parse("force"), None);
    }

    #[test]
    fn each_move_is_allowed_exactly_from_its_statuses() {
        // (move, statuses it applies to, where it leads)
        let table: &[(StatusMove, &[CampaignStatus], CampaignStatus)] = &[
            (StatusMove::Start, &[Draft, Stopped, Finished], Running),
            (StatusMove::Pause, &[Running, Waiting], Paused),
            (StatusMove::Resume, &[Paused], Running),
            (StatusMove::Stop, &[Running, Waiting, Paused], Stopping),
            (StatusMove::Wait, &[Running], Waiting),
            (StatusMove::Wake, &[Waiting], Running),
            (StatusMove::Finish, &[Running], Finished),
            (StatusMove::Halt, &[Stopping], Stopped),
        ];
        for &(m, from, to) in table {
            assert_eq!(m.to(), to, "{m:?}");
            for s in CampaignStatus::ALL {
                assert_eq!(m.allowed(s), from.contains(&s), "{m:?} from {s}");
            }
        }
    }

    #[test]
    fn a_stopped_or_finished_campaign_only_starts_again() {
        for s in [Stopped, Finished] {
            let moves = [
                StatusMove::Start,
                StatusMove::Pause,
                StatusMove::Resume,
                StatusMove::Stop,
                StatusMove::Wait,
                StatusMove::Wake,
                StatusMove::Finish,
                StatusMove::Halt,
            ];
            let allowed: Vec<_> = moves.into_iter().filter(|m| m.allowed(s)).collect();
            assert_eq!(allowed, vec![StatusMove::Start], "{s}");
        }
    }
}
