//! A notification's overall status from its deliveries, and what a
//! fallback chain does next (pure).
//!
//! A delivery follows its message (or call): `waiting` (a later fallback,
//! not started), `starting` (its message is being written), then the
//! message's own statuses; `skipped` when an earlier channel delivered.
//! Overall, after the seed: `delivered` once any delivery is delivered,
//! `failed` once every delivery ended without, `sent` once any is sent,
//! else `queued`.

/// A delivery's status, as far as the chain needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Open,
    Sent,
    Delivered,
    /// Ended without delivery: failed, bounced, cancelled.
    Ended,
    Skipped,
}

impl Stage {
    pub fn of(status: &str) -> Stage {
        match status {
            "waiting" => Stage::Waiting,
            "sent" => Stage::Sent,
            "delivered" => Stage::Delivered,
            "failed" | "bounced" | "cancelled" => Stage::Ended,
            "skipped" => Stage::Skipped,
            _ => Stage::Open,
        }
    }
}

/// How far a status has come: a delivery's status only moves to a higher
/// rank (so a late event never moves it back), except between `queued`
/// and `sending` (a retry).
pub fn rank(status: &str) -> u8 {
    match status {
        "waiting" => 0,
        "starting" => 1,
        "queued" | "sending" => 2,
        "sent" => 3,
        _ => 4,
    }
}

/// Whether a delivery in `from` takes `to`.
pub fn moves(from: &str, to: &str) -> bool {
    from != to && (rank(to) > rank(from) || (rank(to) == 2 && rank(from) == 2))
}

/// The overall status of a notification's deliveries.
pub fn overall(stages: &[Stage]) -> &'static str {
    if stages.contains(&Stage::Delivered) {
        "delivered"
    } else if stages
        .iter()
        .all(|s| matches!(s, Stage::Ended | Stage::Skipped))
    {
        "failed"
    } else if stages.contains(&Stage::Sent) {
        "sent"
    } else {
        "queued"
    }
}

/// The channel a call delivery is in, from the call's status.
pub fn call_delivery_status(call_status: &str) -> &'static str {
    match call_status {
        "pending" | "scheduled" => "queued",
        "in_progress" => "sending",
        "completed" => "delivered",
        "cancelled" => "cancelled",
        _ => "failed",
    }
}

/// What a fallback chain does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start the delivery at this position.
    Start(usize),
    /// This waiting delivery is not needed (an earlier one delivered).
    Skip(usize),
}

/// The next steps of a fallback chain: `deliveries` in order, each with its
/// stage and its deadline (when the next channel starts if it is not
/// delivered by then).
pub fn fallback_steps(deliveries: &[(Stage, Option<i64>)], now: i64) -> Vec<Step> {
    if deliveries.iter().any(|(s, _)| *s == Stage::Delivered) {
        return deliveries
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == Stage::Waiting)
            .map(|(i, _)| Step::Skip(i))
            .collect();
    }
    let Some(next) = deliveries.iter().position(|(s, _)| *s == Stage::Waiting) else {
        return Vec::new();
    };
    if next == 0 {
        return vec![Step::Start(0)];
    }
    let (stage, deadline) = deliveries[next - 1];
    let overdue = deadline.is_some_and(|d| d <= now) && stage != Stage::Delivered;
    if stage == Stage::Ended || overdue {
        vec![Step::Start(next)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Stage::*;
    use super::*;

    #[test]
    fn overall_status_follows_the_seed() {
        let cases: &[(&[Stage], &str)] = &[
            (&[Open], "queued"),
            (&[Open, Sent], "sent"),
            (&[Ended, Sent], "sent"),
            (&[Ended, Delivered], "delivered"),
            (&[Ended, Ended], "failed"),
            (&[Ended, Waiting], "queued"),
            (&[Delivered, Skipped], "delivered"),
            (&[Waiting], "queued"),
        ];
        for (stages, want) in cases {
            assert_eq!(overall(stages), *want, "{stages:?}");
        }
    }

    #[test]
    fn a_delivery_never_moves_back() {
        assert!(moves("starting", "queued"));
        assert!(moves("queued", "sending"));
        assert!(moves("sending", "queued"));
        assert!(moves("sent", "delivered"));
        assert!(!moves("delivered", "sent"));
        assert!(!moves("sent", "queued"));
        assert!(!moves("failed", "delivered"));
        assert!(!moves("queued", "queued"));
    }

    #[test]
    fn a_fallback_chain_starts_the_next_on_failure_or_deadline() {
        type Chain<'a> = &'a [(Stage, Option<i64>)];
        let cases: &[(Chain, &[Step])] = &[
            (&[(Waiting, None), (Waiting, None)], &[Step::Start(0)]),
            (&[(Open, Some(100)), (Waiting, None)], &[]),
            (&[(Open, Some(50)), (Waiting, None)], &[Step::Start(1)]),
            (&[(Sent, None), (Waiting, None)], &[]),
            (
                &[(Ended, None), (Waiting, None), (Waiting, None)],
                &[Step::Start(1)],
            ),
            (
                &[(Ended, None), (Ended, None), (Waiting, None)],
                &[Step::Start(2)],
            ),
            (
                &[(Delivered, None), (Waiting, None), (Waiting, None)],
                &[Step::Skip(1), Step::Skip(2)],
            ),
            (&[(Ended, None), (Open, None)], &[]),
            (&[(Ended, None), (Delivered, None)], &[]),
        ];
        for (chain, want) in cases {
            assert_eq!(fallback_steps(chain, 60), *want, "{chain:?}");
        }
    }

    #[test]
    fn calls_map_to_delivery_statuses() {
        assert_eq!(call_delivery_status("completed"), "delivered");
        assert_eq!(call_delivery_status("in_progress"), "sending");
        assert_eq!(call_delivery_status("failed"), "failed");
        assert_eq!(call_delivery_status("scheduled"), "queued");
    }
}
