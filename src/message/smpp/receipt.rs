//! Delivery receipts and message ids, as pure functions: the receipt text
//! (`id:… stat:DELIVRD err:000 …`), the receipt TLVs, and the one rule that
//! makes a submit_sm_resp id and a receipt id compare equal.
//!
//! The id rule (carriers differ; see [`ReceiptIds`]):
//! - every id is trimmed, ASCII lower-cased, and stripped of leading zeros
//!   (`"000003E8"` → `"3e8"`, `"0"`/`"000"` → `"0"`): [`normalise_id`]. The
//!   provider id herald stores is the submit_sm_resp id in this form.
//! - with [`ReceiptIds::DecimalOfHex`] (a carrier that gives hex ids in
//!   submit_sm_resp and the same number in decimal in the receipt text), an
//!   all-decimal id read from the receipt *text* is taken as a decimal
//!   number and written in lower-case hex (`"1000"` → `"3e8"`). A
//!   `receipted_message_id` TLV is taken as given: SMPP defines it as the id
//!   of the submit_sm_resp.
//!
//! There is deliberately no guessing ("all decimal, so also try its hex
//! form") in the default: two different messages of one carrier could then
//! match one receipt.
//!
//! Must not: do I/O, read a clock, or log.

use crate::message::transport::{PeerReply, ReportStatus};

/// How a carrier writes the message id in receipts, relative to the id it
/// gave in submit_sm_resp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReceiptIds {
    /// The same id, up to case and leading zeros (most SMSCs).
    #[default]
    AsGiven,
    /// submit_sm_resp gives the id in hex, the receipt text in decimal.
    DecimalOfHex,
}

/// An id in the form herald stores and matches: trimmed, lower-case, no
/// leading zeros.
pub fn normalise_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() && !lower.is_empty() {
        "0".to_string()
    } else {
        stripped.to_string()
    }
}

/// The normalised id of a receipt whose id came from the receipt text.
pub fn receipt_text_id(id: &str, form: ReceiptIds) -> String {
    let id = id.trim();
    match form {
        ReceiptIds::AsGiven => normalise_id(id),
        ReceiptIds::DecimalOfHex => {
            let all_decimal = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
            match id.parse::<u128>() {
                Ok(n) if all_decimal => format!("{n:x}"),
                _ => normalise_id(id),
            }
        }
    }
}

/// The fields of a receipt text that herald uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: String,
    /// `DELIVRD`, `UNDELIV`, `EXPIRED`… as written (upper-cased).
    pub stat: Option<String>,
    /// The `err:` code as written.
    pub err: Option<String>,
}

/// Reads the SMPP 3.4 appendix B receipt format:
/// `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done
/// date:YYMMDDhhmm stat:DDDDDDD err:E text:…`. Keys are matched without
/// regard to case; fields may be missing or reordered; `text:` and
/// everything after it is ignored. `None` when there is no `id:`.
pub fn parse_receipt_text(text: &str) -> Option<ReceiptText> {
    // Cut at "text:" first: the quoted message may contain "id:" or "stat:".
    let lower = text.to_ascii_lowercase();
    let head_len = lower.find("text:").unwrap_or(text.len());
    let head = &text[..head_len];
    let mut id = None;
    let mut stat = None;
    let mut err = None;
    for token in head.split_ascii_whitespace() {
        let Some((key, value)) = token.split_once(':') else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "id" if !value.is_empty() => id = Some(value.to_string()),
            "stat" if !value.is_empty() => stat = Some(value.to_ascii_uppercase()),
            "err" if !value.is_empty() => err = Some(value.to_string()),
            _ => {}
        }
    }
    Some(ReceiptText {
        id: id?,
        stat,
        err,
    })
}

/// What a receipt `stat:` value means: `None` for states that are not final
/// (ENROUTE, ACCEPTD, UNKNOWN…), which herald does not report.
pub fn status_of_stat(stat: &str) -> Option<ReportStatus> {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Some(ReportStatus::Delivered),
        "UNDELIV" | "UNDELIVERABLE" | "EXPIRED" | "REJECTD" | "REJECTED" | "DELETED" => {
            Some(ReportStatus::Failed)
        }
        _ => None,
    }
}

