//! SIP digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), as
//! pure functions.
//!
//! Owns: reading `WWW-Authenticate` / `Proxy-Authenticate` challenges,
//! choosing which one to answer, and computing the `Authorization` /
//! `Proxy-Authorization` value (MD5 or SHA-256, `qop=auth`, `nc` in hex).
//! Must not: send anything, read clocks, or put the password anywhere but the
//! hash input (never in a `Debug` output or a log line).

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The hash algorithms herald answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, input: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(Md5::digest(input.as_bytes())),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(input.as_bytes())),
        }
    }
}

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `None` when the server named an algorithm herald does not implement
    /// (e.g. `MD5-sess`, `SHA-512-256`).
    pub algorithm: Option<DigestAlgorithm>,
    /// The `qop` options offered (lower-cased), empty when none.
    pub qop: Vec<String>,
    pub stale: bool,
}

impl Challenge {
    /// Whether herald can compute an answer to it.
    pub fn answerable(&self) -> bool {
        self.algorithm.is_some() && (self.qop.is_empty() || self.qop.iter().any(|q| q == "auth"))
    }
}

/// Parses a `Digest` challenge header value. Other schemes and malformed
/// values are `None`.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut algorithm = Some(DigestAlgorithm::Md5);
    let mut qop = Vec::new();
    let mut stale = false;
    for (name, val) in params(rest) {
        match name.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val),
            "nonce" => nonce = Some(val),
            "opaque" => opaque = Some(val),
            "stale" => stale = val.eq_ignore_ascii_case("true"),
            "qop" => {
                qop = val
                    .split(',')
                    .map(|q| q.trim().to_ascii_lowercase())
                    .filter(|q| !q.is_empty())
                    .collect()
            }
            "algorithm" => {
                algorithm = match val.to_ascii_uppercase().as_str() {
                    "MD5" => Some(DigestAlgorithm::Md5),
                    "SHA-256" | "SHA256" => Some(DigestAlgorithm::Sha256),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        nonce: nonce?,
        opaque,
        algorithm,
        qop,
        stale,
    })
}

/// Picks the challenge to answer among those of one response: an MD5 one if
/// offered (the algorithm every registrar and SIPp verify), else the first
/// SHA-256 one. `None` when none is answerable.
pub fn choose_challenge(challenges: &[Challenge]) -> Option<&Challenge> {
    let answerable = || challenges.iter().filter(|c| c.answerable());
    answerable()
        .find(|c| c.algorithm == Some(DigestAlgorithm::Md5))
        .or_else(|| answerable().next())
}

/// Extra rounds allowed when the server only says the nonce went stale.
pub const MAX_STALE_ROUNDS: u32 = 2;

/// Whether to answer a challenge after `rounds_done` answered ones: the first
/// always; a repeated one means the credentials were rejected (final, so a
/// wrong password is one retry, never a loop), unless it says `stale=true`
/// (the credentials were fine, the nonce expired), which is answered up to
/// [`MAX_STALE_ROUNDS`] more times.
pub fn should_answer(rounds_done: u32, stale: bool) -> bool {
    rounds_done == 0 || (stale && rounds_done <= MAX_STALE_ROUNDS)
}

/// The credential inputs of one answer.
pub struct DigestInput<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    /// The Request-URI, exactly as sent.
    pub uri: &'a str,
    /// Client nonce (random per answer); used only with `qop=auth`.
    pub cnonce: &'a str,
    /// Nonce count, starting at 1 for a fresh nonce.
    pub nc: u32,
}

impl std::fmt::Debug for DigestInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestInput")
            .field("username", &self.username)
            .field("password", &"***")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish()
    }
}

/// The digest `response` value (RFC 7616 §3.4.1).
pub fn response(ch: &Challenge, alg: DigestAlgorithm, input: &DigestInput<'_>) -> String {
    let ha1 = alg.hash(&format!(
        "{}:{}:{}",
        input.username, ch.realm, input.password
    ));
    let ha2 = alg.hash(&format!("{}:{}", input.method, input.uri));
    if uses_qop_auth(ch) {
        alg.hash(&format!(
            "{ha1}:{}:{:08x}:{}:auth:{ha2}",
            ch.nonce, input.nc, input.cnonce
        ))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", ch.nonce))
    }
}

/// The full `Authorization` / `Proxy-Authorization` header value answering
/// `ch`, or `None` when the challenge is not answerable.
pub fn authorization(ch: &Challenge, input: &DigestInput<'_>) -> Option<String> {
    if !ch.answerable() {
        return None;
    }
    let alg = ch.algorithm?;
    let resp = response(ch, alg, input);
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote(input.username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(input.uri),
        resp,
        alg.token()
    );
    if uses_qop_auth(ch) {
        v.push_str(&format!(
            ", qop=auth, nc={:08x}, cnonce=\"{}\"",
            input.nc,
            quote(input.cnonce)
        ));
    }
    if let Some(opaque) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    Some(v)
}

