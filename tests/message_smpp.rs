//! herald's SMPP transport against a real SMSC that is not herald's code:
//! tests/peers/smsc.js on the npm `smpp` package (installed under target/
//! when missing). Assertions are on the PDUs the SMSC received (TON/NPI,
//! data_coding, esm_class, the octets of short_message and its UDH), on the
//! results of `send` and on the reports herald produced from the SMSC's
//! receipts. No sleeps: every wait reads the SMSC's output or a channel
//! with a deadline.

#[path = "peers/smsc.rs"]
mod smsc;

use std::time::Duration;

use herald::config::Secret;
use herald::message::smpp::{normalise_id, InboundSms, ReceiptIds, SmppSettings, SmppTransport};
use herald::message::transport::{
    DeliveryReport, Outbound, ReportKey, ReportSink, ReportStatus, Reported, SendResult, Sms,
    Transport,
};
use smsc::Smsc;
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn settings(port: u16) -> SmppSettings {
    let mut s = SmppSettings::new("127.0.0.1", port, "herald", Secret("secret".into()));
    s.response_timeout = Duration::from_secs(5);
    s.reconnect_base = Duration::from_millis(20);
    s.reconnect_cap = Duration::from_millis(200);
    s.bind_wait = Duration::from_secs(5);
    s
}

fn start(s: SmppSettings) -> (SmppTransport, mpsc::UnboundedReceiver<DeliveryReport>) {
    let (tx, rx) = ReportSink::channel(64);
    (SmppTransport::start(s, tx, None), keep_all(rx))
}

/// Keeps every report at once (as the store would), handing it on.
fn keep_all(mut rx: mpsc::Receiver<Reported>) -> mpsc::UnboundedReceiver<DeliveryReport> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let _ = tx.send(r.kept());
        }
    });
    out
}

fn sms(from: &str, to: &str, body: &str) -> Outbound {
    Outbound::Sms(Sms {
        id: Uuid::now_v7(),
        from: from.to_string(),
        to: to.to_string(),
        body: body.to_string(),
    })
}

