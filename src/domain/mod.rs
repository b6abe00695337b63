//! Plain domain types and pure validation rules.
//!
//! Nothing here performs I/O, reads the clock or spawns tasks: callers pass
//! `now` in. Every type that is stored has a stable string code.

pub mod campaign_status;
pub mod destination;
pub mod fields;
pub mod outcome;
pub mod specs;
pub mod state;
pub mod target;
pub mod window;

pub use campaign_status::{CampaignStatus, StatusCause, StatusChange, StatusMove};
pub use destination::{Destination, DestinationKind};
pub use outcome::Outcome;
pub use state::TargetState;

/// A validation failure of one field: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `destinations[0]` + `.target`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Validates an IANA time zone name (e.g. `America/New_York`).
pub fn parse_timezone(field: &str, name: &str) -> Result<chrono_tz::Tz, FieldError> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| FieldError::new(field, format!("unknown IANA time zone {name:?}")))
}
