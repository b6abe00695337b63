//! The submit_sm PDUs of one SMS, and what a submit_sm_resp status means:
//! pure functions.
//!
//! - Addresses: `+` and digits → TON 1 / NPI 1 (international, `+`
//!   stripped); digits alone (a short code) → TON 0 / NPI 1; anything else
//!   of up to 11 characters → TON 5 / NPI 0 (alphanumeric sender id). The
//!   destination must be E.164.
//! - Text: GSM-7 (data_coding 0, the SMSC default alphabet, one septet per
//!   octet) when every character is in the GSM 03.38 default alphabet or
//!   its extension table (which cost two), else UTF-16BE (data_coding 8,
//!   UCS-2 with surrogate pairs for characters outside the BMP, such as
//!   emoji). One submit_sm holds 160 septets or 140 octets; longer texts are
//!   split into parts of 153 septets or 134 octets, each carrying a 6-octet
//!   UDH (IEI 0x00, 8-bit reference, total, sequence) with esm_class 0x40.
//!   A split never cuts an escape pair or a surrogate pair. The splitter is
//!   rusmpp's multipart builder; the per-encoding sizes are ours.
//!
//! Must not: do I/O or log. (`message::sms_text` will own segment counts for
//! the rest of herald; this file only has to produce the PDUs.)

use rusmpp::extra::concatenation::{Concatenation, Concatenator, SubmitSmMultipartExt};
use rusmpp::extra::encoding::gsm7bit::{Gsm7BitConcatenateError, Gsm7BitUnpacked};
use rusmpp::extra::fallback::Fallback;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::COctetString;
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use rusmpp::CommandStatus;

/// Septets in one GSM-7 submit without UDH, and per part with one.
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
/// Octets in one UCS-2 submit without UDH, and per part with one.
const UCS2_SINGLE: usize = 140;
const UCS2_PART: usize = 134;
/// Longest alphanumeric sender id (GSM 03.40: 11 characters).
const MAX_ALPHANUMERIC: usize = 11;
/// Longest address digits SMPP carries (source_addr/destination_addr are
/// C-octet strings of 21 octets).
const MAX_DIGITS: usize = 20;

/// A source or destination address with its TON/NPI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ton: Ton,
    pub npi: Npi,
    pub addr: String,
}

/// Why an SMS cannot be put in submit_sm PDUs (a permanent failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("source address {0:?} is neither E.164 nor an alphanumeric sender id of up to 11 characters")]
    Source(String),
    #[error("destination is not an E.164 number")]
    Destination,
    #[error("the text does not fit in 255 parts")]
    TooLong,
    #[error("the text cannot be encoded: {0}")]
    Encoding(String),
}

/// The address of a sender: E.164, a short code, or an alphanumeric id.
pub fn source_address(from: &str) -> Result<Address, SubmitError> {
    let from = from.trim();
    if let Some(digits) = from.strip_prefix('+') {
        if is_digits(digits) {
            return Ok(Address {
                ton: Ton::International,
                npi: Npi::Isdn,
                addr: digits.to_string(),
            });
        }
        return Err(SubmitError::Source(from.to_string()));
    }
    if is_digits(from) {
        return Ok(Address {
            ton: Ton::Unknown,
            npi: Npi::Isdn,
            addr: from.to_string(),
        });
    }
    let printable = from.bytes().all(|b| (0x20..0x7f).contains(&b));
    if from.is_empty() || from.len() > MAX_ALPHANUMERIC || !printable {
        return Err(SubmitError::Source(from.to_string()));
    }
    Ok(Address {
        ton: Ton::Alphanumeric,
        npi: Npi::Unknown,
        addr: from.to_string(),
    })
}

