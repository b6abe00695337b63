//! The bind loop: connect, bind_transceiver, serve what the SMSC sends
//! (receipts, mobile-originated messages, unbind), and reconnect with
//! exponential backoff when the connection drops or a bind fails; unbind on
//! cancellation.
//!
//! Must not: log a PDU, a message body or the password; answer a deliver_sm
//! OK before its report is kept by the store (an SMSC re-sends a receipt
//! that was not answered, so a crash loses none).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::COctetString;
use rusmpp::values::{DataCoding, InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::error::Error as ClientError;
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::receipt::decide_receipt;
use super::submit::status_hex;
use super::{InboundSms, Shared};
use crate::message::transport::{DeliveryReport, ReportKey};

/// Largest PDU accepted from the SMSC.
const MAX_COMMAND_LENGTH: usize = 64 * 1024;
/// deliver_sm being handled (waiting for their report to be kept) at once.
const RECEIPTS_IN_FLIGHT: usize = 1024;

/// The delay before reconnect attempt `failures + 1`: `base` doubled per
/// consecutive failure, at most `cap`.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// A short description of a client error that holds no PDU contents.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Connect(io) => format!("connect: {io}"),
        ClientError::Io(io) => format!("I/O: {io}"),
        ClientError::ConnectionClosed => "connection closed".to_string(),
        ClientError::ConnectionClosedByPeer => "connection closed by the SMSC".to_string(),
        ClientError::Encode(_) => "a PDU could not be encoded".to_string(),
        ClientError::Decode(d) => format!("undecodable PDU from the SMSC: {d}"),
        ClientError::EnquireLinkTimeout { timeout } => {
            format!("no enquire_link_resp within {timeout:?}")
        }
        ClientError::ResponseTimeout { timeout, .. } => format!("no response within {timeout:?}"),
        ClientError::UnexpectedResponse { response } => format!(
            "{:?} with command_status {}",
            response.id(),
            status_hex(u32::from(response.status()))
        ),
        ClientError::UnsupportedInterfaceVersion { .. } => {
            "unsupported interface version".to_string()
        }
        _ => "SMPP client error".to_string(),
    }
}

enum Ended {
    Cancelled,
    Lost(String),
}

