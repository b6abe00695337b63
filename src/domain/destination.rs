//! Destinations: where a target can be reached. `tel` numbers must be E.164;
//! `sip` targets must be SIP URIs.

use serde::{Deserialize, Serialize};

use super::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Tel,
    Sip,
}

impl DestinationKind {
    /// What an address is: a SIP URI (`sip:`/`sips:`) or an E.164 number;
    /// why it is neither otherwise.
    pub fn of_address(to: &str) -> Result<DestinationKind, String> {
        match validate_sip_uri(to) {
            Ok(()) => Ok(DestinationKind::Sip),
            Err(sip) => validate_e164(to)
                .map(|()| DestinationKind::Tel)
                .map_err(|tel| format!("{tel}; nor a SIP URI: {sip}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Tel => "tel",
            DestinationKind::Sip => "sip",
        }
    }
}

/// One way to reach a target, with its own try budget and count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    pub target: String,
    /// Tries allowed on this destination; `None` means the target's `try_count_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_count_max: Option<u32>,
    /// Tries made so far on this destination.
    #[serde(default)]
    pub try_count: u32,
}

/// The most destinations one target may carry.
pub const MAX_DESTINATIONS: usize = 5;

impl Destination {
    /// Builds a validated destination; `target` is normalised (trimmed).
    pub fn new(kind: &str, target: &str, try_count_max: Option<i64>) -> Result<Self, FieldError> {
        let kind = match kind {
            "tel" => DestinationKind::Tel,
            "sip" => DestinationKind::Sip,
            other => {
                return Err(FieldError::new(
                    "type",
                    format!("must be \"tel\" or \"sip\", got {other:?}"),
                ))
            }
        };
        let target = target.trim();
        match kind {
            DestinationKind::Tel => {
                validate_e164(target).map_err(|r| FieldError::new("target", r))?
            }
            DestinationKind::Sip => {
                validate_sip_uri(target).map_err(|r| FieldError::new("target", r))?
            }
        }
        let try_count_max = match try_count_max {
            None => None,
            Some(n) if (1..=100).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(FieldError::new(
                    "try_count_max",
                    format!("must be between 1 and 100, got {n}"),
                ))
            }
        };
        Ok(Destination {
            kind,
            target: target.to_string(),
            try_count_max,
            try_count: 0,
        })
    }

    /// Tries allowed here, given the target's default budget.
    pub fn budget(&self, target_default: u32) -> u32 {
        self.try_count_max.unwrap_or(target_default)
    }
}

/// `+` followed by 8 to 15 digits, the first not 0.
pub fn validate_e164(s: &str) -> Result<(), String> {
    let Some(digits) = s.strip_prefix('+') else {
        return Err(format!("{s:?} is not E.164: it must start with '+'"));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not E.164: only digits may follow '+'"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!(
            "{s:?} is not E.164: it must have 8 to 15 digits, it has {}",
            digits.len()
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "{s:?} is not E.164: the country code cannot start with 0"
        ));
    }
    Ok(())
}

/// A `sip:` or `sips:` URI with a host, e.g. `sip:jane@pbx.example.com:5060`.
pub fn validate_sip_uri(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .ok_or_else(|| {
            format!("{s:?} is not a SIP URI: it must start with \"sip:\" or \"sips:\"")
        })?;
    if s.len() > 256 {
        return Err("SIP URI is longer than 256 characters".into());
    }
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"')
    {
        return Err(format!(
            "{s:?} is not a SIP URI: it contains a space or a forbidden character"
        ));
    }
    let hostpart = rest.split([';', '?']).next().unwrap_or("");
    let (user, hostport) = match hostpart.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, hostpart),
    };
    if user == Some("") {
        return Err(format!("{s:?} is not a SIP URI: empty user before '@'"));
    }
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} is not a SIP URI: unclosed IPv6 bracket"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{s:?} is not a SIP URI: bad IPv6 address"))?;
        check_port(s, after.strip_prefix(':'), after)?;
        return Ok(());
    } else {
        let (h, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        check_port(s, port, port.unwrap_or(""))?;
        h
    };
    if host.is_empty() {
        return Err(format!("{s:?} is not a SIP URI: it has no host"));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(valid_label) {
        return Err(format!(
            "{s:?} is not a SIP URI: {host:?} is not a valid host"
        ));
    }
    Ok(())
}

fn check_port(s: &str, port: Option<&str>, after: &str) -> Result<(), String> {
    match port {
        None if after.is_empty() => Ok(()),
        None => Err(format!(
            "{s:?} is not a SIP URI: unexpected text after the host"
        )),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!("{s:?} is not a SIP URI: bad port {p:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_is_a_sip_uri_or_an_e164_number() {
        let table = [
            ("+15557654321", Some(DestinationKind::Tel)),
            ("sip:bob@127.0.0.1:5090", Some(DestinationKind::Sip)),
            ("sips:alice@pbx.example.com", Some(DestinationKind::Sip)),
            ("5557654321", None),
            ("sip:", None),
            ("tel:+15557654321", None),
        ];
        for (to, want) in table {
            assert_eq!(DestinationKind::of_address(to).ok(), want, "{to}");
        }
    }

    use super::*;

    #[test]
    fn e164_accepts_plus_and_8_to_15_digits() {
        assert!(validate_e164("+15551234567").is_ok());
        assert!(validate_e164("+44207946000").is_ok());
        assert!(validate_e164("+12345678").is_ok());
        assert!(validate_e164("+123456789012345").is_ok());
    }

    #[test]
    fn e164_rejects_everything_else_with_a_reason() {
        for (bad, why) in [
            ("15551234567", "start with '+'"),
            ("+1555-123-4567", "only digits"),
            ("+1234567", "8 to 15 digits"),
            ("+1234567890123456", "8 to 15 digits"),
            ("+05551234567", "cannot start with 0"),
            ("", "start with '+'"),
        ] {
            let err = validate_e164(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sip_uris_need_a_scheme_and_a_host() {
        for ok in [
            "sip:jane@pbx.example.com",
            "sip:pbx.example.com",
            "sips:jane@pbx.example.com:5061",
            "sip:agent@127.0.0.1:5070;transport=udp",
            "sip:bob@[::1]:5060",
        ] {
            assert!(
                validate_sip_uri(ok).is_ok(),
                "{ok}: {:?}",
                validate_sip_uri(ok)
            );
        }
        for bad in [
            "jane@pbx.example.com",
            "sip:",
            "sip:@host",
            "sip:jane@",
            "sip:jane@host:99999",
            "sip:jane doe@host",
            "sip:jane@ho_st",
            "sip:bob@[::1",
        ] {
            assert!(validate_sip_uri(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn destination_names_the_field_that_is_wrong() {
        assert_eq!(
            Destination::new("fax", "+15551234567", None)
                .unwrap_err()
                .field,
            "type"
        );
        assert_eq!(
            Destination::new("tel", "555", None).unwrap_err().field,
            "target"
        );
        assert_eq!(
            Destination::new("tel", "+15551234567", Some(0))
                .unwrap_err()
                .field,
            "try_count_max"
        );
        let d = Destination::new("tel", " +15551234567 ", Some(2)).unwrap();
        assert_eq!(d.target, "+15551234567");
        assert_eq!(d.budget(3), 2);
    }
}