/// The address of a recipient: E.164 only.
pub fn destination_address(to: &str) -> Result<Address, SubmitError> {
    match to.trim().strip_prefix('+') {
        Some(digits) if is_digits(digits) => Ok(Address {
            ton: Ton::International,
            npi: Npi::Isdn,
            addr: digits.to_string(),
        }),
        _ => Err(SubmitError::Destination),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether every character of `text` is in the GSM-7 default alphabet or
/// its extension table.
pub fn is_gsm7(text: &str) -> bool {
    Gsm7BitUnpacked::new().encode_to_vec(text).is_ok()
}

/// GSM-7 unpacked with SMS sizes: 160 septets alone, 153 per part.
#[derive(Debug)]
struct Gsm7Sms;

impl Concatenator for Gsm7Sms {
    type Error = Gsm7BitConcatenateError;

    fn concatenate(
        &self,
        message: &str,
        _max_message_size: usize,
        part_header_size: usize,
    ) -> Result<(Concatenation, DataCoding), Self::Error> {
        let gsm = Gsm7BitUnpacked::new();
        match gsm.concatenate(message, GSM7_SINGLE, part_header_size)? {
            single @ (Concatenation::Single(_), _) => Ok(single),
            (Concatenation::Concatenated(_), _) => {
                gsm.concatenate(message, GSM7_PART + part_header_size, part_header_size)
            }
        }
    }
}

/// UTF-16BE with SMS sizes: 140 octets alone, 134 per part, never cutting a
/// surrogate pair.
#[derive(Debug)]
struct Utf16Sms;

#[derive(Debug)]
struct Utf16TooLong;

impl Concatenator for Utf16Sms {
    type Error = Utf16TooLong;

    fn concatenate(
        &self,
        message: &str,
        _max_message_size: usize,
        _part_header_size: usize,
    ) -> Result<(Concatenation, DataCoding), Self::Error> {
        let units: Vec<u16> = message.encode_utf16().collect();
        let to_bytes =
            |units: &[u16]| -> Vec<u8> { units.iter().flat_map(|u| u.to_be_bytes()).collect() };
        if units.len() * 2 <= UCS2_SINGLE {
            return Ok((Concatenation::Single(to_bytes(&units)), DataCoding::Ucs2));
        }
        let per_part = UCS2_PART / 2;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < units.len() {
            let mut end = (start + per_part).min(units.len());
            // Keep a high surrogate with its low one.
            if end < units.len() && (0xD800..0xDC00).contains(&units[end - 1]) {
                end -= 1;
            }
            parts.push(to_bytes(&units[start..end]));
            start = end;
        }
        if parts.len() > usize::from(u8::MAX) {
            return Err(Utf16TooLong);
        }
        Ok((Concatenation::Concatenated(parts), DataCoding::Ucs2))
    }
}

/// The submit_sm PDUs for one SMS: one, or the parts of a concatenated
/// message sharing the 8-bit `reference`.
pub fn build_submits(
    source: &Address,
    destination: &Address,
    text: &str,
    reference: u8,
) -> Result<Vec<SubmitSm>, SubmitError> {
    let source_addr = COctetString::<1, 21>::from_string(source.addr.clone())
        .map_err(|_| SubmitError::Source(source.addr.clone()))?;
    let destination_addr = COctetString::<1, 21>::from_string(destination.addr.clone())
        .map_err(|_| SubmitError::Destination)?;
    let template = SubmitSm::builder()
        .source_addr_ton(source.ton)
        .source_addr_npi(source.npi)
        .source_addr(source_addr)
        .dest_addr_ton(destination.ton)
        .dest_addr_npi(destination.npi)
        .destination_addr(destination_addr)
        // Not `EsmClass::default()`: rusmpp's default sets bit 3 (0x08).
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(1u8))
        .build();
    template
        .multipart(text)
        .reference_u8(reference)
        .encoder(Fallback::new(Gsm7Sms, Utf16Sms))
        .build()
        .map_err(|e| {
            let e = format!("{e:?}");
            if e.contains("PartsCountExceeded") || e.contains("Utf16TooLong") {
                SubmitError::TooLong
            } else {
                SubmitError::Encoding(e)
            }
        })
}

/// What a submit_sm_resp status means for the send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Accepted,
    /// Try later (throttled, queue full, system error at the SMSC).
    Retry,
    /// Refused for good.
    Failed,
}