/// Runs until `cancel`: keeps the transport bound.
pub(super) async fn run(shared: Arc<Shared>, tasks: TaskTracker, cancel: CancellationToken) {
    let s = &shared.settings;
    let mut failures: u32 = 0;
    loop {
        let bound = tokio::select! {
            _ = cancel.cancelled() => break,
            r = connect_and_bind(&shared, &tasks) => r,
        };
        match bound {
            Ok((client, events)) => {
                failures = 0;
                tracing::info!(host = %s.host, port = s.port, system_id = %s.system_id, "smpp: bound as transceiver");
                shared.bound.send_replace(Some(client.clone()));
                let ended = serve(&shared, &client, events, &cancel).await;
                shared.bound.send_replace(None);
                match ended {
                    Ended::Cancelled => {
                        unbind(&client, s.response_timeout).await;
                        break;
                    }
                    Ended::Lost(why) => {
                        tracing::warn!(host = %s.host, port = s.port, reason = %why, "smpp: connection lost; reconnecting");
                        let _ = client.close().await;
                    }
                }
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                tracing::warn!(host = %s.host, port = s.port, reason = %why, failures, "smpp: bind failed");
            }
        }
        let delay = backoff(s.reconnect_base, s.reconnect_cap, failures);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    shared.bound.send_replace(None);
}

/// Unbinds and closes, each step bounded by `wait`.
async fn unbind(client: &Client, wait: Duration) {
    match tokio::time::timeout(wait, client.unbind()).await {
        Ok(Ok(())) => tracing::info!("smpp: unbound"),
        Ok(Err(e)) => tracing::debug!(reason = %describe(&e), "smpp: unbind not answered"),
        Err(_) => tracing::debug!("smpp: unbind timed out"),
    }
    let _ = client.close().await;
    let _ = tokio::time::timeout(wait, client.closed()).await;
}

async fn connect_and_bind(
    shared: &Shared,
    tasks: &TaskTracker,
) -> Result<(Client, impl Stream<Item = Event> + Unpin + 'static), String> {
    let s = &shared.settings;
    let stream = tokio::time::timeout(
        s.response_timeout,
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let bind = BindTransceiver::builder()
        .system_id(
            COctetString::from_string(s.system_id.clone())
                .map_err(|_| "system_id is longer than 15 characters".to_string())?,
        )
        .password(
            COctetString::from_string(s.password.expose().to_string())
                .map_err(|_| "password is longer than 8 characters".to_string())?,
        )
        .system_type(
            COctetString::from_string(s.system_type.clone())
                .map_err(|_| "system_type is longer than 12 characters".to_string())?,
        )
        .interface_version(InterfaceVersion::Smpp3_4)
        .addr_ton(Ton::Unknown)
        .addr_npi(Npi::Unknown)
        .address_range(COctetString::empty())
        .build();
    let (client, events, connection) = ConnectionBuilder::new()
        .max_command_length(MAX_COMMAND_LENGTH)
        .enquire_link_interval(s.enquire_link_interval)
        .enquire_link_response_timeout(s.response_timeout)
        .response_timeout(s.response_timeout)
        .disable_interface_version_check()
        .no_spawn()
        .connected(stream);
    // Ends when the TCP connection does, or when every client is dropped.
    tasks.spawn(drive(connection));
    match client.bind_transceiver(bind).await {
        Ok(_) => Ok((client, events)),
        Err(e) => {
            let _ = client.close().await;
            Err(describe(&e))
        }
    }
}

/// Polls of rusmppc's connection per wake-up.
const REPOLLS: usize = 16;
/// How often rusmppc's connection is polled when nothing wakes it.
const KICK: Duration = Duration::from_millis(5);

/// Runs rusmppc's connection future. rusmppc 0.4 takes at most five queued
/// requests and five writes per poll and then returns `Pending` without
/// waking itself (only reading re-wakes it), so a burst of requests with no
/// traffic behind it (deliver_sm_resp answered together, submits waiting
/// for the window) would sit queued until the SMSC sent something. Each
/// wake-up polls it [`REPOLLS`] times, and a [`KICK`] tick wakes it.
async fn drive(connection: impl std::future::Future<Output = ()>) {
    let mut connection = std::pin::pin!(connection);
    let mut tick = tokio::time::interval(KICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    std::future::poll_fn(|cx| {
        for _ in 0..REPOLLS {
            if connection.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        while tick.poll_tick(cx).is_ready() {}
        std::task::Poll::Pending
    })
    .await
}

/// Serves one bound connection until it ends or `cancel`.
async fn serve(
    shared: &Arc<Shared>,
    client: &Client,
    mut events: impl Stream<Item = Event> + Unpin,
    cancel: &CancellationToken,
) -> Ended {
    let mut last_error: Option<String> = None;
    // Each deliver_sm is answered once its report is kept, which takes a
    // store write: they are handled beside the read loop, at most
    // RECEIPTS_IN_FLIGHT at once (beyond that the loop waits, so the SMSC's
    // own window holds the rest).
    let receipts = Arc::new(tokio::sync::Semaphore::new(RECEIPTS_IN_FLIGHT));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            e = events.next() => e,
        };
        match event {
            None => {
                return Ended::Lost(last_error.unwrap_or_else(|| "connection closed".to_string()))
            }
            Some(Event::Error(e)) => {
                let why = describe(&e);
                tracing::debug!(reason = %why, "smpp: connection error");
                last_error = Some(why);
            }
            Some(Event::Incoming(command)) if command.id() == CommandId::DeliverSm => {
                let Ok(permit) = receipts.clone().acquire_owned().await else {
                    return Ended::Cancelled;
                };
                let (shared, client) = (shared.clone(), client.clone());
                tokio::spawn(async move {
                    handle(&shared, &client, command).await;
                    drop(permit);
                });
            }
            Some(Event::Incoming(command)) => handle(shared, client, command).await,
        }
    }
}

/// One command from the SMSC that is not the answer to a waiting request.
async fn handle(shared: &Shared, client: &Client, command: Command) {
    let seq = command.sequence_number();
    match (command.id(), command.pdu()) {
        (CommandId::DeliverSm, Some(Pdu::DeliverSm(deliver))) => {
            let status = deliver_sm(shared, deliver).await;
            let answer = client
                .status(status)
                .deliver_sm_resp(seq, DeliverSmResp::default());
            if let Err(e) = answer.await {
                tracing::debug!(reason = %describe(&e), "smpp: deliver_sm_resp not sent");
            }
        }
        (CommandId::Unbind, _) => {
            tracing::info!("smpp: the SMSC unbinds");
            let _ = client.unbind_resp(seq).await;
            let _ = client.close().await;
        }
        (id, _) if u32::from(id) & 0x8000_0000 != 0 => {
            // A response whose request timed out or was cancelled.
            tracing::debug!(command = ?id, seq, "smpp: late response");
        }
        (id, _) => {
            tracing::debug!(command = ?id, seq, "smpp: request not supported; generic_nack");
            let _ = client
                .status(CommandStatus::EsmeRinvcmdid)
                .generic_nack(seq)
                .await;
        }
    }
}

/// Takes a deliver_sm; the status to answer it with (ESME_RX_T_APPN, "try
/// again", when herald could not keep it).
async fn deliver_sm(shared: &Shared, deliver: &DeliverSm) -> CommandStatus {
    let esm_class = u8::from(deliver.esm_class);
    let body = body_bytes(deliver);
    if esm_class & 0x04 == 0 {
        return mobile_originated(shared, deliver, esm_class, &body).await;
    }
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(state)) => tlv_state = Some(u8::from(*state)),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&body);
    let form = shared.settings.receipt_ids;
    let Some(receipt) = decide_receipt(tlv_id.as_deref(), tlv_state, &text, form) else {
        tracing::debug!("smpp: receipt without an id or not final; not reported");
        return CommandStatus::EsmeRok;
    };
    let report = DeliveryReport {
        key: ReportKey::Provider(receipt.id),
        status: receipt.status,
        reply: receipt.reply,
        // A receipt comes from the handset's number: the message's recipient.
        address: Some(deliver.source_addr.as_str().to_string()),
    };
    if shared.reports.report(report).await {
        CommandStatus::EsmeRok
    } else {
        CommandStatus::EsmeRxTAppn
    }
}

