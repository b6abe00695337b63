//! What a call's SIP ending means for the campaign: the outcome table of
//! DESIGN.md as one pure function, plus the parsers for the response headers
//! that refine it (`Reason: Q.850;cause=NN`, `Retry-After`).
//!
//! Owns: the mapping from (final response or local failure, call context) to
//! [`Outcome`]. Must not: read clocks, touch sockets or name rsipstack types.

use std::time::Duration;

use crate::domain::Outcome;

/// How the INVITE transaction ended, as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupEnd {
    /// A final response with this status code.
    Response(u16),
    /// The request could not be sent (no route, socket error, bad address).
    TransportError,
    /// No final response before the transaction timed out (Timer B).
    NoResponse,
}

/// Why herald itself ended the call attempt before an answer, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OurCancel {
    /// herald did not cancel.
    None,
    /// The ring timeout elapsed: the callee did not pick up.
    RingTimeout,
    /// The caller of [`super::Call::hangup`] asked for it.
    Hangup,
    /// herald is shutting down (the call control's token was cancelled).
    Shutdown,
}

/// What was known about the attempt when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupContext {
    /// A 180/183 was received.
    pub ringing: bool,
    /// Whether (and why) herald sent a CANCEL.
    pub cancel: OurCancel,
}

/// The outcome of an attempt that ended before (or instead of) being answered.
///
/// Every code of the DESIGN.md table is listed; codes it does not name are
/// classified by class: other 3xx (redirects herald does not follow) as
/// `invalid_destination`, other 4xx and 6xx as `rejected`, other 5xx as
/// `temporary_failure`. A 2xx that raced our CANCEL is `no_answer` (it is ACKed
/// and hung up); one that was never cancelled is `answered`.
pub fn classify(end: SetupEnd, ctx: SetupContext) -> Outcome {
    let cancelled = ctx.cancel != OurCancel::None;
    if ctx.cancel == OurCancel::Shutdown {
        return Outcome::Interrupted;
    }
    match end {
        SetupEnd::TransportError => Outcome::TemporaryFailure,
        SetupEnd::NoResponse if cancelled || ctx.ringing => Outcome::NoAnswer,
        SetupEnd::NoResponse => Outcome::TemporaryFailure,
        SetupEnd::Response(code) => match code {
            200..=299 if cancelled => Outcome::NoAnswer,
            200..=299 => Outcome::Answered,
            486 | 600 => Outcome::Busy,
            487 if cancelled => Outcome::NoAnswer,
            487 => Outcome::TemporaryFailure,
            480 => Outcome::NoAnswer,
            408 if ctx.ringing || cancelled => Outcome::NoAnswer,
            408 => Outcome::TemporaryFailure,
            603 | 403 => Outcome::Rejected,
            404 | 484 | 485 | 410 | 604 => Outcome::InvalidDestination,
            500 | 502 | 503 | 504 => Outcome::TemporaryFailure,
            401 | 407 | 402 | 488 | 606 => Outcome::TrunkError,
            300..=399 => Outcome::InvalidDestination,
            400..=499 => Outcome::Rejected,
            500..=599 => Outcome::TemporaryFailure,
            600..=699 => Outcome::Rejected,
            // A "final" 1xx or a code outside 100..=699 is a broken peer.
            _ => Outcome::TemporaryFailure,
        },
    }
}

/// The outcome of an answered call: `answered`, unless herald was shutting
/// down mid-call (`interrupted`, which the scheduler retries).
pub fn classify_answered(ended_by_shutdown: bool) -> Outcome {
    if ended_by_shutdown {
        Outcome::Interrupted
    } else {
        Outcome::Answered
    }
}

