//! Messages: templates, e-mail and SMS, each sent through a real transport.
//!
//! - [`template`]: templates as pure rendering and validation (minijinja,
//!   strict undefined; declared variables; HTML escaping in HTML bodies only).
//! - [`sms_text`]: SMS encoding (GSM-7 or UCS-2), segment counts and the
//!   parts of a long text (pure).
//! - [`transport`]: the one trait every transport implements, and what goes
//!   through it (an outbound message, a send's result, a delivery report).
//! - [`email_message`]: an e-mail's RFC 5322 message, the one builder for
//!   the transports that carry e-mail (pure).
//! - One file per transport: [`file`] (`.eml` files in an outbox directory),
//!   [`smtp`] (lettre; its connections in `smtp_pool`), [`bounce`] (the
//!   bounce listener: RFC 3464 reports, read by [`dsn`], to the VERP
//!   Return-Path), [`smpp`] (SMPP 3.4 transceiver), [`sip_message`]
//!   (SMS as a SIP MESSAGE through a trunk, sent by call control).

pub mod bounce;
pub mod caps;
pub mod channels;
pub mod dsn;
pub mod email_message;
pub mod failover;
pub mod file;
pub mod health;
pub mod holds;
pub mod outcome;
mod providers;
pub mod request;
pub mod service;
pub mod simulator;
pub mod sip_message;
pub mod slack;
pub mod smpp;
pub mod sms_text;
pub mod smtp;
mod smtp_pool;
pub mod status;
pub mod stored;
pub mod template;
pub mod tracking;
pub mod transport;
pub mod whatsapp;
pub mod worker;
