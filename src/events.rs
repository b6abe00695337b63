//! In-process events: what the scheduler and the API just did, for whoever
//! listens (tests, benchmarks). The SSE stream and webhooks do not read this
//! bus: they read the durable event log (`store::events`), woken by the
//! store's log watch after each commit. Sending never blocks; a slow
//! listener misses events (`broadcast` lag) rather than slowing dialing down.

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    CampaignStatusChanged {
        campaign_id: String,
        status: String,
    },
    /// Targets were claimed and their calls are being placed.
    AttemptsClaimed {
        campaign_id: String,
        count: usize,
    },
    /// A one-off call's try was recorded; `status` is where the call stands.
    CallFinished {
        call_id: String,
        status: String,
    },
    /// An attempt's outcome was written (after its transaction committed).
    AttemptsRecorded {
        count: usize,
    },
}

#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn campaign_status(&self, campaign_id: &str, status: &str) {
        self.publish(Event::CampaignStatusChanged {
            campaign_id: campaign_id.to_string(),
            status: status.to_string(),
        });
    }
}
