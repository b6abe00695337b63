//! E-mail transports against peers that are not herald: the SMTP transport
//! against aiosmtpd (a real SMTP server), the file transport's `.eml`
//! parsed back, and the bounce listener fed DSNs by Python's smtplib.

mod peers;

use std::time::Duration;

use herald::config::Secret;
use herald::message::bounce::{BounceListener, BounceSettings};
use herald::message::dsn::verp_address;
use herald::message::file::FileTransport;
use herald::message::smtp::{SmtpSettings, SmtpTransport};
use herald::message::transport::{
    DeliveryReport, Email, Mailbox, Outbound, ReportKey, ReportSink, ReportStatus, SendResult, Sms,
    Transport,
};
use mail_parser::{MessageParser, MimeHeaders};
use peers::{send_with_smtplib, SmtpSink, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn mailbox(email: &str, name: Option<&str>) -> Mailbox {
    Mailbox {
        email: email.into(),
        name: name.map(str::to_string),
    }
}

fn email(to: &str) -> Email {
    let id = Uuid::new_v4();
    Email {
        id,
        message_id: format!("{}@herald.test", id.simple()),
        from: mailbox("news@herald.test", Some("Herald News")),
        to: vec![mailbox(to, Some("Ann Example"))],
        cc: vec![mailbox("cc@example.com", None)],
        bcc: vec![mailbox("audit@herald.test", None)],
        reply_to: Some(mailbox("help@herald.test", None)),
        subject: "Your March offer".into(),
        body_html: Some("<p>Hello <b>Ann</b></p>".into()),
        body_text: Some("Hello Ann".into()),
        return_path: verp_address(id, "bounces.herald.test"),
        list_unsubscribe: Some(format!("https://herald.test/u/{}", id.simple())),
    }
}

fn transactional(to: &str) -> Email {
    Email {
        list_unsubscribe: None,
        body_html: None,
        ..email(to)
    }
}

fn smtp(sink_url: String) -> SmtpTransport {
    SmtpTransport::new(&SmtpSettings {
        url: sink_url,
        pool_size: 2,
        timeout: Duration::from_secs(15),
        hello_name: Some("herald.test".into()),
        ..SmtpSettings::default()
    })
    .expect("smtp settings")
}

/// A header's value as written (mail-parser reads List-Unsubscribe as an
/// address list; the raw text is what a mailbox provider sees).
fn header_text(m: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name).map(|v| v.trim().to_string())
}

