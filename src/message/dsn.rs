//! Delivery status notifications (RFC 3464) and VERP addresses: the DSN
//! parser ([`parse_dsn`], pure), the rule from a DSN action to a report
//! ([`report_status`], pure) and the VERP Return-Path
//! `bounces+<herald id>@<domain>` that names the message a DSN is about.
//! `failed` becomes [`ReportStatus::Bounced`], `delivered` becomes
//! [`ReportStatus::Delivered`]; `delayed`, `relayed` and `expanded` are not
//! reported. The listener that receives DSNs is [`super::bounce`].

use uuid::Uuid;

use super::transport::ReportStatus;

/// The local part prefix of a VERP Return-Path.
pub const VERP_PREFIX: &str = "bounces+";

/// The VERP Return-Path of message `id` at `domain`.
pub fn verp_address(id: Uuid, domain: &str) -> String {
    format!("{VERP_PREFIX}{id}@{domain}")
}

/// herald's message id in a VERP address (`bounces+<uuid>@<any domain>`).
pub fn verp_message_id(address: &str) -> Option<Uuid> {
    let address = address.trim();
    // A source route (`@a,@b:user@domain`) is ignored, as RFC 5321 says.
    let address = match address.strip_prefix('@') {
        Some(_) => address.split_once(':')?.1,
        None => address,
    };
    let (local, domain) = address.rsplit_once('@')?;
    if domain.is_empty() || local.len() <= VERP_PREFIX.len() {
        return None;
    }
    let (prefix, id) = local.split_at_checked(VERP_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(VERP_PREFIX) {
        return None;
    }
    Uuid::parse_str(id).ok()
}

/// The `Action:` of one recipient in a DSN (RFC 3464 §2.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// Anything else, lower-cased.
    Other(String),
}

impl DsnAction {
    fn parse(value: &str) -> DsnAction {
        let word = value
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" => DsnAction::Failed,
            "delayed" => DsnAction::Delayed,
            "delivered" => DsnAction::Delivered,
            "relayed" => DsnAction::Relayed,
            "expanded" => DsnAction::Expanded,
            _ => DsnAction::Other(word),
        }
    }
}

/// One per-recipient block of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub action: DsnAction,
    /// `Status:` (`5.1.1`).
    pub status: Option<String>,
    /// `Diagnostic-Code:` as given (`smtp; 550 5.1.1 ... unknown`).
    pub diagnostic: Option<String>,
    /// `Final-Recipient:` without its type (`ann@example.com`).
    pub recipient: Option<String>,
}

/// Which report a recipient's action makes, if any.
pub fn report_status(action: &DsnAction) -> Option<ReportStatus> {
    match action {
        DsnAction::Failed => Some(ReportStatus::Bounced),
        DsnAction::Delivered => Some(ReportStatus::Delivered),
        _ => None,
    }
}

/// The per-recipient blocks of a `multipart/report;
/// report-type=delivery-status` message (its `message/delivery-status` or
/// `message/global-delivery-status` part). Anything else gives none.
pub fn parse_dsn(raw: &[u8]) -> Vec<DsnRecipient> {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    use mail_parser::MimeHeaders;
    let mut out = Vec::new();
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let is_status = ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            });
        if is_status {
            out.extend(parse_status_fields(&String::from_utf8_lossy(
                part.contents(),
            )));
        }
    }
    out
}

