//! A message's statuses and which changes are allowed (pure).
//!
//! ```text
//! queued ──► sending ──► sent ──► delivered
//!    │          │          └────► failed | bounced      (a later report)
//!    │          └──► queued (temporary failure, retried) ──► failed (retries spent)
//!    └──► cancelled   (only while queued)
//! ```
//!
//! A status never moves backwards: a late or repeated report for a message
//! already final changes nothing (reports can arrive out of order).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Bounced,
    Failed,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Bounced,
        MessageStatus::Failed,
        MessageStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Bounced => "bounced",
            MessageStatus::Failed => "failed",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Nothing follows a final status.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Bounced
                | MessageStatus::Failed
                | MessageStatus::Cancelled
        )
    }

    /// Whether `self → to` is a change the life cycle allows.
    pub fn can_move_to(self, to: MessageStatus) -> bool {
        use MessageStatus::*;
        matches!(
            (self, to),
            (Queued, Sending)
                | (Queued, Cancelled)
                | (Queued, Failed)
                | (Sending, Queued)
                | (Sending, Sent)
                | (Sending, Delivered)
                | (Sending, Bounced)
                | (Sending, Failed)
                | (Sent, Delivered)
                | (Sent, Bounced)
                | (Sent, Failed)
        )
    }
}

/// Which channel a message goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    Email,
    Sms,
    Whatsapp,
    Slack,
}

impl MessageChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageChannel::Email => "email",
            MessageChannel::Sms => "sms",
            MessageChannel::Whatsapp => "whatsapp",
            MessageChannel::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<MessageChannel> {
        match s {
            "email" => Some(MessageChannel::Email),
            "sms" => Some(MessageChannel::Sms),
            "whatsapp" => Some(MessageChannel::Whatsapp),
            "slack" => Some(MessageChannel::Slack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::{self, *};

    #[test]
    fn statuses_never_move_backwards_or_out_of_a_final_status() {
        let allowed: &[(MessageStatus, MessageStatus)] = &[
            (Queued, Sending),
            (Queued, Cancelled),
            (Queued, Failed),
            (Sending, Queued),
            (Sending, Sent),
            (Sending, Delivered),
            (Sending, Bounced),
            (Sending, Failed),
            (Sent, Delivered),
            (Sent, Bounced),
            (Sent, Failed),
        ];
        for from in MessageStatus::ALL {
            for to in MessageStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
                if from.is_final() {
                    assert!(!from.can_move_to(to), "{from:?} is final");
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MessageStatus::parse("Queued"), None);
    }
}