fn first_address(m: &mail_parser::Message<'_>, which: &str) -> String {
    let list = match which {
        "from" => m.from(),
        "to" => m.to(),
        "cc" => m.cc(),
        "reply-to" => m.reply_to(),
        _ => None,
    };
    list.and_then(|l| l.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string()
}

/// Asserts the headers and bodies every rendered e-mail must carry.
fn assert_rendered(raw: &str, e: &Email) {
    let m = MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parseable message");
    assert_eq!(first_address(&m, "from"), "news@herald.test");
    assert_eq!(
        m.from().and_then(|l| l.first()).and_then(|a| a.name()),
        Some("Herald News")
    );
    assert_eq!(first_address(&m, "to"), e.to[0].email);
    assert_eq!(first_address(&m, "cc"), "cc@example.com");
    assert_eq!(first_address(&m, "reply-to"), "help@herald.test");
    assert_eq!(m.subject(), Some(e.subject.as_str()));
    assert_eq!(m.message_id(), Some(e.message_id.as_str()));
    assert!(m.header("Bcc").is_none(), "{raw}");
    assert!(
        !raw.contains("audit@herald.test"),
        "Bcc leaked into the message:\n{raw}"
    );
    assert_eq!(
        m.body_text(0).as_deref().map(str::trim),
        e.body_text.as_deref()
    );
    match &e.body_html {
        Some(html) => {
            let ct = m.content_type().expect("content type");
            assert_eq!(
                (ct.ctype(), ct.subtype()),
                ("multipart", Some("alternative")),
                "{raw}"
            );
            assert_eq!(
                m.body_html(0).as_deref().map(str::trim),
                Some(html.as_str())
            );
        }
        None => assert!(m.html_part(0).is_none_or(|p| !p.is_text_html()), "{raw}"),
    }
    match &e.list_unsubscribe {
        Some(url) => {
            assert_eq!(
                header_text(&m, "List-Unsubscribe").as_deref(),
                Some(format!("<{url}>").as_str()),
                "{raw}"
            );
            assert_eq!(
                header_text(&m, "List-Unsubscribe-Post").as_deref(),
                Some("List-Unsubscribe=One-Click")
            );
        }
        None => {
            assert!(m.header("List-Unsubscribe").is_none(), "{raw}");
            assert!(m.header("List-Unsubscribe-Post").is_none(), "{raw}");
        }
    }
}

fn code(r: &SendResult) -> Option<String> {
    match r {
        SendResult::Accepted { reply, .. }
        | SendResult::Retry { reply, .. }
        | SendResult::Unavailable { reply, .. }
        | SendResult::Bounced { reply }
        | SendResult::Failed { reply } => reply.code.clone(),
    }
}

#[tokio::test]
async fn a_marketing_email_reaches_a_real_smtp_server_with_every_header() {
    let mut sink = SmtpSink::start().await;
    let t = smtp(sink.url());
    let e = email("ann@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    assert!(
        matches!(
            &r,
            SendResult::Accepted {
                provider_id: None,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(code(&r).as_deref(), Some("250"));
    let got = sink.next_message().await;
    assert_eq!(got.mail_from, e.return_path);
    assert_eq!(
        got.rcpt_tos,
        ["ann@example.com", "cc@example.com", "audit@herald.test"]
    );
    assert_rendered(&got.data, &e);
    t.close().await;
}

#[tokio::test]
async fn a_transactional_email_has_no_list_unsubscribe_and_the_connection_is_reused() {
    let mut sink = SmtpSink::start().await;
    let t = smtp(sink.url());
    let mut ports = Vec::new();
    for _ in 0..2 {
        let e = transactional("bob@example.com");
        let r = t.send(&Outbound::Email(e.clone())).await;
        assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
        let got = sink.next_message().await;
        assert_eq!(got.mail_from, e.return_path);
        assert_rendered(&got.data, &e);
        ports.push(got.peer_port);
    }
    assert_eq!(
        ports[0], ports[1],
        "the second message came on a new connection"
    );
}

#[tokio::test]
async fn a_connection_the_relay_closed_while_idle_is_replaced_and_the_message_sent() {
    let mut sink = SmtpSink::start().await;
    let t = smtp(sink.url());
    // The sink closes the connection after accepting a message to `hangup`;
    // the transport has parked it as idle by then.
    let r = t
        .send(&Outbound::Email(transactional("hangup@example.com")))
        .await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    let first = sink.next_message().await;
    let e = transactional("ann@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    let second = sink.next_message().await;
    assert_eq!(second.mail_from, e.return_path);
    assert_ne!(
        first.peer_port, second.peer_port,
        "the second message came on the closed connection"
    );
}

/// A transport to a TLS sink that trusts the sink's certificate.
fn smtp_tls(url: String) -> SmtpTransport {
    SmtpTransport::new(&SmtpSettings {
        url,
        pool_size: 2,
        timeout: Duration::from_secs(15),
        ca_file: Some(peers::tls_cert_and_key().0),
        hello_name: Some("herald.test".into()),
        ..SmtpSettings::default()
    })
    .expect("smtp settings")
}

#[tokio::test]
async fn smtps_sends_over_tls_from_the_first_byte_and_reuses_the_connection() {
    let (cert, key) = peers::tls_cert_and_key();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut sink = SmtpSink::start_with(&["--tls", &cert, &key]).await;
    let t = smtp_tls(format!("smtps://127.0.0.1:{}", sink.port));
    let mut ports = Vec::new();
    for to in ["ann@example.com", "bob@example.com"] {
        let e = email(to);
        let r = t.send(&Outbound::Email(e.clone())).await;
        assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
        let got = sink.next_message().await;
        assert!(got.tls, "{to} came in clear");
        assert_rendered(&got.data, &e);
        ports.push(got.peer_port);
    }
    assert_eq!(
        ports[0], ports[1],
        "the second message came on a new connection"
    );
    t.close().await;
}

#[tokio::test]
async fn starttls_required_upgrades_before_mail_from() {
    let (cert, key) = peers::tls_cert_and_key();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut sink = SmtpSink::start_with(&["--starttls", &cert, &key]).await;
    let t = smtp_tls(format!("smtp://127.0.0.1:{}?tls=required", sink.port));
    let e = email("ann@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    let got = sink.next_message().await;
    assert!(got.tls, "the message came in clear");
    assert_eq!(got.mail_from, e.return_path);
    t.close().await;
}

#[tokio::test]
async fn a_recipient_refused_with_550_is_bounced_with_the_code() {
    let mut sink = SmtpSink::start().await;
    let t = smtp(sink.url());
    let r = t
        .send(&Outbound::Email(transactional("reject-me@example.com")))
        .await;
    let SendResult::Bounced { reply } = &r else {
        panic!("expected Bounced, got {r:?}");
    };
    assert_eq!(reply.code.as_deref(), Some("550"));
    let text = reply.text.as_deref().unwrap_or_default();
    assert!(text.contains("reject-me@example.com"), "{text}");
    assert!(text.contains("User unknown"), "{text}");
    // The transport goes on: the next message is sent on a new connection.
    let e = transactional("ok@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    assert_eq!(sink.next_message().await.mail_from, e.return_path);
}

#[tokio::test]
async fn a_451_is_retried_and_the_second_send_is_accepted() {
    let mut sink = SmtpSink::start().await;
    let t = smtp(sink.url());
    let e = transactional("later@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    let SendResult::Retry { reply, .. } = &r else {
        panic!("expected Retry, got {r:?}");
    };
    assert_eq!(reply.code.as_deref(), Some("451"));
    let r = t.send(&Outbound::Email(e.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    let got = sink.next_message().await;
    assert_eq!(got.rcpt_tos[0], "later@example.com");
    assert_eq!(got.mail_from, e.return_path);
}

#[tokio::test]
async fn a_relay_that_is_down_means_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let t = smtp(format!("smtp://127.0.0.1:{port}"));
    let r = t
        .send(&Outbound::Email(transactional("ann@example.com")))
        .await;
    // Nothing was sent: retried later, or by the next failover provider now.
    assert!(matches!(r, SendResult::Unavailable { .. }), "{r:?}");
    assert_eq!(code(&r).as_deref(), Some("network"));
}

#[tokio::test]
async fn a_refused_login_fails_without_bouncing_and_the_right_one_sends() {
    let mut sink = SmtpSink::start_with(&["--auth"]).await;
    let with_password = |password: &str| {
        SmtpTransport::new(&SmtpSettings {
            url: sink.url(),
            username: Some("herald".into()),
            password: Secret(password.into()),
            timeout: Duration::from_secs(15),
            ..SmtpSettings::default()
        })
        .expect("smtp settings")
    };
    let wrong = with_password("wrong");
    assert!(!format!("{wrong:?}").contains("wrong"), "{wrong:?}");
    let r = wrong
        .send(&Outbound::Email(transactional("ann@example.com")))
        .await;
    let SendResult::Failed { reply } = &r else {
        panic!("expected Failed, got {r:?}");
    };
    assert_eq!(reply.code.as_deref(), Some("535"));

    let right = with_password("s3cret");
    let e = transactional("ann@example.com");
    let r = right.send(&Outbound::Email(e.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    assert_eq!(sink.next_message().await.mail_from, e.return_path);
}

#[tokio::test]
async fn a_bad_address_fails_naming_it_and_sms_is_refused() {
    let sink = SmtpSink::start().await;
    let mut e = transactional("ann@example.com");
    e.cc = vec![mailbox("not-an-address", None)];
    let dir = tempfile::tempdir().expect("tempdir");
    let transports: [Box<dyn Transport>; 2] = [
        Box::new(smtp(sink.url())),
        Box::new(FileTransport::new(dir.path().join("outbox"))),
    ];
    let sms = Outbound::Sms(Sms {
        id: Uuid::new_v4(),
        from: "+15550000000".into(),
        to: "+15551234567".into(),
        body: "hi".into(),
    });
    for t in &transports {
        let r = t.send(&Outbound::Email(e.clone())).await;
        let SendResult::Failed { reply } = &r else {
            panic!("{}: expected Failed, got {r:?}", t.name());
        };
        assert!(
            reply
                .text
                .as_deref()
                .unwrap_or_default()
                .contains("not-an-address"),
            "{reply:?}"
        );
        let r = t.send(&sms).await;
        let SendResult::Failed { reply } = &r else {
            panic!("{}: expected Failed for SMS, got {r:?}", t.name());
        };
        assert!(reply.text.as_deref().unwrap_or_default().contains("SMS"));
    }
}

#[tokio::test]
async fn the_file_transport_writes_a_parseable_eml_with_the_same_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("data/outbox");
    let t = FileTransport::new(outbox.clone());
    let e = email("ann@example.com");
    let r = t.send(&Outbound::Email(e.clone())).await;
    let SendResult::Accepted { provider_id, reply } = &r else {
        panic!("expected Accepted, got {r:?}");
    };
    assert_eq!(*provider_id, None);
    assert_eq!(reply.code.as_deref(), Some("file"));
    let path = outbox.join(format!("{}.eml", e.id));
    let raw = std::fs::read_to_string(&path).expect("the .eml file");
    assert_rendered(&raw, &e);

    // The same id again replaces the same file; nothing else is left behind.
    let mut again = e.clone();
    again.subject = "Your March offer, again".into();
    let r = t.send(&Outbound::Email(again.clone())).await;
    assert!(matches!(r, SendResult::Accepted { .. }), "{r:?}");
    let names: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("{}.eml", e.id)]);
    assert_rendered(&std::fs::read_to_string(&path).expect("the .eml"), &again);
}

/// A running bounce listener and where its reports go.
struct Listener {
    port: u16,
    reports: mpsc::UnboundedReceiver<DeliveryReport>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_listener(max_message_bytes: usize) -> Listener {
    let (tx, mut kept) = ReportSink::channel(16);
    // Every report is kept at once (as the store would) and handed on.
    let (out, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(r) = kept.recv().await {
            let _ = out.send(r.kept());
        }
    });
    let listener = BounceListener::bind(
        BounceSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            max_message_bytes,
            idle_timeout: Duration::from_secs(10),
            ..BounceSettings::default()
        },
        tx,
    )
    .await
    .expect("bind the bounce listener");
    let port = listener.local_addr().expect("addr").port();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(listener.run(cancel.clone()));
    Listener {
        port,
        reports,
        cancel,
        task,
    }
}

impl Listener {
    async fn next_report(&mut self) -> DeliveryReport {
        tokio::time::timeout(DEADLINE, self.reports.recv())
            .await
            .expect("no report in time")
            .expect("the listener dropped its sink")
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the listener did not stop in time")
            .expect("the listener task panicked");
    }
}

fn postfix_dsn(id: Uuid) -> String {
    std::fs::read_to_string(peers::peers_dir().join("dsn_postfix.eml"))
        .expect("the DSN fixture")
        .replace("{{ID}}", &id.to_string())
        .replace('\n', "\r\n")
}

#[tokio::test]
async fn a_real_dsn_becomes_a_bounced_report_for_the_verp_id() {
    let mut l = start_listener(1024 * 1024).await;
    let id = Uuid::new_v4();
    let rcpt = verp_address(id, "herald.test");
    let verdict = send_with_smtplib(l.port, "", &[&rcpt], postfix_dsn(id).as_bytes()).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    let r = l.next_report().await;
    assert_eq!(r.key, ReportKey::Message(id));
    assert_eq!(r.status, ReportStatus::Bounced);
    assert_eq!(r.reply.code.as_deref(), Some("5.1.1"));
    assert_eq!(
        r.reply.text.as_deref(),
        Some("smtp; 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown")
    );
    // The `delayed` recipient of the same DSN made no report.
    assert!(l.reports.try_recv().is_err());

    let id = Uuid::new_v4();
    let delivered = postfix_dsn(id)
        .replace("Action: failed", "Action: delivered")
        .replace("Status: 5.1.1", "Status: 2.0.0");
    let verdict = send_with_smtplib(
        l.port,
        "",
        &[&verp_address(id, "other.test")],
        delivered.as_bytes(),
    )
    .await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    let r = l.next_report().await;
    assert_eq!(
        (r.key, r.status, r.reply.code.as_deref()),
        (
            ReportKey::Message(id),
            ReportStatus::Delivered,
            Some("2.0.0")
        )
    );
    l.stop().await;
}

#[tokio::test]
async fn mail_to_other_addresses_is_refused_with_550() {
    let l = start_listener(1024 * 1024).await;
    let verdict = send_with_smtplib(
        l.port,
        "",
        &["postmaster@herald.test"],
        postfix_dsn(Uuid::new_v4()).as_bytes(),
    )
    .await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["code"], 550, "{verdict}");
    l.stop().await;
}

/// Talks raw SMTP: writes `input`, half-closes, reads all the answers.
async fn raw_session(port: u16, input: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut r, mut w) = s.split();
    let write = async {
        // The listener may close first (too many errors): that is fine.
        let _ = w.write_all(input).await;
        let _ = w.shutdown().await;
    };
    let read = async {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out).await;
        out
    };
    let (_, out) = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) })
        .await
        .expect("the listener did not answer in time");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn garbage_and_an_oversized_data_do_not_stop_the_bounce_listener() {
    let mut l = start_listener(64 * 1024).await;

    // Fewer bad lines than the error limit, so the listener reads it all.
    let mut garbage: Vec<u8> = (0..=255u8)
        .filter(|b| *b != b'\n')
        .cycle()
        .take(50_000)
        .collect();
    garbage.extend_from_slice(b"\r\n\0\0\xff\r\nMAIL FROM:<\r\nRCPT\r\nDATA\r\nQUIT\r\n");
    let out = raw_session(l.port, &garbage).await;
    let codes: Vec<&str> = out.lines().map(|l| l.get(..3).unwrap_or(l)).collect();
    assert_eq!(
        codes,
        ["220", "501", "502", "501", "501", "503", "221"],
        "{out}"
    );

    let id = Uuid::new_v4();
    let mut big = format!(
        "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<{}>\r\nDATA\r\n",
        verp_address(id, "h.test")
    )
    .into_bytes();
    let line = [b'z'; 998];
    for _ in 0..(2 * 1024 * 1024 / 1000) {
        big.extend_from_slice(&line);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b".\r\nQUIT\r\n");
    let out = raw_session(l.port, &big).await;
    assert!(
        out.contains("\r\n552 "),
        "an oversized DATA was not refused: {out}"
    );
    assert!(out.trim_end().ends_with("221 2.0.0 bye"), "{out}");

    // Still serving: a real DSN after all that is reported.
    let verdict = send_with_smtplib(
        l.port,
        "",
        &[&verp_address(id, "h.test")],
        postfix_dsn(id).as_bytes(),
    )
    .await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    let r = l.next_report().await;
    assert_eq!(
        (r.key, r.status),
        (ReportKey::Message(id), ReportStatus::Bounced)
    );
    l.stop().await;
}
