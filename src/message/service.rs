//! What the API needs to accept messages: each channel's defaults and
//! whether it is configured, and how to wake its sender. Built by `app`
//! from `[channels.*]`; handed to the API as one narrow handle.

use std::sync::Arc;

use tokio::sync::Notify;

use super::status::MessageChannel;
use super::transport::Mailbox;

/// Accept-time settings of the e-mail channel.
#[derive(Debug, Clone)]
pub struct EmailDefaults {
    /// The `from` used when a message gives none.
    pub from: Mailbox,
    /// The domain of the VERP Return-Path (`bounces+<id>@<domain>`).
    pub bounce_domain: String,
    /// Where one-click unsubscribe URLs point (`{base}/unsubscribe/{id}`).
    pub unsubscribe_base_url: String,
    pub max_retries: u32,
    pub transport: &'static str,
    /// Sends per second (SMS: segments); 0 = unlimited.
    pub max_per_second: u32,
}

/// Accept-time settings of the SMS channel.
#[derive(Debug, Clone)]
pub struct SmsDefaults {
    pub from: String,
    pub max_retries: u32,
    pub transport: &'static str,
    /// Sends per second (SMS: segments); 0 = unlimited.
    pub max_per_second: u32,
}

/// Accept-time settings of the WhatsApp channel.
#[derive(Debug, Clone)]
pub struct WhatsappDefaults {
    /// Our address on WhatsApp (conversations are matched by it).
    pub phone_number_id: String,
    pub max_retries: u32,
    pub max_per_second: u32,
}

/// Accept-time settings of the Slack channel.
#[derive(Debug, Clone)]
pub struct SlackDefaults {
    pub max_retries: u32,
    pub max_per_second: u32,
}

/// The messaging handle of the API.
#[derive(Clone, Debug)]
pub struct Messaging {
    pub email: Option<EmailDefaults>,
    pub sms: Option<SmsDefaults>,
    pub whatsapp: Option<WhatsappDefaults>,
    pub slack: Option<SlackDefaults>,
    pub wake_email: Arc<Notify>,
    pub wake_sms: Arc<Notify>,
    pub wake_whatsapp: Arc<Notify>,
    pub wake_slack: Arc<Notify>,
    /// Each channel's health, as its sender saw its sends.
    pub health: super::health::HealthBoard,
    /// Sends held back while a bulk is being accepted.
    pub holds: super::holds::ClaimHolds,
}

impl Messaging {
    /// Wakes the channel's sender after a message was accepted or changed.
    pub fn wake(&self, channel: MessageChannel) {
        match channel {
            MessageChannel::Email => self.wake_email.notify_one(),
            MessageChannel::Sms => self.wake_sms.notify_one(),
            MessageChannel::Whatsapp => self.wake_whatsapp.notify_one(),
            MessageChannel::Slack => self.wake_slack.notify_one(),
        }
    }
}
