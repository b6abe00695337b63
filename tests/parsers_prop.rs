//! Property tests (proptest) of the parsers that read what peers send: the
//! SDP reader and the digest challenge reader take any bytes without
//! panicking, and what herald writes reads back as written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use herald::sip::digest::{authorization, parse_challenge, DigestAlgorithm, DigestInput};
use herald::sip::sdp::{build_answer, build_offer, parse_answer, parse_offer, AudioCodec};
use proptest::prelude::*;

/// An SDP-looking body: real lines and nonsense, in any order.
fn sdp_lines() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("v=0".to_string()),
        "c=IN IP[46] [0-9a-f:.]{0,40}".prop_map(|s| s),
        "m=(audio|video|application) [0-9-]{0,12} RTP/S?AVP( [0-9]{1,6}){0,6}".prop_map(|s| s),
        "a=rtpmap:[0-9]{1,6} [A-Za-z-]{0,20}/[0-9]{0,9}(/[0-9])?".prop_map(|s| s),
        "a=(sendrecv|sendonly|recvonly|inactive|ptime:[0-9]{0,5}|fmtp:[0-9]{1,4} [0-9,-]{0,10})"
            .prop_map(|s| s),
        "[a-z]=[ -~]{0,60}".prop_map(|s| s),
        "[ -~]{0,80}".prop_map(|s| s),
    ];
    proptest::collection::vec(line, 0..40).prop_map(|lines| lines.join("\r\n"))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_or_refused_as_sdp_without_panic(body in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let _ = parse_answer(&body);
        let _ = parse_offer(&body);
    }

    #[test]
    fn sdp_shaped_text_is_read_or_refused_without_panic(body in sdp_lines()) {
        if let Ok(a) = parse_answer(body.as_bytes()) {
            // What is read is usable: a real port to send RTP to.
            prop_assert_ne!(a.remote.port(), 0);
        }
    }

    #[test]
    fn an_offer_herald_writes_reads_back(ip in ip(), port in 1u16.., session in any::<u64>()) {
        let offer = parse_offer(build_offer(ip, port, session).as_bytes()).unwrap();
        prop_assert_eq!(offer.remote, SocketAddr::new(ip, port));
        prop_assert_eq!(offer.codec, AudioCodec::Pcmu);
        prop_assert!(offer.telephone_event_pt.is_some());
        // And herald's answer to it carries the same choice.
        let answer = parse_answer(build_answer(ip, port, session, &offer).as_bytes()).unwrap();
        prop_assert_eq!(answer.codec, offer.codec);
        prop_assert_eq!(answer.telephone_event_pt, offer.telephone_event_pt);
        prop_assert_eq!(answer.remote, SocketAddr::new(ip, port));
    }

    #[test]
    fn any_challenge_text_is_read_or_refused_without_panic(value in "[ -~\\t]{0,300}") {
        if let Some(ch) = parse_challenge(&value) {
            let input = DigestInput { username: "u", password: "p", method: "INVITE",
                uri: "sip:x@y", cnonce: "c", nc: 1 };
            let _ = authorization(&ch, &input);
        }
        let _ = parse_challenge(&format!("Digest {value}"));
    }

    #[test]
    fn a_well_formed_challenge_reads_as_written(
        realm in "[a-zA-Z0-9.@ -]{1,40}",
        nonce in "[a-zA-Z0-9+/=]{1,60}",
        sha in any::<bool>(),
        qop in any::<bool>(),
        spaces in "[ \\t]{0,3}",
    ) {
        let alg = if sha { "SHA-256" } else { "MD5" };
        let q = if qop { format!(",{spaces}qop=\"auth,auth-int\"") } else { String::new() };
        let value = format!("Digest realm=\"{realm}\",{spaces}nonce=\"{nonce}\",{spaces}algorithm={alg}{q}");
        let ch = parse_challenge(&value).expect("a well-formed challenge");
        prop_assert_eq!(&ch.realm, &realm);
        prop_assert_eq!(&ch.nonce, &nonce);
        prop_assert_eq!(ch.algorithm, Some(if sha { DigestAlgorithm::Sha256 } else { DigestAlgorithm::Md5 }));
        prop_assert!(ch.answerable());
        let input = DigestInput { username: "alice", password: "pw", method: "REGISTER",
            uri: "sip:registrar.example", cnonce: "0a4f113b", nc: 1 };
        let header = authorization(&ch, &input).unwrap();
        let realm_param = format!("realm=\"{}\"", realm);
        prop_assert!(header.contains(&realm_param), "{}", header);
    }
}
