//! Answering a 401/407 on a request herald sent (INVITE, MESSAGE) with a
//! trunk's digest credentials: the challenges read out of the response, the
//! `Authorization` / `Proxy-Authorization` header built for the retry.
//!
//! Owns: which challenge to answer and whether to answer at all (a repeated
//! challenge means the password was refused; see [`digest::should_answer`]).
//! Must not: send anything, or put the password anywhere but the hash input
//! (the hashing is `digest`'s).

use rsipstack::sip::{Header, Response};
use tracing::debug;

use super::digest;
use super::stack::header_values;
use crate::config::Secret;

/// The header answering `resp` (a 401 or a 407) to a `method` request for
/// `uri`, or `None` when herald cannot or should not answer. `rounds`
/// challenges were answered already.
pub(super) fn answer_challenge(
    resp: &Response,
    credential: &(String, Secret),
    method: &str,
    uri: &str,
    rounds: u32,
) -> Option<Header> {
    let proxy = resp.status_code.code() == 407;
    let name = if proxy {
        "proxy-authenticate"
    } else {
        "www-authenticate"
    };
    let challenges: Vec<digest::Challenge> = header_values(&resp.headers, name)
        .iter()
        .filter_map(|v| digest::parse_challenge(v))
        .collect();
    let ch = digest::choose_challenge(&challenges)?;
    if !digest::should_answer(rounds, ch.stale) {
        debug!(rounds, "credentials rejected, not retrying");
        return None;
    }
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let value = digest::authorization(
        ch,
        &digest::DigestInput {
            username: &credential.0,
            password: credential.1.expose(),
            method,
            uri,
            cnonce: &cnonce,
            nc: 1,
        },
    )?;
    debug!(realm = %ch.realm, algorithm = ?ch.algorithm, method, "answering the digest challenge");
    Some(if proxy {
        Header::ProxyAuthorization(value.into())
    } else {
        Header::Authorization(value.into())
    })
}
