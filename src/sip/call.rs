//! One outbound call, from INVITE to its end: the task behind a [`super::Call`].
//!
//! Owns: the INVITE (and its one authenticated retry), the ring timeout and
//! CANCEL, the answer and its media, max duration and BYE, the callee's BYE,
//! and the final [`CallEnded`]. Must not: classify responses itself (that is
//! `classify`), or outlive its dialog without removing it from the layer.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;

use super::links::LinkError;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::{Header, Response};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::classify::{self, OurCancel, SetupContext, SetupEnd};
use super::media::{self, PreparedMedia};
use super::stack::{header_values, CallNote, Registry};
use super::stack::{is_local_timeout, status_line};
use super::target::Target;
use super::timers::{self, TimerConfig};
use super::{auth, sdp};
use super::{CallEnded, CallEvent, HangupBy};

/// How long the INVITE may take to end after our CANCEL (64*T1, RFC 3261 §9.1).
const CANCEL_WAIT: Duration = super::stack::TRANSACTION_TIMEOUT;

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Everything the call's task needs.
pub(super) struct CallRun {
    pub(super) call_id: String,
    pub(super) target: Target,
    pub(super) media: PreparedMedia,
    pub(super) dialogs: Arc<DialogLayer>,
    pub(super) registry: Registry,
    pub(super) tasks: TaskTracker,
    pub(super) events: mpsc::UnboundedSender<CallEvent>,
    pub(super) notes: mpsc::UnboundedReceiver<CallNote>,
    pub(super) hangup: CancellationToken,
    pub(super) shutdown: CancellationToken,
    pub(super) timers: TimerConfig,
}

/// What the call has learnt so far.
#[derive(Default)]
struct Record {
    invite_sent_at: Option<DateTime<Utc>>,
    ringing_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    trying_seen: bool,
    early_media: bool,
    early_answer: Option<sdp::SdpAnswer>,
    cancel: Option<(OurCancel, HangupBy, &'static str)>,
    /// herald's SDP offer (a re-INVITE refresh offers it again).
    offer: String,
}

/// How the INVITE transaction ended.
enum Setup {
    Final(Response, Option<DialogId>),
    NoResponse,
    Failed(String),
}

impl CallRun {
    pub(super) async fn run(mut self) {
        let ended = self.place().await;
        info!(
            outcome = %ended.outcome,
            sip_code = ?ended.sip_code,
            hangup_by = ?ended.hangup_by,
            reason = %ended.reason,
            "call ended"
        );
        self.registry.remove(&self.call_id);
        self.events.send(CallEvent::Ended(ended)).ok();
    }

    fn emit(&self, ev: CallEvent) {
        self.events.send(ev).ok();
    }