/// The fields of a delivery-status body: groups of header-like lines
/// separated by blank lines; the first (per-message) group has no `Action`.
fn parse_status_fields(body: &str) -> Vec<DsnRecipient> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(action) = get("action") {
            out.push(DsnRecipient {
                action: DsnAction::parse(&action),
                status: get("status").and_then(|s| s.split_whitespace().next().map(str::to_string)),
                diagnostic: get("diagnostic-code"),
                recipient: get("final-recipient")
                    .or_else(|| get("original-recipient"))
                    .map(|r| match r.split_once(';') {
                        Some((_, addr)) => addr.trim().to_string(),
                        None => r,
                    }),
            });
        }
        fields.clear();
    };
    for line in body.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shaped like Postfix's bounce: a notification, the delivery-status
    /// part, the returned headers.
    pub(crate) const POSTFIX_DSN: &str = "Return-Path: <>\r\n\
Received: by mx.herald.test (Postfix) id 3F2A1C0041; Tue,  4 Mar 2025 10:00:01 +0000 (UTC)\r\n\
Date: Tue,  4 Mar 2025 10:00:01 +0000 (UTC)\r\n\
From: MAILER-DAEMON@mx.herald.test (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@herald.test\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"3F2A1C0041.1741082401/mx.herald.test\"\r\n\
Message-Id: <20250304100001.3F2A1C0041@mx.herald.test>\r\n\
\r\n\
This is a MIME-encapsulated message.\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at host mx.herald.test.\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
<nobody@example.com>: host mx.example.com[192.0.2.10] said: 550 5.1.1\r\n\
\x20   <nobody@example.com>: Recipient address rejected: User unknown (in reply to\r\n\
\x20   RCPT TO command)\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.herald.test\r\n\
X-Postfix-Queue-ID: 3F2A1C0041\r\n\
X-Postfix-Sender: rfc822; bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@herald.test\r\n\
Arrival-Date: Tue,  4 Mar 2025 10:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; nobody@example.com\r\n\
Original-Recipient: rfc822;nobody@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.com\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address\r\n\
\x20   rejected: User unknown\r\n\
\r\n\
Final-Recipient: rfc822; slow@example.com\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
Diagnostic-Code: X-Postfix; connect to mx.example.com: Connection timed out\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Herald News <news@herald.test>\r\n\
To: nobody@example.com\r\n\
Subject: Hello\r\n\
Message-ID: <abc@herald.test>\r\n\
\r\n\
--3F2A1C0041.1741082401/mx.herald.test--\r\n";

    #[test]
    fn a_postfix_dsn_gives_each_recipient_action_status_and_diagnostic() {
        let got = parse_dsn(POSTFIX_DSN.as_bytes());
        assert_eq!(
            got,
            vec![
                DsnRecipient {
                    action: DsnAction::Failed,
                    status: Some("5.1.1".into()),
                    diagnostic: Some(
                        "smtp; 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
                            .into()
                    ),
                    recipient: Some("nobody@example.com".into()),
                },
                DsnRecipient {
                    action: DsnAction::Delayed,
                    status: Some("4.4.1".into()),
                    diagnostic: Some(
                        "X-Postfix; connect to mx.example.com: Connection timed out".into()
                    ),
                    recipient: Some("slow@example.com".into()),
                },
            ]
        );
    }

    fn dsn(action: &str, status: &str) -> String {
        format!(
            "From: <>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: text/plain\n\nreport\n--b\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx\n\nfinal-recipient: rfc822;a@b.test\nACTION: {action}\nstatus: {status} (comment)\n\n--b--\n"
        )
    }

    #[test]
    fn actions_map_to_reports_or_none() {
        let table = [
            ("failed", Some(ReportStatus::Bounced)),
            ("delivered", Some(ReportStatus::Delivered)),
            ("Delivered", Some(ReportStatus::Delivered)),
            ("delayed", None),
            ("relayed", None),
            ("expanded", None),
            ("exploded", None),
        ];
        for (action, want) in table {
            let got = parse_dsn(dsn(action, "2.0.0").as_bytes());
            assert_eq!(got.len(), 1, "{action}");
            assert_eq!(report_status(&got[0].action), want, "{action}");
            assert_eq!(got[0].status.as_deref(), Some("2.0.0"));
            assert_eq!(got[0].recipient.as_deref(), Some("a@b.test"));
        }
    }

    #[test]
    fn what_is_not_a_dsn_gives_nothing() {
        for raw in [
            &b""[..],
            b"garbage",
            b"\xff\xfe\x00\r\n\r\n\x00",
            b"Subject: hi\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n",
        ] {
            assert!(parse_dsn(raw).is_empty(), "{raw:?}");
        }
    }

    #[test]
    fn verp_addresses_name_the_message() {
        let id = Uuid::parse_str("7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44").expect("uuid");
        assert_eq!(verp_message_id(&verp_address(id, "herald.test")), Some(id));
        let table = [
            (
                "bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@x.test",
                Some(id),
            ),
            ("BOUNCES+7d1b2f9e3c4a4e559a3b0c6f8e2d1a44@x.test", Some(id)),
            (
                "@relay.test:bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@x.test",
                Some(id),
            ),
            ("bounces+7d1b2f9e-3c4a-4e55-9a3b-0c6f8e2d1a44@", None),
            ("bounces+nope@x.test", None),
            ("bounces@x.test", None),
            ("postmaster@x.test", None),
            ("", None),
            ("bounces+", None),
            ("é@x", None),
        ];
        for (addr, want) in table {
            assert_eq!(verp_message_id(addr), want, "{addr}");
        }
    }
}