/// The user data of a deliver_sm: short_message, else message_payload.
fn body_bytes(deliver: &DeliverSm) -> Vec<u8> {
    let short = deliver.short_message().as_ref();
    if !short.is_empty() {
        return short.to_vec();
    }
    deliver
        .tlvs()
        .iter()
        .find_map(|tlv| match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
            _ => None,
        })
        .unwrap_or_default()
}

async fn mobile_originated(
    shared: &Shared,
    deliver: &DeliverSm,
    esm_class: u8,
    body: &[u8],
) -> CommandStatus {
    let Some(inbound) = &shared.inbound else {
        tracing::debug!("smpp: mobile-originated message dropped (no inbound channel)");
        return CommandStatus::EsmeRok;
    };
    let with_udh = esm_class & 0x40 != 0;
    let user_data = match body.first() {
        Some(&udhl) if with_udh => body.get(usize::from(udhl) + 1..).unwrap_or_default(),
        _ => body,
    };
    let address = |ton: Ton, addr: &str| match ton {
        Ton::International => format!("+{addr}"),
        _ => addr.to_string(),
    };
    let (kept, stored) = tokio::sync::oneshot::channel();
    let sms = InboundSms {
        from: address(deliver.source_addr_ton, deliver.source_addr.as_str()),
        to: address(deliver.dest_addr_ton, deliver.destination_addr.as_str()),
        text: decode_text(deliver.data_coding, user_data),
        kept,
    };
    if inbound.send(sms).await.is_err() {
        return CommandStatus::EsmeRxTAppn;
    }
    // Answered only once stored: a crash before loses nothing, the SMSC
    // delivers it again.
    match stored.await {
        Ok(true) => CommandStatus::EsmeRok,
        _ => CommandStatus::EsmeRxTAppn,
    }
}

/// Text of a mobile-originated message: UCS-2/UTF-16BE, Latin-1, else read
/// as UTF-8 (GSM-7 decoding belongs to `message::sms_text`).
fn decode_text(coding: DataCoding, bytes: &[u8]) -> String {
    match coding {
        DataCoding::Ucs2 => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        DataCoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let cases = [
            (0, 500),
            (1, 1_000),
            (2, 2_000),
            (5, 16_000),
            (6, 30_000),
            (40, 30_000),
            (u32::MAX, 30_000),
        ];
        for (failures, want_ms) in cases {
            assert_eq!(
                backoff(base, cap, failures),
                Duration::from_millis(want_ms),
                "{failures}"
            );
        }
    }

    #[test]
    fn inbound_texts_are_decoded_by_data_coding() {
        let utf16: Vec<u8> = "Да 😀".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(decode_text(DataCoding::Ucs2, &utf16), "Да 😀");
        assert_eq!(
            decode_text(DataCoding::Latin1, &[0x63, 0x61, 0x66, 0xE9]),
            "café"
        );
        assert_eq!(decode_text(DataCoding::McSpecific, b"STOP"), "STOP");
    }
}