    async fn place(&mut self) -> CallEnded {
        let mut rec = Record::default();
        let offer = sdp::build_offer_with(
            self.media.local.ip(),
            self.media.local.port(),
            rand::random::<u32>().into(),
            self.media.local_key(),
        );
        rec.offer = offer.clone();
        let ring_deadline = Instant::now() + self.target.ring_timeout;
        let mut auth: Option<Header> = None;
        let mut auth_rounds = 0u32;
        let (mut session_expires, mut min_se) =
            (self.timers.session_expires_s, self.timers.min_se_s);
        let mut asked_again = false;
        loop {
            if let Err(e) = self.open_link().await {
                return e;
            }
            let mut opt = self.invite_option(&offer, auth.clone());
            if let Some(h) = opt.headers.as_mut() {
                h.extend(timers::invite_headers(session_expires, min_se));
            }
            let (state_tx, states) = self.dialogs.new_dialog_state_channel();
            let (dialog, join) = match self.dialogs.do_invite_async(opt, state_tx) {
                Ok(x) => x,
                Err(e) => return self.failed(&rec, format!("INVITE not sent: {e}")),
            };
            if rec.invite_sent_at.is_none() {
                let at = Utc::now();
                rec.invite_sent_at = Some(at);
                self.emit(CallEvent::InviteSent { at });
            }
            let (setup, states) = self
                .drive_setup(&dialog, join, states, ring_deadline, &mut rec)
                .await;
            let (resp, confirmed) = match setup {
                Setup::Final(resp, id) => (resp, id),
                Setup::NoResponse => {
                    return self.setup_ended(&rec, SetupEnd::NoResponse, None, "no response");
                }
                Setup::Failed(e) => {
                    return self.setup_ended(&rec, SetupEnd::TransportError, None, &e);
                }
            };
            let code = resp.status_code.code();
            if is_local_timeout(&resp) {
                return self.setup_ended(
                    &rec,
                    SetupEnd::NoResponse,
                    None,
                    "no final response (transaction timeout)",
                );
            }
            if (code == 401 || code == 407) && rec.cancel.is_none() {
                if let Some(h) = self.answer_challenge(&resp, auth_rounds) {
                    auth_rounds += 1;
                    auth = Some(h);
                    continue;
                }
            }
            // 422: the callee wants a longer session interval; asked once more.
            if code == 422 && session_expires > 0 && !asked_again && rec.cancel.is_none() {
                if let Some(theirs) = timers::min_se_of(&resp) {
                    asked_again = true;
                    min_se = min_se.max(theirs);
                    session_expires = session_expires.max(theirs);
                    continue;
                }
            }
            if (200..300).contains(&code) && rec.cancel.is_none() {
                if let Some(id) = confirmed {
                    return self.answered(dialog, id, &resp, states, &mut rec).await;
                }
            }
            let detail = status_line(&resp);
            return self.setup_ended(&rec, SetupEnd::Response(code), Some(&resp), &detail);
        }
    }

    fn invite_option(&self, offer: &str, auth: Option<Header>) -> InviteOption {
        let t = &self.target;
        let mut headers = vec![Header::Other(
            "X-Herald-Attempt".into(),
            t.attempt_id.clone(),
        )];
        for (name, value) in &t.headers {
            if is_header_name(name) && !value.contains(['\r', '\n']) {
                headers.push(Header::Other(name.clone(), value.clone()));
            }
        }
        headers.extend(auth);
        InviteOption {
            caller: t.from_uri.clone(),
            callee: t.request_uri.clone(),
            contact: t.contact.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(offer.as_bytes().to_vec()),
            headers: Some(headers),
            call_id: Some(self.call_id.clone()),
            destination: t.trunk.as_ref().and_then(|t| t.destination.clone()),
            ..Default::default()
        }
    }

    /// On a TCP or TLS trunk, opens the (verified) connection the INVITE goes
    /// on, if none is open. A certificate that does not verify ends the call
    /// `trunk_error`; a trunk that cannot be reached, `temporary_failure`.
    async fn open_link(&self) -> Result<(), CallEnded> {
        let Some(trunk) = self.target.trunk.as_ref() else {
            return Ok(());
        };
        let (Some(link), Some(dest)) = (trunk.link.as_ref(), trunk.destination.as_ref()) else {
            return Ok(());
        };
        let layer = &self.dialogs.endpoint.transport_layer;
        match link.ensure(layer, dest).await {
            Ok(()) => Ok(()),
            Err(LinkError::Certificate(why)) => {
                warn!(trunk = %trunk.name, error = %why, "TLS certificate refused");
                Err(self.finish(
                    &Record::default(),
                    crate::domain::Outcome::TrunkError,
                    None,
                    None,
                    HangupBy::Error,
                    format!("tls_certificate: {why}"),
                ))
            }
            Err(LinkError::Connect(why)) => Err(self.failed(&Record::default(), why)),
        }
    }

