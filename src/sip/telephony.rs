//! The seam between the callers of telephony (campaign and one-off attempts,
//! SIP agents) and call control: [`Telephony`] places a call and yields its
//! [`CallEvent`]s. [`CallControl`] is the real one;
//! [`crate::sim::InstantTelephony`] answers every call at once, for tests and
//! benchmarks of the scheduler and store alone. Owns the interface only.

use async_trait::async_trait;

use super::{CallControl, CallEvent, OriginateError, OriginateRequest};

/// A call in progress.
#[async_trait]
pub trait PlacedCall: Send {
    fn call_id(&self) -> &str;
    /// The next event; `None` after `Ended`.
    async fn next_event(&mut self) -> Option<CallEvent>;
    /// CANCEL while ringing, BYE once answered.
    fn hangup(&self);
}

/// Places calls.
#[async_trait]
pub trait Telephony: Send + Sync + 'static {
    async fn originate(&self, req: OriginateRequest)
        -> Result<Box<dyn PlacedCall>, OriginateError>;
    /// Calls in flight, across every campaign.
    fn live_calls(&self) -> usize;
    /// Calls in flight on one trunk, when known (for its concurrency limit).
    fn trunk_live_calls(&self, _trunk: &str) -> Option<u32> {
        None
    }
    /// Why calls on `trunk` cannot go now (it registers and is not
    /// registered), if so.
    fn trunk_unready(&self, _trunk: &str) -> Option<String> {
        None
    }
    /// The registration of a trunk that registers.
    fn trunk_registration(&self, _trunk: &str) -> Option<super::register::Registration> {
        None
    }
}

#[async_trait]
impl PlacedCall for super::Call {
    fn call_id(&self) -> &str {
        super::Call::call_id(self)
    }
    async fn next_event(&mut self) -> Option<CallEvent> {
        super::Call::next_event(self).await
    }
    fn hangup(&self) {
        super::Call::hangup(self)
    }
}

#[async_trait]
impl Telephony for CallControl {
    async fn originate(
        &self,
        req: OriginateRequest,
    ) -> Result<Box<dyn PlacedCall>, OriginateError> {
        Ok(Box::new(CallControl::originate(self, req).await?))
    }
    fn live_calls(&self) -> usize {
        CallControl::live_calls(self)
    }
    fn trunk_live_calls(&self, trunk: &str) -> Option<u32> {
        self.trunk_stats(trunk).map(|s| s.live_calls)
    }
    fn trunk_unready(&self, trunk: &str) -> Option<String> {
        CallControl::trunk_unready(self, trunk)
    }
    fn trunk_registration(&self, trunk: &str) -> Option<super::register::Registration> {
        self.trunk_stats(trunk).and_then(|s| s.registration)
    }
}
