//! The one trait every message transport implements, and what goes through
//! it. A transport knows its protocol and nothing of the store: it is handed
//! a rendered message and answers what the peer said. Delivery reports that
//! arrive later (SMPP receipts, e-mail DSNs) go to the [`ReportSink`] given
//! when the transport is built.
//!
//! Must not: log a message body or a credential; retry by itself (the caller
//! decides retries from the [`SendResult`], so a restart never re-sends what
//! a peer acknowledged).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// One address of an e-mail: `Name <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub email: String,
    pub name: Option<String>,
}

/// A rendered e-mail, ready to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// herald's id of the message (also in the VERP Return-Path).
    pub id: Uuid,
    /// The `Message-ID` header value, without angle brackets.
    pub message_id: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    /// The envelope sender (`bounces+<id>@<domain>`).
    pub return_path: String,
    /// Marketing mail: the one-click unsubscribe URL (`List-Unsubscribe` and
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, RFC 8058).
    pub list_unsubscribe: Option<String>,
}

/// A rendered SMS, ready to send.
#[derive(Debug, Clone)]
pub struct Sms {
    pub id: Uuid,
    /// E.164 (`+15551234567`) or an alphanumeric sender id.
    pub from: String,
    /// E.164.
    pub to: String,
    pub body: String,
}

/// A rendered WhatsApp message, ready to send.
#[derive(Debug, Clone)]
pub struct Whatsapp {
    pub id: Uuid,
    /// E.164.
    pub to: String,
    pub content: WhatsappContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhatsappContent {
    /// An approved template: its provider name, language and body
    /// parameters in its declared order.
    Template {
        name: String,
        language: String,
        parameters: Vec<String>,
    },
    /// Free text (only inside the 24-hour customer service window).
    Text { body: String },
}

/// A Slack message, ready to send.
#[derive(Debug, Clone)]
pub struct SlackMessage {
    pub id: Uuid,
    /// A user id (the bot's direct message) or a channel id; ignored by an
    /// incoming webhook, which posts where it was made for.
    pub to: String,
    pub text: String,
}

/// What is sent. (One per send in flight, built once; boxing the larger
/// variant would buy nothing.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Outbound {
    Email(Email),
    Sms(Sms),
    Whatsapp(Whatsapp),
    Slack(SlackMessage),
}

impl Outbound {
    pub fn id(&self) -> Uuid {
        match self {
            Outbound::Email(m) => m.id,
            Outbound::Sms(m) => m.id,
            Outbound::Whatsapp(m) => m.id,
            Outbound::Slack(m) => m.id,
        }
    }
}

/// The peer's answer, as stored on the attempt: a protocol code (SMTP reply
/// code, SMPP command_status in hex `0x00000058`, SIP status) and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerReply {
    pub code: Option<String>,
    pub text: Option<String>,
}

/// What one send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The peer took it (SMTP 250, submit_sm_resp OK, SIP 2xx). `provider_id`
    /// is the peer's id for it, used to match later delivery reports (SMPP
    /// message_id, normalised by the transport).
    Accepted {
        provider_id: Option<String>,
        reply: PeerReply,
    },
    /// Not now (SMTP 4xx, connection failure, ESME_RTHROTTLED): try again
    /// later, after `after` when the peer said.
    Retry {
        reply: PeerReply,
        after: Option<Duration>,
    },
    /// Refused for this recipient for good (SMTP 5xx at RCPT or DATA): the
    /// address is suppressed.
    Bounced { reply: PeerReply },
    /// Refused for good for another reason (bad request, unknown sender).
    Failed { reply: PeerReply },
    /// Nothing was sent: the peer could not be reached (not bound, the
    /// connection refused). Retried like [`SendResult::Retry`]; a failover
    /// transport tries its next provider at once.
    Unavailable {
        reply: PeerReply,
        after: Option<Duration>,
    },
}

/// One provider of a failover transport, as capabilities and `/metrics`
/// show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    pub name: String,
    pub transport: &'static str,
    /// Able to send (an SMPP session bound).
    pub ready: bool,
    /// Not marked down by its failures.
    pub up: bool,
}

/// A later report on a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub key: ReportKey,
    pub status: ReportStatus,
    pub reply: PeerReply,
    /// The address the report is about, when the peer names it (an SMPP
    /// receipt's source_addr: the recipient). A report whose send's
    /// acknowledgement was lost in a crash is matched by it.
    pub address: Option<String>,
}

/// How a report names its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKey {
    /// herald's id (from the VERP Return-Path of an e-mail DSN).
    Message(Uuid),
    /// The provider's id as returned in [`SendResult::Accepted`] (normalised
    /// the same way).
    Provider(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    Delivered,
    Failed,
    /// E-mail only: a permanent failure reported after acceptance.
    Bounced,
}

/// A delivery report on its way to the store, and who waits until it is
/// kept.
#[derive(Debug)]
pub struct Reported {
    pub report: DeliveryReport,
    kept: oneshot::Sender<()>,
}

impl Reported {
    /// Says the report is kept (applied to its message, or stored until its
    /// message can take it); the peer may now be told it was received.
    pub fn kept(self) -> DeliveryReport {
        let _ = self.kept.send(());
        self.report
    }
}

/// Where transports send delivery reports. [`ReportSink::report`] returns
/// only once the report is kept, so a transport acknowledges a report to
/// its peer (deliver_sm_resp, an SMTP 250 for a DSN) only after that: a
/// crash in between makes the peer send it again instead of losing it.
#[derive(Debug, Clone)]
pub struct ReportSink {
    tx: mpsc::Sender<Reported>,
}

impl ReportSink {
    /// A sink and the receiver its reports come out of.
    pub fn channel(capacity: usize) -> (ReportSink, mpsc::Receiver<Reported>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ReportSink { tx }, rx)
    }

    /// Hands a report over and waits until it is kept: false when it could
    /// not be (herald is stopping), so the peer should send it again.
    pub async fn report(&self, report: DeliveryReport) -> bool {
        let (kept, stored) = oneshot::channel();
        if self.tx.send(Reported { report, kept }).await.is_err() {
            return false;
        }
        stored.await.is_ok()
    }
}

/// One transport (a file per protocol). `send` may be called concurrently;
/// a transport with a window (SMPP) or a pool (SMTP) bounds itself.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// The transport's name as in config (`file`, `smtp`, `smpp`, `sip`,
    /// `simulator`).
    fn name(&self) -> &'static str;
    async fn send(&self, message: &Outbound) -> SendResult;
    /// Sends, naming the provider that carried it (a failover transport's
    /// pick); a transport that is its own provider names none.
    async fn send_via(&self, message: &Outbound) -> (SendResult, Option<String>) {
        (self.send(message).await, None)
    }
    /// Whether the peer can be reached now, checked without sending a
    /// message (an SMTP relay's greeting and NOOP; by default [`Transport::ready`]).
    async fn probe(&self) -> bool {
        self.ready()
    }
    /// A failover transport's providers; none for a single transport.
    fn providers(&self) -> Vec<ProviderStatus> {
        Vec::new()
    }
    /// Whether the transport is connected and able to send (SMPP bound);
    /// for `/metrics` and capabilities.
    fn ready(&self) -> bool {
        true
    }
    /// Whether this transport's delivery reports can tell whether a send
    /// whose acknowledgement was lost in a crash reached the peer (SMPP with
    /// receipts requested): such a send then waits for its report, matched
    /// by address, before it is sent again.
    fn reports_settle_doubt(&self) -> bool {
        false
    }
    /// Stops background work (unbind, close pools).
    async fn close(&self) {}
}
