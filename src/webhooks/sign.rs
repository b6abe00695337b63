//! The webhook signature: `Herald-Signature: v1=<hex>` where hex is
//! HMAC-SHA256 keyed with the webhook's secret over
//! `"{Herald-Webhook-Timestamp}.{raw body}"`. Pure.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `Herald-Signature` header value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `Herald-Signature` header (any of its comma-separated `v1=`
/// values) in constant time.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(',').map(str::trim).any(|part| {
        let Some(hex_sig) = part.strip_prefix("v1=") else {
            return false;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2_shape() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        // Here the data is "{timestamp}.{body}", so split it accordingly.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature(b"secret", 1700000000, b"{\"a\":1}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64, "{s}");
        assert!(verify(b"secret", 1700000000, b"{\"a\":1}", &s));
        assert!(!verify(b"secret", 1700000001, b"{\"a\":1}", &s));
        assert!(!verify(b"other", 1700000000, b"{\"a\":1}", &s));
        assert!(!verify(b"secret", 1700000000, b"{\"a\":1}", "v1=zz, v0=00"));
    }
}
