//! `media_stream` agents: a WebSocket bot speaking the Twilio Media Streams
//! protocol, herald playing Twilio's side.

use async_trait::async_trait;

use super::{Agent, AgentConfig, AgentUnavailable, Session, SessionContext};

pub struct MediaStreamAgent {
    url: String,
    config: AgentConfig,
}

impl MediaStreamAgent {
    pub fn new(url: String, config: AgentConfig) -> MediaStreamAgent {
        MediaStreamAgent { url, config }
    }
}

#[async_trait]
impl Agent for MediaStreamAgent {
    async fn prepare(&self, _ctx: &SessionContext) -> Result<Box<dyn Session>, AgentUnavailable> {
        Err(AgentUnavailable(format!(
            "media_stream agent {:?} at {}: not available in this build",
            self.config.name, self.url
        )))
    }
}
