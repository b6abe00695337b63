//! Requests inside an answered call's dialog: what the callee sends
//! (OPTIONS, INFO, UPDATE, re-INVITE, NOTIFY…, answered here, a new offer
//! moving the media) and herald's own session refreshes (RFC 4028).
//!
//! Owns: answering in-dialog requests and sending refreshes. Must not: end
//! the call (the call's task decides that from what these return).

use std::time::Duration;

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};
use tracing::debug;

use super::call::CallRun;
use super::stack::status_line;
use super::{media, sdp, timers};

/// How long a session refresh may take to be answered.
const REFRESH_WAIT: Duration = Duration::from_secs(10);

impl CallRun {
    /// Answers requests the callee sends inside the dialog (OPTIONS, INFO,
    /// UPDATE, re-INVITE, NOTIFY…) with 200. A re-INVITE or UPDATE with an
    /// offer moves the media to its address and codec and holds or resumes
    /// it by its direction, and is answered with herald's SDP in the answering
    /// direction (488 when it has no codec herald speaks); one without an
    /// offer gets herald's offer.
    pub(super) async fn in_dialog_request(
        &self,
        st: DialogState,
        relay: &mut media::MediaRelay,
        timer: Option<&timers::SessionTimer>,
    ) -> bool {
        let (req, handle) = match st {
            DialogState::Updated(_, req, h)
            | DialogState::Info(_, req, h)
            | DialogState::Options(_, req, h)
            | DialogState::Notify(_, req, h)
            | DialogState::Message(_, req, h) => (req, h),
            DialogState::Refer(_, _, h) | DialogState::Publish(_, _, h) => {
                h.reply(StatusCode::NotImplemented).await.ok();
                return false;
            }
            _ => return false,
        };
        let refreshes = matches!(
            req.method,
            rsipstack::sip::Method::Invite | rsipstack::sip::Method::Update
        );
        // The 2xx to a refresh keeps the session timer as it was settled.
        let mut headers: Vec<Header> = match (refreshes, timer) {
            (true, Some(t)) => vec![Header::Other(
                "Session-Expires".into(),
                format!(
                    "{};refresher={}",
                    t.interval.as_secs(),
                    if t.we_refresh { "uac" } else { "uas" }
                ),
            )],
            _ => Vec::new(),
        };
        let local = self.media.local;
        let body = if refreshes && !req.body.is_empty() {
            let offer = match sdp::parse_offer(&req.body) {
                Ok(o) => o,
                Err(e) => {
                    debug!(error = %e, "unusable offer in the dialog");
                    handle.reply(StatusCode::NotAcceptableHere).await.ok();
                    return false;
                }
            };
            let Ok(crypto) = relay.answer_crypto(&offer) else {
                debug!("an offer in the dialog would change the call's encryption");
                handle.reply(StatusCode::NotAcceptableHere).await.ok();
                return false;
            };
            let dir = sdp::direction(&req.body);
            debug!(remote = %offer.remote, codec = ?offer.codec, direction = ?dir, "media renegotiated");
            relay.renegotiate(&offer, !dir.lets_us_send());
            Some(sdp::build_answer_in(
                local.ip(),
                local.port(),
                3,
                &offer,
                dir.answered(),
                crypto.as_ref().map(|(tag, key)| (*tag, key)),
            ))
        } else if req.method == rsipstack::sip::Method::Invite {
            Some(sdp::build_offer_with(
                local.ip(),
                local.port(),
                2,
                relay.local_key(),
            ))
        } else {
            None
        };
        match body {
            Some(sdp) => {
                headers.push(Header::ContentType("application/sdp".into()));
                handle
                    .respond(StatusCode::OK, Some(headers), Some(sdp.into_bytes()))
                    .await
                    .ok();
            }
            None if headers.is_empty() => {
                handle.reply(StatusCode::OK).await.ok();
            }
            None => {
                handle
                    .respond(StatusCode::OK, Some(headers), None)
                    .await
                    .ok();
            }
        }
        refreshes
    }

    /// Refreshes the session as its refresher: UPDATE (no offer) when the
    /// callee allows it, else a re-INVITE offering herald's SDP again.
    pub(super) async fn refresh(
        &self,
        dialog: &InviteDialog,
        t: &timers::SessionTimer,
        by_update: bool,
        offer: &str,
    ) -> Result<(), String> {
        let mut headers = timers::refresh_headers(t);
        let sent = if by_update {
            tokio::time::timeout(REFRESH_WAIT, dialog.update(Some(headers), None)).await
        } else {
            headers.push(Header::ContentType("application/sdp".into()));
            tokio::time::timeout(
                REFRESH_WAIT,
                dialog.reinvite(Some(headers), Some(offer.as_bytes().to_vec())),
            )
            .await
        };
        match sent {
            Ok(Ok(Some(r))) if (200..300).contains(&r.status_code.code()) => {
                debug!("session refreshed");
                Ok(())
            }
            Ok(Ok(Some(r))) => Err(status_line(&r)),
            Ok(Ok(None)) => Err("no response".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no response in time".into()),
        }
    }
}
