//! herald: an outbound dialer campaign engine.
//!
//! The crate is laid out by responsibility:
//! - [`domain`]: plain types and pure rules (no I/O, no clock reads).
//! - [`config`]: layered configuration (file, then `HERALD__SECTION__KEY`).
//! - [`store`]: the database (SQLite or PostgreSQL) behind one handle.
//! - [`api`]: the REST surface (axum), one router per resource.
//! - [`sip`]: call control over rsipstack; nothing outside it names rsipstack types.
//! - [`media`]: RTP, G.711, RFC 4733, jitter buffer, port pool.
//! - [`sim`]: the callee simulator (a UAS answering as a population would).
//! - [`clock`]: wall time for the scheduler (the system's, or one tests move).
//! - [`app`]: builds the parts, owns every task, shuts down on signal.

pub mod agent;
pub mod api;
pub mod app;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod server;
pub mod sim;
pub mod sip;
pub mod store;
pub mod webhooks;
