//! SMPP 3.4 transport: herald as an ESME bound as a transceiver to one SMSC.
//!
//! Owns: the TCP connection and its bind (bind_transceiver, enquire_link
//! every `enquire_link_interval`, reconnect with exponential backoff when
//! the connection drops or a bind fails), the submit window (at most
//! `window` submit_sm outstanding, shared by every concurrent `send`), the
//! submit_sm PDUs of a message ([`submit`]), and delivery receipts
//! (deliver_sm with esm_class 0x04, answered with deliver_sm_resp and sent
//! to the [`ReportSink`] as [`ReportKey::Provider`]; see [`receipt`] for how
//! ids are matched). Mobile-originated deliver_sm go to an optional
//! [`InboundSms`] channel (answered once stored there), else are dropped
//! with a debug log.
//!
//! Crate: `rusmppc` 0.4 (the tokio client on `rusmpp`), without its TLS
//! features. It keeps the table of outstanding requests by sequence number,
//! the response timeout, enquire_link and its timeout, and answers the
//! SMSC's enquire_link; herald adds what it lacks: the bind and reconnect
//! loop, the window, receipts. Its connection future is run on this
//! transport's `TaskTracker` (`ConnectionBuilder::no_spawn`), not spawned
//! loose, and the TCP connection is opened here. rusmpp's `extra` feature
//! supplies the GSM-7 encoder and the concatenation splitter. The bind says
//! interface_version 0x34 (rusmppc's v5 check is turned off: the PDUs herald
//! uses are the same in 3.4 and 5.0).
//!
//! Results: submit_sm_resp ESME_ROK → `Accepted` with the normalised
//! message_id; ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR → `Retry` after
//! `retry_after`; no bind within `bind_wait` → `Unavailable`; a lost
//! connection or a response timeout with the submit outstanding → `Retry`; other statuses → `Failed`
//! with the command_status in hex as the reply code and its name as text.
//! At most once: a submit outstanding when the connection drops may have
//! been taken by the SMSC; the transport never re-sends it, the caller
//! decides (and may send it twice). Every submit asks for a receipt
//! (registered_delivery 1), and a receipt is answered only once the store
//! keeps it, with the recipient's address: so after a crash that lost a
//! submit_sm_resp, the receipt the SMSC sends (again, if it was not
//! answered) tells the caller the message got there
//! ([`Transport::reports_settle_doubt`]).
//!
//! Long texts go as several submit_sm; the message is `Accepted` only when
//! every part is, and its provider id is the FIRST part's message_id. The
//! receipts of the other parts go to the sink under their own ids, which
//! match no message: the store keeps them a while and then drops them.
//! (Keeping the other ids to drop their receipts here would race with the
//! receipts themselves, which can be read before the submit_sm_resp is
//! handed back, and would not survive a restart.) A part refused after
//! earlier parts were accepted answers `Retry`/`Failed` for the whole
//! message (the accepted parts may reach the handset).
//!
//! Must not: log a message body or the password (rusmpp logs whole PDUs,
//! bind included, at DEBUG under the `rusmpp` target: keep that target at
//! WARN in production filters), retry a submit by itself, or panic on
//! anything the SMSC sends (rusmppc ends the connection on an undecodable
//! PDU; this transport logs the error kind and reconnects).

mod receipt;
mod session;
mod submit;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusmppc::error::Error as ClientError;
use rusmppc::Client;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Secret;
use crate::message::transport::{Outbound, PeerReply, ReportSink, SendResult, Sms, Transport};

pub use receipt::{
    decide_receipt, normalise_id, parse_receipt_text, receipt_text_id, Receipt, ReceiptIds,
    ReceiptText,
};
pub use submit::{
    build_submits, classify_status, destination_address, is_gsm7, source_address, status_hex,
    status_name, Address, StatusClass, SubmitError,
};

/// How to reach and use one SMSC (plain data; `SmppSettings::new` fills in
/// the defaults).
#[derive(Debug, Clone)]
pub struct SmppSettings {
    pub host: String,
    pub port: u16,
    /// bind system_id (at most 15 characters).
    pub system_id: String,
    /// bind password (at most 8 characters). Never logged.
    pub password: Secret,
    /// bind system_type (at most 12 characters; often empty).
    pub system_type: String,
    /// Submits outstanding at once, across all senders (default 10).
    pub window: usize,
    /// enquire_link period while bound (default 30 s).
    pub enquire_link_interval: Duration,
    /// How long to wait for any response (bind, submit, enquire_link)
    /// before giving up on it, and for the TCP connect (default 10 s).
    pub response_timeout: Duration,
    /// Reconnect delay after the first failure, doubled per failure up to
    /// `reconnect_cap` (defaults 1 s and 60 s).
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// How long a send waits for a bind before answering `Retry` (default 5 s).
    pub bind_wait: Duration,
    /// The `after` hint of a `Retry` (default 1 s).
    pub retry_after: Duration,
    /// Sender used when a message's `from` is empty.
    pub default_source: String,
    /// How this carrier writes ids in receipts.
    pub receipt_ids: ReceiptIds,
}

impl SmppSettings {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        system_id: impl Into<String>,
        password: Secret,
    ) -> Self {
        SmppSettings {
            host: host.into(),
            port,
            system_id: system_id.into(),
            password,
            system_type: String::new(),
            window: 10,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            reconnect_base: Duration::from_secs(1),
            reconnect_cap: Duration::from_secs(60),
            bind_wait: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            default_source: String::new(),
            receipt_ids: ReceiptIds::AsGiven,
        }
    }
}