    /// Drives one INVITE transaction to its final response, sending CANCEL on
    /// ring timeout, hangup or shutdown.
    async fn drive_setup(
        &mut self,
        dialog: &InviteDialog,
        mut join: tokio::task::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
        mut states: DialogStateReceiver,
        ring_deadline: Instant,
        rec: &mut Record,
    ) -> (Setup, DialogStateReceiver) {
        let mut states_open = true;
        // After our CANCEL the INVITE must end within 64*T1 (RFC 3261 §9.1);
        // a peer that never answers it must not keep the call forever.
        let mut cancel_deadline = None;
        let result = loop {
            let can_cancel = rec.cancel.is_none();
            if !can_cancel && cancel_deadline.is_none() {
                cancel_deadline = Some(Instant::now() + CANCEL_WAIT);
            }
            tokio::select! {
                st = states.recv(), if states_open => match st {
                    Some(st) => self.on_setup_state(st, rec),
                    None => states_open = false,
                },
                r = &mut join => break r,
                _ = tokio::time::sleep_until(ring_deadline), if can_cancel => {
                    self.cancel(dialog, rec, OurCancel::RingTimeout, HangupBy::Timeout, "ring timeout");
                }
                _ = self.hangup.cancelled(), if can_cancel => {
                    self.cancel(dialog, rec, OurCancel::Hangup, HangupBy::Herald, "hung up by herald");
                }
                _ = self.shutdown.cancelled(), if can_cancel => {
                    self.cancel(dialog, rec, OurCancel::Shutdown, HangupBy::Herald, "shutdown");
                }
                _ = sleep_until_opt(cancel_deadline), if cancel_deadline.is_some() => {
                    join.abort();
                    break Ok(Ok((dialog.id(), None)));
                }
            }
        };
        // States sent before the final response (e.g. the 180 right before a
        // 486 in the same burst) are still worth recording.
        while let Ok(st) = states.try_recv() {
            self.on_setup_state(st, rec);
        }
        let setup = match result {
            Ok(Ok((id, Some(resp)))) => Setup::Final(resp, Some(id)),
            Ok(Ok((_, None))) => Setup::NoResponse,
            Ok(Err(e)) => Setup::Failed(format!("transport error: {e}")),
            Err(e) => Setup::Failed(format!("INVITE task failed: {e}")),
        };
        (setup, states)
    }

    fn cancel(
        &self,
        dialog: &InviteDialog,
        rec: &mut Record,
        why: OurCancel,
        by: HangupBy,
        reason: &'static str,
    ) {
        debug!(reason, "cancelling the INVITE");
        rec.cancel = Some((why, by, reason));
        let dialog = dialog.clone();
        self.tasks.spawn(async move {
            if let Err(e) = dialog.cancel().await {
                debug!(error = %e, "CANCEL failed");
            }
        });
    }

    fn on_setup_state(&mut self, st: DialogState, rec: &mut Record) {
        match st {
            DialogState::Trying(_) if !rec.trying_seen => {
                rec.trying_seen = true;
                self.emit(CallEvent::Trying);
            }
            DialogState::Early(_, resp) => {
                let code = resp.status_code.code();
                let mut early_media = rec.early_media;
                if code == 183 && is_sdp(&resp) {
                    match sdp::parse_answer(&resp.body) {
                        Ok(a) => {
                            self.media.apply(&a);
                            rec.early_answer = Some(a);
                            early_media = true;
                        }
                        Err(e) => debug!(error = %e, "unusable SDP in 183"),
                    }
                }
                let first = rec.ringing_at.is_none();
                let at = Utc::now();
                if first {
                    rec.ringing_at = Some(at);
                }
                if first || early_media != rec.early_media {
                    rec.early_media = early_media;
                    self.emit(CallEvent::Ringing { at, early_media });
                }
            }
            _ => {}
        }
    }

