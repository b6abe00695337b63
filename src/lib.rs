//! herald: an outbound dialer campaign engine.
//!
//! The crate is laid out by responsibility (every module is listed):
//! - [`domain`]: plain types and pure rules (no I/O, no clock reads).
//! - [`config`]: layered configuration (file, then `HERALD__SECTION__KEY`).
//! - [`store`]: the database (SQLite or PostgreSQL) behind one handle.
//! - [`api`]: the REST surface (axum), one router per resource.
//! - [`campaign`]: pure pacing/window/retry decisions and the scheduler that
//!   applies them (campaign attempts and one-off calls).
//! - [`agent`]: what talks to the callee once a call is answered
//!   (media_stream, sip, script), one file per kind.
//! - [`sip`]: call control over rsipstack; nothing outside it names rsipstack types.
//! - [`media`]: RTP, G.711, RFC 4733, jitter buffer, port pool, WAV prompts.
//! - [`message`]: templates, e-mail and SMS through real transports.
//! - [`sim`]: the callee simulator (a UAS answering as a population would).
//! - [`clock`]: wall time for the scheduler (the system's, or one tests move).
//! - [`events`]: the in-process event bus (what just happened, for listeners).
//! - [`webhooks`]: webhook delivery from the durable event log.
//! - [`metrics`]: process metrics in the Prometheus text format.
//! - [`cli`]: the command line (`serve`, `migrate`, `apikey`, `sim`, `demo`).
//! - [`demo`]: `herald demo`, a self-contained campaign against the simulator.
//! - [`app`]: builds the parts, owns every task, shuts down on signal.

pub mod agent;
pub mod api;
pub mod app;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod logging;
pub mod media;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod sim;
pub mod sip;
pub mod store;
pub mod ui;
pub mod webhooks;
