//! The REST API (axum): one router per resource, one error type, API-key auth.