fn uses_qop_auth(ch: &Challenge) -> bool {
    ch.qop.iter().any(|q| q == "auth")
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `name=value` pairs of a challenge; values may be quoted (with `\` escapes)
/// and quoted values may contain commas.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        // A quoted-string's content is kept exactly (a realm's spaces are
        // part of what is hashed); a token's surrounding space is not.
        let mut quoted = false;
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                quoted = true;
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        } else if chars.peek() == Some(&',') {
            chars.next();
        }
        let name = name.trim().to_string();
        if !name.is_empty() {
            out.push((
                name,
                if quoted {
                    value
                } else {
                    value.trim().to_string()
                },
            ));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1: the same credentials with MD5 and SHA-256.
    const RFC7616_MD5: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
        algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    fn rfc7616_input() -> DigestInput<'static> {
        DigestInput {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        }
    }

    #[test]
    fn rfc7616_md5_and_sha256_vectors() {
        let md5 = parse_challenge(RFC7616_MD5).unwrap();
        assert_eq!(md5.algorithm, Some(DigestAlgorithm::Md5));
        assert_eq!(md5.qop, vec!["auth", "auth-int"]);
        assert_eq!(
            response(&md5, DigestAlgorithm::Md5, &rfc7616_input()),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let sha =
            parse_challenge(&RFC7616_MD5.replace("algorithm=MD5", "algorithm=SHA-256")).unwrap();
        assert_eq!(sha.algorithm, Some(DigestAlgorithm::Sha256));
        assert_eq!(
            response(&sha, DigestAlgorithm::Sha256, &rfc7616_input()),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc2617_vector_with_qop() {
        let ch = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let input = DigestInput {
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "0a4f113b",
            nc: 1,
        };
        assert_eq!(
            response(&ch, DigestAlgorithm::Md5, &input),
            "6629fae49393a05397450978507c4ef1"
        );
        let header = authorization(&ch, &input).unwrap();
        assert!(header.starts_with("Digest username=\"Mufasa\""), "{header}");
        assert!(header.contains("qop=auth, nc=00000001, cnonce=\"0a4f113b\""));
        assert!(header.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(header.contains("algorithm=MD5"));
        assert!(!header.contains("Circle"), "password leaked: {header}");
    }

    #[test]
    fn nonce_count_is_written_in_hex() {
        let ch = parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth\"").unwrap();
        let mut input = rfc7616_input();
        input.nc = 26;
        assert!(authorization(&ch, &input).unwrap().contains("nc=0000001a"));
    }

    #[test]
    fn challenge_without_qop_uses_the_rfc2069_form() {
        let ch = parse_challenge("Digest realm=\"sip.example\", nonce=\"abc\"").unwrap();
        let input = DigestInput {
            username: "u",
            password: "p",
            method: "INVITE",
            uri: "sip:+15551234567@sip.example",
            cnonce: "ignored",
            nc: 1,
        };
        let ha1 = DigestAlgorithm::Md5.hash("u:sip.example:p");
        let ha2 = DigestAlgorithm::Md5.hash("INVITE:sip:+15551234567@sip.example");
        let want = DigestAlgorithm::Md5.hash(&format!("{ha1}:abc:{ha2}"));
        assert_eq!(response(&ch, DigestAlgorithm::Md5, &input), want);
        let header = authorization(&ch, &input).unwrap();
        assert!(!header.contains("qop"), "{header}");
        assert!(!header.contains("cnonce"), "{header}");
    }

    #[test]
    fn md5_is_chosen_when_offered_next_to_sha256() {
        let chs: Vec<Challenge> = [
            "Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"n2\", algorithm=MD5, qop=\"auth\"",
        ]
        .iter()
        .filter_map(|v| parse_challenge(v))
        .collect();
        assert_eq!(choose_challenge(&chs).unwrap().nonce, "n2");
        assert_eq!(choose_challenge(&chs[..1]).unwrap().nonce, "n1");
    }

    #[test]
    fn unanswerable_challenges_are_recognised() {
        let sess = parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").unwrap();
        assert!(!sess.answerable());
        let int_only =
            parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert!(!int_only.answerable());
        assert_eq!(choose_challenge(&[sess, int_only]), None);
        assert!(authorization(
            &parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5").unwrap(),
            &rfc7616_input()
        )
        .is_none());
    }

    #[test]
    fn malformed_challenges_are_none_not_panics() {
        for v in [
            "",
            "Digest",
            "Basic realm=\"r\"",
            "Digest realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"unterminated, nonce=\"n",
            "Digest ,,,=,=\"",
            "Digest \u{0}\u{ff}",
        ] {
            assert_eq!(parse_challenge(v), None, "{v:?}");
        }
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let ch =
            parse_challenge("digest realm=\"a, \\\"b\\\"\",nonce=abc,stale=TRUE ,algorithm=sha256")
                .unwrap();
        assert_eq!(ch.realm, "a, \"b\"");
        assert_eq!(ch.nonce, "abc");
        assert!(ch.stale);
        assert_eq!(ch.algorithm, Some(DigestAlgorithm::Sha256));
        let header = authorization(&ch, &rfc7616_input()).unwrap();
        assert!(header.contains("realm=\"a, \\\"b\\\"\""), "{header}");
        assert!(header.contains("algorithm=SHA-256"), "{header}");
    }

    #[test]
    fn a_repeated_challenge_is_final_unless_the_nonce_is_stale() {
        assert!(should_answer(0, false));
        assert!(should_answer(0, true));
        assert!(!should_answer(1, false));
        assert!(should_answer(1, true));
        assert!(should_answer(2, true));
        assert!(
            !should_answer(3, true),
            "a server always saying stale cannot loop us"
        );
    }

    #[test]
    fn debug_of_the_input_hides_the_password() {
        let shown = format!("{:?}", rfc7616_input());
        assert!(!shown.contains("Circle"), "{shown}");
    }
}
