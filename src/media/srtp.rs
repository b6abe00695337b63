//! SRTP (RFC 3711) for a call's RTP, keyed by SDES (RFC 4568): the crypto
//! suite AES_CM_128_HMAC_SHA1_80, one master key and salt each way, carried
//! base64 in the SDP's `a=crypto` line. The cipher is webrtc-srtp's.
//!
//! Owns: making herald's master key, reading and writing the `inline:` key,
//! and protecting/unprotecting packets. Must not: log a key (the keys'
//! `Debug` says only that there are keys) or panic on a packet.

use base64::Engine as _;
use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The one crypto suite herald offers and accepts.
pub const SDES_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
const KEY_LEN: usize = 16;
const SALT_LEN: usize = 14;
/// Master key and salt, as they travel in `inline:`.
pub const MASTER_LEN: usize = KEY_LEN + SALT_LEN;

/// A master key and salt.
pub type MasterKey = [u8; MASTER_LEN];

/// The two directions' master keys of an SRTP call.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// herald's own, from its SDP: what herald sends is protected with it.
    pub local: MasterKey,
    /// The peer's, from its SDP: what herald receives.
    pub remote: MasterKey,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpKeys(***)")
    }
}

/// A fresh random master key and salt.
pub fn new_master_key() -> MasterKey {
    let mut k = [0u8; MASTER_LEN];
    rand::Rng::fill(&mut rand::thread_rng(), &mut k[..]);
    k
}

/// The `inline:` value of a master key (base64, no lifetime or MKI).
pub fn to_inline(key: &MasterKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Reads `KEY[|lifetime][|MKI:len]`, the key-params after `inline:`; `None`
/// unless it is 30 bytes of base64 (an MKI is not supported: `None`).
pub fn from_inline(params: &str) -> Option<MasterKey> {
    let mut parts = params.split('|');
    let key = parts.next()?;
    // A lifetime is allowed; an MKI ("n:len") is not.
    if parts.any(|p| p.contains(':')) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key.trim()))
        .ok()?;
    bytes.try_into().ok()
}

/// One call's SRTP state: a context per direction.
pub struct Srtp {
    outbound: Context,
    inbound: Context,
}

impl Srtp {
    pub fn new(keys: &SrtpKeys) -> Result<Srtp, String> {
        let ctx = |k: &MasterKey| {
            Context::new(
                &k[..KEY_LEN],
                &k[KEY_LEN..],
                ProtectionProfile::Aes128CmHmacSha1_80,
                None,
                None,
            )
            .map_err(|e| format!("SRTP context: {e}"))
        };
        Ok(Srtp {
            outbound: ctx(&keys.local)?,
            inbound: ctx(&keys.remote)?,
        })
    }

    /// The SRTP packet for a plain RTP packet; `None` if it is not RTP.
    pub fn protect(&mut self, rtp: &[u8]) -> Option<Bytes> {
        self.outbound.encrypt_rtp(rtp).ok()
    }

    /// The plain RTP packet of an SRTP one; `None` if it does not
    /// authenticate (wrong key, tampered, replayed, not SRTP).
    pub fn unprotect(&mut self, srtp: &[u8]) -> Option<Bytes> {
        self.inbound.decrypt_rtp(srtp).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&160u32.wrapping_mul(seq.into()).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects_and_a_wrong_key_fails() {
        let (a, b) = (new_master_key(), new_master_key());
        let mut herald = Srtp::new(&SrtpKeys {
            local: a,
            remote: b,
        })
        .unwrap();
        let mut peer = Srtp::new(&SrtpKeys {
            local: b,
            remote: a,
        })
        .unwrap();
        let plain = rtp(1, &[0x55; 160]);
        let sent = herald.protect(&plain).unwrap();
        assert_eq!(sent.len(), plain.len() + 10, "an 80-bit tag");
        assert_ne!(&sent[12..172], &plain[12..], "the payload is encrypted");
        assert_eq!(&peer.unprotect(&sent).unwrap()[..], &plain[..]);
        let back = peer.protect(&rtp(7, b"hello")).unwrap();
        assert_eq!(&herald.unprotect(&back).unwrap()[12..], b"hello");
        let mut stranger = Srtp::new(&SrtpKeys {
            local: a,
            remote: new_master_key(),
        })
        .unwrap();
        assert!(stranger
            .unprotect(&herald.protect(&rtp(2, b"x")).unwrap())
            .is_none());
        assert!(peer.unprotect(b"junk").is_none());
    }

    #[test]
    fn inline_keys_round_trip_and_bad_ones_are_refused() {
        let k = new_master_key();
        let s = to_inline(&k);
        assert_eq!(s.len(), 40);
        assert_eq!(from_inline(&s), Some(k));
        assert_eq!(from_inline(&format!("{s}|2^20")), Some(k));
        assert_eq!(from_inline(&format!("{s}|2^20|1:4")), None, "MKI");
        assert_eq!(from_inline("c2hvcnQ="), None, "too short");
        assert_eq!(from_inline("not base64!"), None);
        assert_eq!(
            format!(
                "{:?}",
                SrtpKeys {
                    local: k,
                    remote: k
                }
            ),
            "SrtpKeys(***)"
        );
    }
}
