//! Answering-machine detection on an answered call: the call's audio fed to
//! the detector (`media::amd`) until its verdict, and what the verdict
//! means for the call: connect the agent, hang up on a machine, or leave the
//! voicemail message after its greeting.

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::domain::specs::amd::AmdSpec;
use crate::media::amd::{Decision, Detector, Verdict};
use crate::media::g711::ulaw_to_linear;
use crate::media::MediaEvent;
use crate::sip::CallMedia;

/// A call's detection settings, with its voicemail message loaded.
#[derive(Clone)]
pub(crate) struct Amd {
    pub spec: AmdSpec,
    pub voicemail: Option<Bytes>,
    /// For the verdict's callback, when `callback_url` is set.
    pub client: Option<reqwest::Client>,
}

impl Amd {
    /// `spec` (when on) with its voicemail message loaded.
    pub(crate) async fn load(
        runtime: &crate::agent::AgentRuntime,
        spec: Option<&AmdSpec>,
    ) -> Result<Option<Amd>, String> {
        let Some(spec) = spec.filter(|s| s.is_on()) else {
            return Ok(None);
        };
        let voicemail = match &spec.voicemail_prompt {
            Some(name) => Some(
                runtime
                    .load_prompt(name)
                    .await
                    .map_err(|e| format!("amd.voicemail_prompt {name:?}: {e}"))?,
            ),
            None => None,
        };
        let client = match &spec.callback_url {
            Some(_) => Some(
                reqwest::Client::builder()
                    .timeout(CALLBACK_TIMEOUT)
                    .build()
                    .map_err(|e| format!("amd.callback_url: {e}"))?,
            ),
            None => None,
        };
        Ok(Some(Amd {
            spec: spec.clone(),
            voicemail,
            client,
        }))
    }

    /// POSTs the verdict to `callback_url`, as Twilio's AsyncAmd status
    /// callback does, in the background (a failure is logged, without the
    /// URL, which may hold credentials).
    pub(crate) fn call_back(&self, attempt_id: &str, d: &Decision) {
        let (Some(url), Some(client)) = (&self.spec.callback_url, &self.client) else {
            return;
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("CallSid", &crate::agent::call_sid(attempt_id))
            .append_pair("AnsweredBy", d.verdict.as_str())
            .append_pair("MachineDetectionDuration", &d.at_ms.to_string())
            .finish();
        let request = client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        tokio::spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "the amd callback was refused"),
                Err(e) => tracing::warn!(error = %e.without_url(), "the amd callback failed"),
            }
        });
    }
}

/// How long the verdict's callback may take.
const CALLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What to do with the call once the verdict is in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Then {
    Connect,
    HangUp,
    LeaveMessage,
}

/// Listens until the verdict (the call's end or `stop` ends it early, with
/// the verdict due then). The audio is made continuous, so time passes in
/// silence too.
pub(crate) async fn listen(
    media: &mut CallMedia,
    spec: &AmdSpec,
    stop: &CancellationToken,
) -> Decision {
    media.continuous_audio();
    let mut detector = Detector::new(spec.detector());
    let mut pcm = [0i16; 160];
    loop {
        let ev = tokio::select! {
            ev = media.next_event() => ev,
            _ = stop.cancelled() => None,
        };
        match ev {
            Some(MediaEvent::Audio { ulaw, .. }) => {
                for chunk in ulaw.chunks(160) {
                    for (s, u) in pcm.iter_mut().zip(chunk) {
                        *s = ulaw_to_linear(*u);
                    }
                    if let Some(d) = detector.push(&pcm[..chunk.len()]) {
                        return d;
                    }
                }
            }
            Some(_) => {}
            None => return detector.finish(),
        }
    }
}

/// The mark an agent connected during detection (`detect`) is sent with the
/// verdict: `herald.amd:human`, `herald.amd:machine_start`, …
pub(crate) const VERDICT_MARK_PREFIX: &str = "herald.amd:";

/// Listens while the agent talks (`detect`): `media` with the detector
/// watching its audio; the verdict, once in, is sent both ways: to the
/// returned receiver and, as a mark named `herald.amd:<verdict>`, to whoever
/// reads the media (a media_stream bot gets it as a Twilio `mark`). The call
/// ending first gives the verdict due then.
pub(crate) fn tap(media: CallMedia, spec: &AmdSpec) -> (CallMedia, oneshot::Receiver<Decision>) {
    media.continuous_audio();
    let mut detector = Detector::new(spec.detector());
    let mut pcm = [0i16; 160];
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let media = media.tap(move |ev| {
        tx.as_ref()?;
        let decided = match ev {
            Some(MediaEvent::Audio { ulaw, .. }) => ulaw.chunks(160).find_map(|chunk| {
                for (s, u) in pcm.iter_mut().zip(chunk) {
                    *s = ulaw_to_linear(*u);
                }
                detector.push(&pcm[..chunk.len()])
            }),
            Some(_) => None,
            None => Some(detector.finish()),
        }?;
        let _ = tx.take()?.send(decided);
        Some(MediaEvent::MarkPlayed(format!(
            "{VERDICT_MARK_PREFIX}{}",
            decided.verdict.as_str()
        )))
    });
    (media, rx)
}

/// What the verdict means under `on_machine`: a person (or nobody sure) gets
/// the agent; a fax is hung up on.
pub(crate) fn then(d: &Decision, spec: &AmdSpec) -> Then {
    match d.verdict {
        Verdict::Human | Verdict::Unknown => Then::Connect,
        Verdict::Fax => Then::HangUp,
        _ => match spec.on_machine.as_str() {
            "agent" => Then::Connect,
            "voicemail_drop" => Then::LeaveMessage,
            _ => Then::HangUp,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::amd::Cause;

    fn decision(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            at_ms: 1_000,
            cause: Cause::Timeout,
            speech_ms: 0,
            words: 0,
            beep_hz: None,
        }
    }

    #[test]
    fn people_get_the_agent_and_machines_what_on_machine_says() {
        let mut spec = AmdSpec {
            mode: "detect_message_end".into(),
            ..AmdSpec::default()
        };
        assert_eq!(then(&decision(Verdict::Human), &spec), Then::Connect);
        assert_eq!(then(&decision(Verdict::Unknown), &spec), Then::Connect);
        assert_eq!(
            then(&decision(Verdict::MachineEndBeep), &spec),
            Then::HangUp
        );
        spec.on_machine = "voicemail_drop".into();
        assert_eq!(
            then(&decision(Verdict::MachineEndSilence), &spec),
            Then::LeaveMessage
        );
        assert_eq!(then(&decision(Verdict::Fax), &spec), Then::HangUp);
        spec.on_machine = "agent".into();
        assert_eq!(then(&decision(Verdict::MachineStart), &spec), Then::Connect);
    }
}