fn accepted_id(result: &SendResult) -> String {
    match result {
        SendResult::Accepted {
            provider_id: Some(id),
            ..
        } => id.clone(),
        other => panic!("expected Accepted with a provider id, got {other:?}"),
    }
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<DeliveryReport>) -> DeliveryReport {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no delivery report within the deadline")
        .expect("report channel closed")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn bound(transport: &SmppTransport) {
    assert!(
        transport.wait_bound(WAIT).await,
        "the transport did not bind within {WAIT:?}"
    );
    assert!(transport.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gsm7_text_goes_as_data_coding_0_and_its_delivrd_receipt_reports_delivered() {
    let mut smsc = Smsc::start(&[]).await;
    let mut s = settings(smsc.port);
    s.enquire_link_interval = Duration::from_millis(100);
    let (transport, mut reports) = start(s);
    bound(&transport).await;

    let result = transport
        .send(&sms(
            "+15551234567",
            "+15557654321",
            "Hello @ 10:00, herald",
        ))
        .await;
    let id = accepted_id(&result);

    let sub = smsc.wait_kind("submit_sm", 1, WAIT).await.remove(0);
    assert_eq!(sub["source_addr_ton"], 1);
    assert_eq!(sub["source_addr_npi"], 1);
    assert_eq!(sub["source_addr"], "15551234567");
    assert_eq!(sub["dest_addr_ton"], 1);
    assert_eq!(sub["dest_addr_npi"], 1);
    assert_eq!(sub["destination_addr"], "15557654321");
    assert_eq!(sub["registered_delivery"], 1);
    assert_eq!(sub["data_coding"], 0);
    assert_eq!(sub["esm_class"], 0);
    // GSM 03.38: '@' is 0x00; the rest of this text is ASCII-compatible.
    let mut want = b"Hello ".to_vec();
    want.push(0x00);
    want.extend(b" 10:00, herald");
    assert_eq!(sub["short_message_hex"], hex_of(&want));
    assert_eq!(
        id,
        normalise_id(sub["message_id"].as_str().expect("message_id"))
    );

    let report = next_report(&mut reports).await;
    assert_eq!(report.key, ReportKey::Provider(id));
    assert_eq!(report.status, ReportStatus::Delivered);
    assert_eq!(report.reply.text.as_deref(), Some("DELIVRD"));
    assert_eq!(report.reply.code.as_deref(), Some("000"));
    let resp = smsc.wait_kind("deliver_sm_resp", 1, WAIT).await.remove(0);
    assert_eq!(resp["status"], 0, "the receipt was answered OK");

    let bind = smsc.wait_kind("bind", 1, WAIT).await.remove(0);
    assert_eq!(bind["interface_version"], 0x34);
    assert_eq!(bind["ok"], true);
    smsc.wait_kind("enquire_link", 1, WAIT).await;

    transport.close().await;
    assert!(!transport.ready());
    smsc.wait_kind("unbind", 1, WAIT).await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucs2_text_goes_as_data_coding_8_in_utf16be_from_an_alphanumeric_sender() {
    let mut smsc = Smsc::start(&[]).await;
    let (transport, mut reports) = start(settings(smsc.port));
    bound(&transport).await;

    let text = "Привет 😀";
    let id = accepted_id(&transport.send(&sms("Herald", "+79001234567", text)).await);
    let sub = smsc.wait_kind("submit_sm", 1, WAIT).await.remove(0);
    assert_eq!(sub["data_coding"], 8);
    assert_eq!(sub["esm_class"], 0);
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    assert_eq!(sub["short_message_hex"], hex_of(&utf16));
    assert_eq!(sub["source_addr_ton"], 5);
    assert_eq!(sub["source_addr_npi"], 0);
    assert_eq!(sub["source_addr"], "Herald");
    assert_eq!(sub["dest_addr_ton"], 1);
    assert_eq!(sub["destination_addr"], "79001234567");
    assert_eq!(next_report(&mut reports).await.key, ReportKey::Provider(id));
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_character_gsm_text_goes_as_two_parts_sharing_one_udh_reference() {
    let mut smsc = Smsc::start(&[]).await;
    let (transport, mut reports) = start(settings(smsc.port));
    bound(&transport).await;

    // Characters whose GSM-7 code equals their ASCII code.
    let text: String = "The quick brown fox jumps over the lazy dog 0123456789. "
        .chars()
        .cycle()
        .take(300)
        .collect();
    let id = accepted_id(
        &transport
            .send(&sms("+15551234567", "+15557654321", &text))
            .await,
    );

    let parts = smsc.wait_kind("submit_sm", 2, WAIT).await;
    assert_eq!(parts.len(), 2, "exactly two submit_sm");
    let mut joined = Vec::new();
    let mut reference = None;
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["esm_class"], 0x40, "UDHI set on part {}", i + 1);
        assert_eq!(part["data_coding"], 0);
        assert_eq!(part["registered_delivery"], 1);
        let udh = part["udh_hex"].as_str().expect("a UDH");
        assert_eq!(udh.len(), 12, "a 6-octet UDH: {udh}");
        assert_eq!(&udh[..6], "050003", "IEI 0x00, length 3");
        assert_eq!(&udh[8..10], "02", "total parts");
        assert_eq!(&udh[10..12], format!("{:02x}", i + 1), "sequence");
        let this_ref = udh[6..8].to_string();
        assert_eq!(reference.get_or_insert(this_ref.clone()), &this_ref);
        let sm = part["short_message_hex"].as_str().expect("short_message");
        assert!(sm.starts_with(udh));
        joined.push(sm[12..].to_string());
    }
    assert_eq!(joined.concat(), hex_of(text.as_bytes()), "reassembled text");
    assert_eq!(joined[0].len() / 2, 153);
    assert_eq!(
        id,
        normalise_id(parts[0]["message_id"].as_str().expect("id")),
        "the provider id is the first part's"
    );

    // Both parts get receipts; the first part's is the message's.
    let first = next_report(&mut reports).await;
    let second = next_report(&mut reports).await;
    let second_id = normalise_id(parts[1]["message_id"].as_str().expect("id"));
    let mut keys = vec![first.key, second.key];
    keys.sort_by_key(|k| format!("{k:?}"));
    let mut want = vec![ReportKey::Provider(id), ReportKey::Provider(second_id)];
    want.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(keys, want);
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliv_receipt_reports_failed() {
    let mut smsc = Smsc::start(&[]).await;
    let (transport, mut reports) = start(settings(smsc.port));
    bound(&transport).await;
    // smsc.js answers UNDELIV for numbers ending in 0.
    let id = accepted_id(
        &transport
            .send(&sms("+15551234567", "+15550001110", "Hi"))
            .await,
    );
    let report = next_report(&mut reports).await;
    assert_eq!(report.key, ReportKey::Provider(id));
    assert_eq!(report.status, ReportStatus::Failed);
    assert_eq!(report.reply.text.as_deref(), Some("UNDELIV"));
    assert_eq!(report.reply.code.as_deref(), Some("001"));
    smsc.wait_kind("deliver_sm_resp", 1, WAIT).await;
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_submit_answers_retry_and_the_next_send_is_accepted() {
    let mut smsc = Smsc::start(&[("SMSC_THROTTLE_FIRST", "1")]).await;
    let (transport, _reports) = start(settings(smsc.port));
    bound(&transport).await;

    let first = transport
        .send(&sms("+15551234567", "+15557654321", "one"))
        .await;
    match &first {
        SendResult::Retry { reply, after } => {
            assert_eq!(reply.code.as_deref(), Some("0x00000058"));
            assert_eq!(reply.text.as_deref(), Some("ESME_RTHROTTLED"));
            assert_eq!(*after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    let second = transport
        .send(&sms("+15551234567", "+15557654321", "one"))
        .await;
    accepted_id(&second);
    let stats = smsc.stats(WAIT).await;
    assert_eq!(
        stats["submits"], 2,
        "the transport did not resend by itself"
    );
    assert_eq!(stats["throttled"], 1);
    assert_eq!(stats["accepted"], 1);
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_ids_in_responses_match_decimal_ids_in_receipts() {
    let mut smsc = Smsc::start(&[("SMSC_ID_MODE", "hex"), ("SMSC_RECEIPT_TLVS", "0")]).await;

    // Configured for this carrier: the report names the accepted id.
    let mut s = settings(smsc.port);
    s.receipt_ids = ReceiptIds::DecimalOfHex;
    let (transport, mut reports) = start(s);
    bound(&transport).await;
    let id = accepted_id(
        &transport
            .send(&sms("+15551234567", "+15557654321", "a"))
            .await,
    );
    let sub = smsc.wait_kind("submit_sm", 1, WAIT).await.remove(0);
    let given = sub["message_id"].as_str().expect("id").to_string();
    assert!(given.starts_with("0000"), "hex with leading zeros: {given}");
    assert_eq!(id, normalise_id(&given));
    let report = next_report(&mut reports).await;
    assert_eq!(report.key, ReportKey::Provider(id));
    assert_eq!(report.status, ReportStatus::Delivered);
    transport.close().await;

    // The control: taken as given, the decimal receipt id matches nothing.
    let (transport, mut reports) = start(settings(smsc.port));
    bound(&transport).await;
    let id = accepted_id(
        &transport
            .send(&sms("+15551234567", "+15557654321", "b"))
            .await,
    );
    let report = next_report(&mut reports).await;
    assert_ne!(report.key, ReportKey::Provider(id.clone()));
    let decimal = u64::from_str_radix(&id, 16).expect("hex id").to_string();
    assert_eq!(report.key, ReportKey::Provider(decimal));
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_rebinds_after_the_smsc_drops_the_connection_and_sends_nothing_twice() {
    let mut smsc = Smsc::start(&[("SMSC_DROP_AFTER", "2")]).await;
    let (transport, _reports) = start(settings(smsc.port));
    bound(&transport).await;

    for i in 0..2 {
        accepted_id(
            &transport
                .send(&sms("+15551234567", "+15557654321", &format!("before {i}")))
                .await,
        );
    }
    // The SMSC takes this one and drops the connection without answering.
    let lost = transport
        .send(&sms("+15551234567", "+15557654321", "lost"))
        .await;
    assert!(
        matches!(lost, SendResult::Retry { .. }),
        "a submit outstanding when the connection drops answers Retry, got {lost:?}"
    );
    smsc.wait_kind("bind", 2, WAIT).await;
    bound(&transport).await;
    for i in 0..2 {
        accepted_id(
            &transport
                .send(&sms("+15551234567", "+15557654321", &format!("after {i}")))
                .await,
        );
    }
    let stats = smsc.stats(WAIT).await;
    assert_eq!(stats["submits"], 5, "2 before, the dropped one, 2 after");
    assert_eq!(stats["unique_bodies"], 5, "nothing sent twice");
    assert_eq!(stats["dropped"], 1);
    assert_eq!(stats["binds"], 2);
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_keeps_the_transport_unbound_and_sends_answer_retry() {
    let mut smsc = Smsc::start(&[("SMSC_PASSWORD", "other")]).await;
    let mut s = settings(smsc.port);
    s.bind_wait = Duration::from_millis(200);
    let (transport, _reports) = start(s);
    // It keeps trying, with backoff.
    let binds = smsc.wait_kind("bind", 2, WAIT).await;
    assert!(binds.iter().all(|b| b["ok"] == false));
    assert!(!transport.ready());
    let result = transport
        .send(&sms("+15551234567", "+15557654321", "x"))
        .await;
    assert!(
        matches!(result, SendResult::Unavailable { .. }),
        "not bound: nothing submitted, got {result:?}"
    );
    let stats = smsc.stats(WAIT).await;
    assert_eq!(stats["submits"], 0);
    transport.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_destination_fails_without_reaching_the_smsc() {
    let mut smsc = Smsc::start(&[]).await;
    let (transport, _reports) = start(settings(smsc.port));
    bound(&transport).await;
    let result = transport
        .send(&sms("+15551234567", "5557654321", "x"))
        .await;
    assert!(
        matches!(result, SendResult::Failed { .. }),
        "got {result:?}"
    );
    let stats = smsc.stats(WAIT).await;
    assert_eq!(stats["submits"], 0);
    transport.close().await;
    smsc.stop().await;
}

async fn next_inbound(inbound: &mut mpsc::Receiver<InboundSms>) -> InboundSms {
    tokio::time::timeout(WAIT, inbound.recv())
        .await
        .expect("no inbound SMS within the deadline")
        .expect("inbound channel closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mobile_originated_message_reaches_the_inbound_channel_and_is_answered() {
    let mut smsc = Smsc::start(&[("SMSC_MO_TEXT", "STOP Да")]).await;
    let (reports_tx, _reports) = ReportSink::channel(8);
    let (inbound_tx, mut inbound) = mpsc::channel(8);
    let transport = SmppTransport::start(settings(smsc.port), reports_tx, Some(inbound_tx));
    let mo = next_inbound(&mut inbound).await;
    assert_eq!(
        (mo.from.as_str(), mo.to.as_str(), mo.text.as_str()),
        ("+15559876543", "+15551234567", "STOP Да")
    );
    // Not kept (a store error): answered ESME_RX_T_APPN, for the SMSC to
    // deliver it again.
    mo.kept.send(false).unwrap();
    let resp = smsc.wait_kind("deliver_sm_resp", 1, WAIT).await.remove(0);
    assert_eq!(resp["status"], 0x64);
    // Kept: answered ESME_ROK.
    smsc.mo("15559876543", "15551234567", "HELP").await;
    let mo = next_inbound(&mut inbound).await;
    assert_eq!(mo.text, "HELP");
    mo.kept.send(true).unwrap();
    let resp = smsc.wait_kind("deliver_sm_resp", 2, WAIT).await.remove(1);
    assert_eq!(resp["status"], 0);
    transport.close().await;
    smsc.stop().await;
}