/// What a `message_state` TLV value means (SMPP 3.4 §5.2.28).
pub fn status_of_message_state(state: u8) -> Option<ReportStatus> {
    match state {
        2 => Some(ReportStatus::Delivered),
        3 | 4 | 5 | 8 => Some(ReportStatus::Failed),
        _ => None,
    }
}

/// The name of a `message_state` value, for the report's text.
fn message_state_name(state: u8) -> &'static str {
    match state {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        7 => "UNKNOWN",
        8 => "REJECTD",
        9 => "SKIPPED",
        _ => "OTHER",
    }
}

/// One receipt, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Normalised: compares equal to the provider id of the submit.
    pub id: String,
    pub status: ReportStatus,
    /// `code`: the receipt's `err:` value; `text`: its `stat:` value.
    pub reply: PeerReply,
}

/// Decides a receipt from its parts: the `receipted_message_id` and
/// `message_state` TLVs win when present, the text fills in what they lack.
/// `None` when there is no id or the state is not final.
pub fn decide_receipt(
    tlv_id: Option<&str>,
    tlv_state: Option<u8>,
    text: &str,
    form: ReceiptIds,
) -> Option<Receipt> {
    let parsed = parse_receipt_text(text);
    let id = match (tlv_id, &parsed) {
        (Some(id), _) if !id.trim().is_empty() => normalise_id(id),
        (_, Some(p)) => receipt_text_id(&p.id, form),
        _ => return None,
    };
    let stat_text = parsed.as_ref().and_then(|p| p.stat.clone());
    let (status, stat) = match tlv_state {
        Some(state) => (
            status_of_message_state(state)?,
            stat_text.unwrap_or_else(|| message_state_name(state).to_string()),
        ),
        None => {
            let stat = stat_text?;
            (status_of_stat(&stat)?, stat)
        }
    };
    Some(Receipt {
        id,
        status,
        reply: PeerReply {
            code: parsed.and_then(|p| p.err),
            text: Some(stat),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lower_case_without_leading_zeros() {
        let cases = [
            ("000003E8", "3e8"),
            ("3e8", "3e8"),
            ("  AbC123 ", "abc123"),
            ("0", "0"),
            ("0000", "0"),
            ("", ""),
            ("1000", "1000"),
            ("b3f1-77", "b3f1-77"),
            ("007-ab", "7-ab"),
        ];
        for (given, want) in cases {
            assert_eq!(normalise_id(given), want, "{given:?}");
        }
    }

    #[test]
    fn receipt_text_ids_follow_the_carrier_form() {
        let cases = [
            ("1000", ReceiptIds::AsGiven, "1000"),
            ("1000", ReceiptIds::DecimalOfHex, "3e8"),
            ("0001000", ReceiptIds::DecimalOfHex, "3e8"),
            ("0", ReceiptIds::DecimalOfHex, "0"),
            // Not decimal: already hex (or opaque), kept.
            ("3E8", ReceiptIds::DecimalOfHex, "3e8"),
            ("ab-12", ReceiptIds::DecimalOfHex, "ab-12"),
            // Too large for u128: kept as given.
            (
                "999999999999999999999999999999999999999999",
                ReceiptIds::DecimalOfHex,
                "999999999999999999999999999999999999999999",
            ),
            ("4294967295", ReceiptIds::DecimalOfHex, "ffffffff"),
        ];
        for (given, form, want) in cases {
            assert_eq!(receipt_text_id(given, form), want, "{given:?} {form:?}");
        }
        // The two sides of a hex/decimal carrier meet.
        assert_eq!(
            normalise_id("000003E8"),
            receipt_text_id("1000", ReceiptIds::DecimalOfHex)
        );
    }

    #[test]
    fn receipt_texts_are_parsed() {
        #[allow(clippy::type_complexity)]
        let cases: [(&str, Option<(&str, Option<&str>, Option<&str>)>); 8] = [
            (
                "id:1000 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:Hello",
                Some(("1000", Some("DELIVRD"), Some("000"))),
            ),
            (
                "id:0A1B2C sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:001 text:",
                Some(("0A1B2C", Some("UNDELIV"), Some("001"))),
            ),
            // Keys in another case, fields reordered.
            (
                "Stat:delivrd ID:77 Err:000",
                Some(("77", Some("DELIVRD"), Some("000"))),
            ),
            // The quoted text cannot override the fields.
            (
                "id:5 stat:EXPIRED err:000 text:id:999 stat:DELIVRD",
                Some(("5", Some("EXPIRED"), Some("000"))),
            ),
            // No stat.
            ("id:9 sub:001", Some(("9", None, None))),
            // No id.
            ("sub:001 dlvrd:001 stat:DELIVRD", None),
            ("", None),
            ("id: stat:DELIVRD", None),
        ];
        for (text, want) in cases {
            let got = parse_receipt_text(text);
            let want = want.map(|(id, stat, err)| ReceiptText {
                id: id.to_string(),
                stat: stat.map(str::to_string),
                err: err.map(str::to_string),
            });
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn stats_and_states_map_to_report_statuses() {
        use ReportStatus::*;
        let stats = [
            ("DELIVRD", Some(Delivered)),
            ("delivrd", Some(Delivered)),
            ("UNDELIV", Some(Failed)),
            ("EXPIRED", Some(Failed)),
            ("REJECTD", Some(Failed)),
            ("DELETED", Some(Failed)),
            ("ENROUTE", None),
            ("ACCEPTD", None),
            ("UNKNOWN", None),
            ("", None),
        ];
        for (stat, want) in stats {
            assert_eq!(status_of_stat(stat), want, "{stat}");
        }
        let states = [
            (0, None),
            (1, None),
            (2, Some(Delivered)),
            (3, Some(Failed)),
            (4, Some(Failed)),
            (5, Some(Failed)),
            (6, None),
            (7, None),
            (8, Some(Failed)),
            (9, None),
        ];
        for (state, want) in states {
            assert_eq!(status_of_message_state(state), want, "{state}");
        }
    }

    #[test]
    fn tlvs_win_over_the_text_and_the_text_fills_in() {
        let text = "id:1000 sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:021 text:";
        let cases = [
            // TLV id and state.
            (
                Some("000003E8"),
                Some(2u8),
                text,
                ReceiptIds::AsGiven,
                Some(("3e8", ReportStatus::Delivered, Some("021"), "UNDELIV")),
            ),
            // Text only, carrier in hex/decimal form.
            (
                None,
                None,
                text,
                ReceiptIds::DecimalOfHex,
                Some(("3e8", ReportStatus::Failed, Some("021"), "UNDELIV")),
            ),
            // Text only, ids as given.
            (
                None,
                None,
                text,
                ReceiptIds::AsGiven,
                Some(("1000", ReportStatus::Failed, Some("021"), "UNDELIV")),
            ),
            // TLV state without text: the state's name is the text.
            (
                Some("42"),
                Some(5),
                "",
                ReceiptIds::AsGiven,
                Some(("42", ReportStatus::Failed, None, "UNDELIV")),
            ),
            // Not final.
            (Some("42"), Some(1), "", ReceiptIds::AsGiven, None),
            (None, None, "id:1 stat:ENROUTE", ReceiptIds::AsGiven, None),
            // No id anywhere.
            (None, Some(2), "stat:DELIVRD", ReceiptIds::AsGiven, None),
            // An empty TLV id falls back to the text's.
            (
                Some(""),
                None,
                "id:0077 stat:DELIVRD err:000",
                ReceiptIds::AsGiven,
                Some(("77", ReportStatus::Delivered, Some("000"), "DELIVRD")),
            ),
        ];
        for (tlv_id, tlv_state, text, form, want) in cases {
            let got = decide_receipt(tlv_id, tlv_state, text, form);
            let want = want.map(|(id, status, code, stat)| Receipt {
                id: id.to_string(),
                status,
                reply: PeerReply {
                    code: code.map(str::to_string),
                    text: Some(stat.to_string()),
                },
            });
            assert_eq!(got, want, "{tlv_id:?} {tlv_state:?} {text:?}");
        }
    }
}