    /// The header answering a 401/407, or `None` when herald cannot.
    /// `rounds` challenges were answered already.
    fn answer_challenge(&self, resp: &Response, rounds: u32) -> Option<Header> {
        let credential = self.target.credential.as_ref()?;
        let uri = self.target.request_uri.to_string();
        auth::answer_challenge(resp, credential, "INVITE", &uri, rounds)
    }

    async fn answered(
        &mut self,
        dialog: InviteDialog,
        id: DialogId,
        resp: &Response,
        mut states: DialogStateReceiver,
        rec: &mut Record,
    ) -> CallEnded {
        let at = Utc::now();
        rec.answered_at = Some(at);
        let answer = if is_sdp(resp) {
            sdp::parse_answer(&resp.body).map_err(|e| e.to_string())
        } else {
            rec.early_answer
                .clone()
                .ok_or_else(|| "the answer has no SDP".to_string())
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "answered without usable SDP, hanging up");
                let why = format!("answered without usable SDP: {e}");
                return self.refuse_answer(&dialog, &id, rec, resp, why).await;
            }
        };
        let keys = match self.media.keys_for(&answer) {
            Ok(keys) => keys,
            Err(why) => {
                warn!(error = %why, "the answer's media is not encrypted as the trunk requires, hanging up");
                return self.refuse_answer(&dialog, &id, rec, resp, why).await;
            }
        };
        self.media.apply(&answer);
        let Some(handle) = self.media.take_handle() else {
            let why = "no media session".to_string();
            return self.refuse_answer(&dialog, &id, rec, resp, why).await;
        };
        let (call_media, mut relay) = media::relay(handle, &answer, keys);
        self.emit(CallEvent::Answered {
            at,
            media: call_media,
        });
        let code = Some(resp.status_code.code());
        let max_end = Instant::now() + self.target.max_duration;
        let mut states_open = true;
        // A session timer the 2xx kept: when to refresh (or give up).
        let timer = timers::negotiated(resp).filter(|_| self.timers.session_expires_s > 0);
        let by_update = timers::allows_update(resp);
        let mut refresh_due = timer.map(|t| Instant::now() + t.due_after());
        let (by, reason, q850, shutdown) = loop {
            tokio::select! {
                st = states.recv(), if states_open => match st {
                    Some(DialogState::Terminated(_, TerminatedReason::UasBye)) => {
                        let q850 = self.remote_bye_cause();
                        break (HangupBy::Callee, "callee hung up".to_string(), q850, false);
                    }
                    Some(DialogState::Terminated(_, r)) => {
                        break (HangupBy::Error, format!("dialog ended: {r:?}"), None, false);
                    }
                    Some(st) => {
                        if self.in_dialog_request(st, &mut relay, timer.as_ref()).await {
                            // The callee refreshed the session (RFC 4028 §10).
                            refresh_due = timer.map(|t| Instant::now() + t.due_after());
                        }
                    }
                    None => states_open = false,
                },
                _ = sleep_until_opt(refresh_due) => {
                    let t = timer.expect("a refresh is due only with a timer");
                    if !t.we_refresh {
                        self.bye(&dialog).await;
                        break (HangupBy::Timeout, "session expired: the callee did not refresh it".to_string(), None, false);
                    }
                    match self.refresh(&dialog, &t, by_update, &rec.offer).await {
                        Ok(()) => refresh_due = Some(Instant::now() + t.due_after()),
                        Err(why) => {
                            self.bye(&dialog).await;
                            break (HangupBy::Error, format!("session refresh failed: {why}"), None, false);
                        }
                    }
                }
                _ = relay.inactive() => {
                    self.bye(&dialog).await;
                    break (HangupBy::Timeout, "no RTP received (inactivity timeout)".to_string(), None, false);
                }
                _ = tokio::time::sleep_until(max_end) => {
                    self.bye(&dialog).await;
                    break (HangupBy::Timeout, "max duration".to_string(), None, false);
                }
                _ = self.hangup.cancelled() => {
                    self.bye(&dialog).await;
                    break (HangupBy::Herald, "hung up by herald".to_string(), None, false);
                }
                _ = self.shutdown.cancelled() => {
                    self.bye(&dialog).await;
                    break (HangupBy::Herald, "shutdown".to_string(), None, true);
                }
            }
        };
        let stats = relay.stop().await;
        self.dialogs.remove_dialog(&id);
        let mut ended = self.finish(
            rec,
            classify::classify_answered(shutdown),
            code,
            q850,
            by,
            reason,
        );
        ended.media_stats = Some(stats);
        ended
    }

    fn remote_bye_cause(&mut self) -> Option<u16> {
        let mut q850 = None;
        while let Ok(note) = self.notes.try_recv() {
            match note {
                CallNote::RemoteBye { q850: c } => q850 = q850.or(c),
            }
        }
        q850
    }

    /// Hangs up an answered call herald cannot carry (`trunk_error`, `why`).
    async fn refuse_answer(
        &self,
        dialog: &InviteDialog,
        id: &DialogId,
        rec: &Record,
        resp: &Response,
        why: String,
    ) -> CallEnded {
        self.bye(dialog).await;
        self.dialogs.remove_dialog(id);
        self.finish(
            rec,
            crate::domain::Outcome::TrunkError,
            Some(resp.status_code.code()),
            None,
            HangupBy::Error,
            why,
        )
    }

    async fn bye(&self, dialog: &InviteDialog) {
        if let Err(e) = dialog.bye().await {
            debug!(error = %e, "BYE failed");
        }
    }

    fn setup_ended(
        &self,
        rec: &Record,
        end: SetupEnd,
        resp: Option<&Response>,
        detail: &str,
    ) -> CallEnded {
        let cancel = rec.cancel.map(|c| c.0).unwrap_or(OurCancel::None);
        let outcome = classify::classify(
            end,
            SetupContext {
                ringing: rec.ringing_at.is_some(),
                cancel,
            },
        );
        let (by, reason) = match (rec.cancel, end) {
            (Some((_, by, why)), _) => (by, format!("{why} ({detail})")),
            (None, SetupEnd::Response(_)) => (HangupBy::Callee, detail.to_string()),
            (None, _) => (HangupBy::Error, detail.to_string()),
        };
        let q850 = resp.and_then(|r| {
            classify::parse_q850_cause(
                header_values(&r.headers, "reason")
                    .iter()
                    .map(String::as_str),
            )
        });
        let mut ended = self.finish(
            rec,
            outcome,
            resp.map(|r| r.status_code.code()),
            q850,
            by,
            reason,
        );
        ended.retry_after = resp.and_then(|r| {
            header_values(&r.headers, "retry-after")
                .first()
                .and_then(|v| classify::parse_retry_after(v))
        });
        ended
    }

    fn failed(&self, rec: &Record, detail: String) -> CallEnded {
        self.setup_ended(rec, SetupEnd::TransportError, None, &detail)
    }

    fn finish(
        &self,
        rec: &Record,
        outcome: crate::domain::Outcome,
        sip_code: Option<u16>,
        q850_cause: Option<u16>,
        hangup_by: HangupBy,
        reason: String,
    ) -> CallEnded {
        CallEnded {
            outcome,
            sip_code,
            q850_cause,
            retry_after: None,
            hangup_by,
            reason,
            invite_sent_at: rec.invite_sent_at,
            ringing_at: rec.ringing_at,
            answered_at: rec.answered_at,
            ended_at: Utc::now(),
            media_stats: None,
        }
    }
}

fn is_sdp(resp: &Response) -> bool {
    let ct = header_values(&resp.headers, "content-type");
    sdp::is_sdp(ct.first().map(String::as_str), &resp.body)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_header_names_are_passed_on() {
        assert!(is_header_name("X-Herald-Campaign"));
        assert!(!is_header_name("X Bad"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("X:Y"));
    }
}