/// The Q.850 cause from `Reason` header values, e.g.
/// `Q.850;cause=17;text="User busy"`. Several reasons may be given, in
/// several headers or comma-separated in one; the first Q.850 one wins.
pub fn parse_q850_cause<'a>(reason_values: impl IntoIterator<Item = &'a str>) -> Option<u16> {
    for value in reason_values {
        for reason in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(reason, ';').into_iter();
            let protocol = parts.next().unwrap_or_default().trim();
            if !protocol.eq_ignore_ascii_case("Q.850") {
                continue;
            }
            for param in parts {
                let Some((name, val)) = param.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("cause") {
                    if let Ok(cause) = val.trim().trim_matches('"').parse::<u16>() {
                        if cause <= 127 {
                            return Some(cause);
                        }
                    }
                }
            }
        }
    }
    None
}

/// The delay of a `Retry-After` value: `120`, `120 (in a meeting)`,
/// `3600;duration=1800`. Anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let digits: &str = value
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    if digits.is_empty() {
        return None;
    }
    digits
        .parse::<u32>()
        .ok()
        .map(|s| Duration::from_secs(s.into()))
}

/// Splits on `sep` where it is not inside a double-quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The outcome of an attempt whose call could not be started at all (no
/// INVITE went out): a bad destination is `invalid_destination`; a trunk
/// herald cannot use as configured is `trunk_error` (the campaign pauses); a
/// busy trunk or a media failure is `temporary_failure`; shutting down is
/// `interrupted`.
pub fn failed_to_start(e: &super::OriginateError) -> Outcome {
    use super::OriginateError as E;
    match e {
        E::InvalidDestination(_) => Outcome::InvalidDestination,
        E::UnknownTrunk(_) | E::InvalidCallerId(_) => Outcome::TrunkError,
        E::ShuttingDown => Outcome::Interrupted,
        E::TrunkBusy { .. } | E::Media(_) => Outcome::TemporaryFailure,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_call_that_could_not_start_is_classified_by_why() {
        use super::super::OriginateError as E;
        let table = [
            (
                E::InvalidDestination("x".into()),
                Outcome::InvalidDestination,
            ),
            (E::UnknownTrunk("t".into()), Outcome::TrunkError),
            (E::InvalidCallerId("c".into()), Outcome::TrunkError),
            (
                E::TrunkBusy {
                    trunk: "t".into(),
                    limit: 1,
                },
                Outcome::TemporaryFailure,
            ),
            (
                E::Media(std::io::Error::other("no ports")),
                Outcome::TemporaryFailure,
            ),
            (E::ShuttingDown, Outcome::Interrupted),
        ];
        for (e, want) in table {
            assert_eq!(super::failed_to_start(&e), want, "{e}");
        }
    }

    use super::*;
    use Outcome::*;

    const PLAIN: SetupContext = SetupContext {
        ringing: false,
        cancel: OurCancel::None,
    };
    const RANG: SetupContext = SetupContext {
        ringing: true,
        cancel: OurCancel::None,
    };
    const TIMED_OUT: SetupContext = SetupContext {
        ringing: true,
        cancel: OurCancel::RingTimeout,
    };

    fn code(c: u16, ctx: SetupContext) -> Outcome {
        classify(SetupEnd::Response(c), ctx)
    }

    #[test]
    fn every_code_of_the_outcome_table_maps_to_its_outcome() {
        let table: &[(u16, SetupContext, Outcome)] = &[
            (200, PLAIN, Answered),
            (202, RANG, Answered),
            (486, RANG, Busy),
            (600, PLAIN, Busy),
            (487, TIMED_OUT, NoAnswer),
            (480, PLAIN, NoAnswer),
            (480, RANG, NoAnswer),
            (408, RANG, NoAnswer),
            (408, PLAIN, TemporaryFailure),
            (603, RANG, Rejected),
            (403, PLAIN, Rejected),
            (404, PLAIN, InvalidDestination),
            (484, PLAIN, InvalidDestination),
            (485, PLAIN, InvalidDestination),
            (410, PLAIN, InvalidDestination),
            (604, PLAIN, InvalidDestination),
            (500, PLAIN, TemporaryFailure),
            (502, PLAIN, TemporaryFailure),
            (503, PLAIN, TemporaryFailure),
            (504, RANG, TemporaryFailure),
            (401, PLAIN, TrunkError),
            (407, PLAIN, TrunkError),
            (488, RANG, TrunkError),
            (606, PLAIN, TrunkError),
        ];
        for &(c, ctx, want) in table {
            assert_eq!(code(c, ctx), want, "{c} with {ctx:?}");
        }
    }

    #[test]
    fn unknown_codes_are_classified_by_class() {
        assert_eq!(code(302, PLAIN), InvalidDestination);
        assert_eq!(code(415, PLAIN), Rejected);
        assert_eq!(code(499, RANG), Rejected);
        assert_eq!(code(580, PLAIN), TemporaryFailure);
        assert_eq!(code(699, PLAIN), Rejected);
        assert_eq!(code(183, PLAIN), TemporaryFailure);
        assert_eq!(code(0, PLAIN), TemporaryFailure);
        assert_eq!(code(999, PLAIN), TemporaryFailure);
    }

    #[test]
    fn an_answer_racing_our_cancel_is_no_answer() {
        assert_eq!(code(200, TIMED_OUT), NoAnswer);
        let hung_up = SetupContext {
            ringing: false,
            cancel: OurCancel::Hangup,
        };
        assert_eq!(code(200, hung_up), NoAnswer);
        assert_eq!(code(487, hung_up), NoAnswer);
    }

    #[test]
    fn a_487_we_did_not_ask_for_is_a_temporary_failure() {
        assert_eq!(code(487, RANG), TemporaryFailure);
    }

    #[test]
    fn local_failures_and_timeouts_are_classified() {
        assert_eq!(classify(SetupEnd::TransportError, PLAIN), TemporaryFailure);
        assert_eq!(classify(SetupEnd::TransportError, RANG), TemporaryFailure);
        assert_eq!(classify(SetupEnd::NoResponse, PLAIN), TemporaryFailure);
        assert_eq!(classify(SetupEnd::NoResponse, RANG), NoAnswer);
        assert_eq!(classify(SetupEnd::NoResponse, TIMED_OUT), NoAnswer);
    }

    #[test]
    fn shutdown_interrupts_whatever_the_response() {
        let shutdown = SetupContext {
            ringing: true,
            cancel: OurCancel::Shutdown,
        };
        for end in [
            SetupEnd::Response(487),
            SetupEnd::Response(200),
            SetupEnd::NoResponse,
        ] {
            assert_eq!(classify(end, shutdown), Interrupted);
        }
        assert_eq!(classify_answered(true), Interrupted);
        assert_eq!(classify_answered(false), Answered);
    }

    #[test]
    fn q850_cause_is_read_from_reason_headers() {
        assert_eq!(
            parse_q850_cause(["Q.850;cause=17;text=\"User busy\""]),
            Some(17)
        );
        assert_eq!(
            parse_q850_cause([
                "SIP;cause=200;text=\"Call completed elsewhere\", q.850 ; cause = 16"
            ]),
            Some(16)
        );
        assert_eq!(
            parse_q850_cause(["SIP;cause=487", "Q.850;text=\"a, b; cause=9\";cause=31"]),
            Some(31)
        );
        assert_eq!(parse_q850_cause(["SIP;cause=600"]), None);
        assert_eq!(parse_q850_cause(["Q.850;cause=abc"]), None);
        assert_eq!(parse_q850_cause(["Q.850;cause=99999"]), None);
        assert_eq!(parse_q850_cause(["Q.850"]), None);
        assert_eq!(parse_q850_cause(["\"unterminated;cause=3"]), None);
        assert_eq!(parse_q850_cause(Vec::<&str>::new()), None);
    }

    #[test]
    fn retry_after_is_parsed_with_comments_and_parameters() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after(" 18000;duration=3600"),
            Some(Duration::from_secs(18000))
        );
        assert_eq!(
            parse_retry_after("30 (I'm in a meeting)"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after("99999999999999"), None);
    }
}
