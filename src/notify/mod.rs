//! Notifications: one send over several channels (the notification
//! platform's API), each channel a delivery carried by a message (e-mail,
//! SMS) or a one-off call (voice).
//!
//! - [`request`]: the request, parsed and checked, and each channel's part
//!   written as that channel's own request (pure).
//! - [`status`]: the overall status from the deliveries, and a fallback
//!   chain's next step (pure).
//! - [`follower`]: follows the deliveries' messages and calls on the global
//!   event log, starts fallbacks, and writes `notification.status` events.

pub mod campaign_fallback;
pub mod follower;
pub mod inbox;
pub mod request;
pub mod status;