/// A mobile-originated SMS (a deliver_sm that is not a receipt). Its
/// deliver_sm is answered once `kept` says it is stored (true: ESME_ROK);
/// anything else answers ESME_RX_T_APPN and the SMSC delivers it again.
#[derive(Debug)]
pub struct InboundSms {
    /// `+` and digits for an international sender, else as given.
    pub from: String,
    pub to: String,
    pub text: String,
    pub kept: tokio::sync::oneshot::Sender<bool>,
}

/// What the session loop and the senders share.
struct Shared {
    settings: SmppSettings,
    /// The bound client, `None` while connecting or after a drop.
    bound: watch::Sender<Option<Client>>,
    window: Semaphore,
    reports: ReportSink,
    inbound: Option<mpsc::Sender<InboundSms>>,
    next_reference: AtomicU8,
}

/// The SMPP transport. `start` binds in the background; `close` unbinds.
pub struct SmppTransport {
    shared: Arc<Shared>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl SmppTransport {
    /// Starts the bind loop. Receipts go to `reports`; mobile-originated
    /// messages to `inbound` when given.
    pub fn start(
        settings: SmppSettings,
        reports: ReportSink,
        inbound: Option<mpsc::Sender<InboundSms>>,
    ) -> SmppTransport {
        let window = settings.window.max(1);
        let shared = Arc::new(Shared {
            settings,
            bound: watch::Sender::new(None),
            window: Semaphore::new(window),
            reports,
            inbound,
            next_reference: AtomicU8::new(rand::random()),
        });
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        tasks.spawn(session::run(shared.clone(), tasks.clone(), cancel.clone()));
        SmppTransport {
            shared,
            tasks,
            cancel,
        }
    }

    /// Waits until bound, up to `wait`; whether it is.
    pub async fn wait_bound(&self, wait: Duration) -> bool {
        self.bound_client(wait).await.is_some()
    }

    async fn bound_client(&self, wait: Duration) -> Option<Client> {
        let mut rx = self.shared.bound.subscribe();
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            r = tokio::time::timeout(wait, rx.wait_for(Option::is_some)) => match r {
                Ok(Ok(client)) => client.clone(),
                _ => None,
            },
        }
    }

    fn retry(&self, text: impl Into<String>, code: Option<String>) -> SendResult {
        SendResult::Retry {
            reply: PeerReply {
                code,
                text: Some(text.into()),
            },
            after: Some(self.shared.settings.retry_after),
        }
    }

    async fn send_sms(&self, sms: &Sms) -> SendResult {
        let settings = &self.shared.settings;
        let from = if sms.from.trim().is_empty() {
            settings.default_source.as_str()
        } else {
            sms.from.as_str()
        };
        let submits = source_address(from).and_then(|source| {
            let destination = destination_address(&sms.to)?;
            let reference = self.shared.next_reference.fetch_add(1, Ordering::Relaxed);
            build_submits(&source, &destination, &sms.body, reference)
        });
        let submits = match submits {
            Ok(s) => s,
            Err(e) => {
                return SendResult::Failed {
                    reply: PeerReply {
                        code: None,
                        text: Some(e.to_string()),
                    },
                }
            }
        };
        let Some(client) = self.bound_client(settings.bind_wait).await else {
            // Nothing was submitted.
            return SendResult::Unavailable {
                reply: PeerReply {
                    code: None,
                    text: Some("not bound to the SMSC".into()),
                },
                after: Some(settings.retry_after),
            };
        };
        let mut ids = Vec::with_capacity(submits.len());
        for sm in submits {
            let Ok(_permit) = self.shared.window.acquire().await else {
                return self.retry("transport closed", None);
            };
            match client.submit_sm(sm).await {
                Ok(resp) => ids.push(normalise_id(resp.message_id().as_str())),
                Err(ClientError::UnexpectedResponse { response }) => {
                    let status = u32::from(response.status());
                    let code = Some(status_hex(status));
                    let text = status_name(status);
                    return match classify_status(status) {
                        StatusClass::Retry => self.retry(text, code),
                        StatusClass::Failed => SendResult::Failed {
                            reply: PeerReply {
                                code,
                                text: Some(text),
                            },
                        },
                        // ESME_ROK on a PDU other than submit_sm_resp.
                        StatusClass::Accepted => {
                            self.retry("unexpected response to submit_sm", code)
                        }
                    };
                }
                Err(e) => {
                    tracing::warn!(message_id = %sms.id, error = %session::describe(&e), "smpp: submit_sm without an answer");
                    return self.retry(format!("no answer: {}", session::describe(&e)), None);
                }
            }
        }
        SendResult::Accepted {
            provider_id: ids.into_iter().next(),
            reply: PeerReply {
                code: Some(status_hex(0)),
                text: Some("ESME_ROK".to_string()),
            },
        }
    }
}

impl Drop for SmppTransport {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[async_trait::async_trait]
impl Transport for SmppTransport {
    fn name(&self) -> &'static str {
        "smpp"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        match message {
            Outbound::Sms(sms) => self.send_sms(sms).await,
            Outbound::Email(_) | Outbound::Whatsapp(_) | Outbound::Slack(_) => SendResult::Failed {
                reply: PeerReply {
                    code: None,
                    text: Some("the smpp transport sends SMS only".to_string()),
                },
            },
        }
    }

    fn ready(&self) -> bool {
        self.shared.bound.borrow().is_some()
    }

    /// Bound, and the SMSC answers an enquire_link within the bind wait.
    async fn probe(&self) -> bool {
        let Some(client) = self.shared.bound.borrow().clone() else {
            return false;
        };
        matches!(
            tokio::time::timeout(self.shared.settings.bind_wait, client.enquire_link()).await,
            Ok(Ok(()))
        )
    }

    fn reports_settle_doubt(&self) -> bool {
        true
    }

    async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
