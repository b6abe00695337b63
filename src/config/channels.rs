//! The message channels' sections (`[channels.*]`), with their failover
//! providers.

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChannelsConfig {
    pub email: EmailChannelConfig,
    pub sms: SmsChannelConfig,
    pub whatsapp: WhatsappChannelConfig,
    pub slack: SlackChannelConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SlackChannelConfig {
    pub base_url: String,
    pub bot_token: Secret,
    pub bot_token_env: String,
    pub webhook_url: Secret,
    pub webhook_url_env: String,
    pub max_per_second: u32,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WhatsappChannelConfig {
    pub base_url: String,
    pub phone_number_id: String,
    pub token: Secret,
    pub token_env: String,
    pub app_secret: Secret,
    pub app_secret_env: String,
    pub verify_token: Secret,
    pub max_per_second: u32,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmailChannelConfig {
    pub transport: String,
    pub outbox_dir: String,
    pub smtp_url: String,
    pub username: String,
    pub password: Secret,
    pub password_env: String,
    pub from: String,
    pub max_per_second: u32,
    pub max_retries: u32,
    pub pool_size: u32,
    pub bounce_listen: String,
    pub unsubscribe_base_url: String,
    pub providers: Vec<ProviderConfig>,
}

/// One provider of a channel with failover (`[[channels.sms.providers]]`,
/// `[[channels.email.providers]]`); the keys its transport does not use
/// stay empty.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// SMS: `smpp` (the default) or `sip`; e-mail: `smtp` (the default).
    pub transport: String,
    pub smpp_url: String,
    pub system_type: String,
    /// 0: the channel's window.
    pub window: u32,
    pub trunk: String,
    pub smtp_url: String,
    pub username: String,
    pub password: Secret,
    pub password_env: String,
    /// 0: the channel's pool_size.
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SmsChannelConfig {
    pub transport: String,
    /// Transport `sip`: the trunk MESSAGEs go through; empty: "default".
    pub trunk: String,
    pub smpp_url: String,
    pub password: Secret,
    pub password_env: String,
    pub system_type: String,
    pub window: u32,
    pub enquire_link_ms: u64,
    pub from: String,
    pub max_per_second: u32,
    pub max_retries: u32,
    pub providers: Vec<ProviderConfig>,
}

impl SmsChannelConfig {
    /// The trunk of transport `sip`: `trunk`, or "default" when empty.
    pub fn sip_trunk(&self) -> &str {
        match self.trunk.trim() {
            "" => "default",
            t => t,
        }
    }
}