/// ESME_ROK accepts; ESME_RTHROTTLED (0x58), ESME_RMSGQFUL (0x14) and
/// ESME_RSYSERR (0x08) ask to try later; everything else refuses.
pub fn classify_status(status: u32) -> StatusClass {
    match status {
        0x0000_0000 => StatusClass::Accepted,
        0x0000_0058 | 0x0000_0014 | 0x0000_0008 => StatusClass::Retry,
        _ => StatusClass::Failed,
    }
}

/// `0x00000058`: the form herald stores as the reply code.
pub fn status_hex(status: u32) -> String {
    format!("0x{status:08X}")
}

/// `ESME_RTHROTTLED`: the SMPP name of a command_status.
pub fn status_name(status: u32) -> String {
    match CommandStatus::from(status) {
        CommandStatus::Other(_) => "unknown command_status".to_string(),
        known => {
            // rusmpp's variant names are `EsmeRthrottled`, `EsmeRinvdstadr`…
            let name = format!("{known:?}").to_ascii_uppercase();
            match name.strip_prefix("ESME") {
                Some(rest) => format!("ESME_{rest}"),
                None => name,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intl(addr: &str) -> Address {
        Address {
            ton: Ton::International,
            npi: Npi::Isdn,
            addr: addr.to_string(),
        }
    }

    #[test]
    fn sources_get_their_ton_and_npi() {
        let cases = [
            (
                "+15551234567",
                Some((Ton::International, Npi::Isdn, "15551234567")),
            ),
            ("Herald", Some((Ton::Alphanumeric, Npi::Unknown, "Herald"))),
            (
                "My Shop 24",
                Some((Ton::Alphanumeric, Npi::Unknown, "My Shop 24")),
            ),
            ("12345", Some((Ton::Unknown, Npi::Isdn, "12345"))),
            ("TwelveChars!", None),
            ("+1555abc", None),
            ("+", None),
            ("", None),
            ("Héllo", None),
        ];
        for (from, want) in cases {
            let got = source_address(from).ok();
            let want = want.map(|(ton, npi, addr)| Address {
                ton,
                npi,
                addr: addr.to_string(),
            });
            assert_eq!(got, want, "{from:?}");
        }
    }

    #[test]
    fn destinations_must_be_e164() {
        assert_eq!(
            destination_address("+447700900123"),
            Ok(intl("447700900123"))
        );
        for bad in [
            "447700900123",
            "+44 7700",
            "Herald",
            "+",
            "+123456789012345678901",
        ] {
            assert_eq!(
                destination_address(bad),
                Err(SubmitError::Destination),
                "{bad:?}"
            );
        }
    }

    fn parts(text: &str) -> Vec<SubmitSm> {
        build_submits(&intl("15550001111"), &intl("15552223333"), text, 7).expect("builds")
    }

    fn esm(sm: &SubmitSm) -> u8 {
        u8::from(sm.esm_class)
    }

    #[test]
    fn gsm7_texts_go_as_data_coding_0_one_octet_per_character() {
        let sms = parts("Hello @ home {x}");
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0].data_coding, DataCoding::McSpecific);
        assert_eq!(esm(&sms[0]), 0);
        assert_eq!(u8::from(sms[0].registered_delivery), 1);
        // '@' is 0x00, '{' is ESC 0x28, '}' is ESC 0x29.
        let mut want = b"Hello ".to_vec();
        want.extend([0x00]);
        want.extend(b" home ");
        want.extend([0x1B, 0x28, b'x', 0x1B, 0x29]);
        assert_eq!(sms[0].short_message().as_ref(), want.as_slice());
    }

    #[test]
    fn other_texts_go_as_utf16be_with_data_coding_8() {
        let sms = parts("Привет 😀");
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0].data_coding, DataCoding::Ucs2);
        let want: Vec<u8> = "Привет 😀"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(sms[0].short_message().as_ref(), want.as_slice());
    }

    /// (parts, data_coding, UDH) for each length.
    #[test]
    fn long_texts_split_at_sms_sizes_with_a_udh() {
        let cases = [
            ("a".repeat(160), 1, DataCoding::McSpecific),
            ("a".repeat(161), 2, DataCoding::McSpecific),
            ("a".repeat(306), 2, DataCoding::McSpecific),
            ("a".repeat(307), 3, DataCoding::McSpecific),
            ("ж".repeat(70), 1, DataCoding::Ucs2),
            ("ж".repeat(71), 2, DataCoding::Ucs2),
            ("ж".repeat(134), 2, DataCoding::Ucs2),
            ("ж".repeat(135), 3, DataCoding::Ucs2),
        ];
        for (text, want_parts, coding) in cases {
            let sms = parts(&text);
            assert_eq!(sms.len(), want_parts, "{} chars", text.chars().count());
            for (i, sm) in sms.iter().enumerate() {
                assert_eq!(sm.data_coding, coding);
                if want_parts == 1 {
                    assert_eq!(esm(sm), 0);
                    continue;
                }
                assert_eq!(esm(sm), 0x40);
                let bytes = sm.short_message().as_ref();
                assert_eq!(&bytes[..6], &[5, 0, 3, 7, want_parts as u8, i as u8 + 1]);
                let limit = if coding == DataCoding::Ucs2 {
                    6 + 134
                } else {
                    6 + 153
                };
                assert!(bytes.len() <= limit, "part {i} is {} octets", bytes.len());
            }
        }
    }

    #[test]
    fn splits_never_cut_an_escape_or_a_surrogate_pair() {
        // 152 'a' then '€' (ESC 0x65): the pair would straddle 153.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let sms = parts(&text);
        let first = sms[0].short_message().as_ref();
        assert_eq!(first.len(), 6 + 152);
        assert_eq!(sms[1].short_message().as_ref()[6..8], [0x1B, 0x65]);
        // 66 'ж' then an emoji (2 UTF-16 units) straddling unit 67.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let sms = parts(&text);
        let mut joined = Vec::new();
        for sm in &sms {
            let body = &sm.short_message().as_ref()[6..];
            assert_eq!(body.len() % 2, 0);
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            assert!(String::from_utf16(&units).is_ok(), "a part has half a pair");
            joined.extend(units);
        }
        assert_eq!(String::from_utf16(&joined).expect("utf16"), text);
    }

    #[test]
    fn gsm7_is_detected_per_character() {
        let cases = [
            ("Hello, world!", true),
            ("Price: 10€ [ok] ^_^ ~ | \\", true),
            ("àèéìòù ÄÖÜäöü ñÑ ß", true),
            ("Привет", false),
            ("😀", false),
            ("â", false),
        ];
        for (text, want) in cases {
            assert_eq!(is_gsm7(text), want, "{text:?}");
        }
    }

    #[test]
    fn submit_statuses_are_classified_and_named() {
        let cases = [
            (0x00, StatusClass::Accepted, "0x00000000", "ESME_ROK"),
            (0x58, StatusClass::Retry, "0x00000058", "ESME_RTHROTTLED"),
            (0x14, StatusClass::Retry, "0x00000014", "ESME_RMSGQFUL"),
            (0x08, StatusClass::Retry, "0x00000008", "ESME_RSYSERR"),
            (0x0B, StatusClass::Failed, "0x0000000B", "ESME_RINVDSTADR"),
            (0x0A, StatusClass::Failed, "0x0000000A", "ESME_RINVSRCADR"),
            (0x45, StatusClass::Failed, "0x00000045", "ESME_RSUBMITFAIL"),
            (
                0x0400,
                StatusClass::Failed,
                "0x00000400",
                "unknown command_status",
            ),
        ];
        for (status, class, hex, name) in cases {
            assert_eq!(classify_status(status), class, "{status:#x}");
            assert_eq!(status_hex(status), hex);
            assert_eq!(status_name(status), name, "{status:#x}");
        }
    }
}
