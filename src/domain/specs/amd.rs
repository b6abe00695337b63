//! Answering-machine detection settings (`amd`), on a campaign or a one-off
//! call, after Twilio's MachineDetection: what to listen for after the
//! answer, and what to do when a machine answered.

use serde::{Deserialize, Serialize};

use crate::domain::fields::Fields;
use crate::domain::FieldError;

/// A campaign's or a call's `amd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AmdSpec {
    /// `off`, `detect` (the verdict at a machine greeting's start) or
    /// `detect_message_end` (at its end: the beep, or silence).
    pub mode: String,
    pub timeout_ms: u32,
    pub speech_threshold_ms: u32,
    pub speech_end_threshold_ms: u32,
    pub silence_timeout_ms: u32,
    /// `hangup`, `agent` (the agent takes the call anyway, told the
    /// verdict) or `voicemail_drop` (`voicemail_prompt` after the greeting).
    pub on_machine: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail_prompt: Option<String>,
    /// Where the verdict is POSTed as Twilio's AsyncAmd status callback
    /// (`CallSid`, `AnsweredBy`, `MachineDetectionDuration`, form-encoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl Default for AmdSpec {
    fn default() -> Self {
        AmdSpec {
            mode: "off".into(),
            timeout_ms: 30_000,
            speech_threshold_ms: 2_400,
            speech_end_threshold_ms: 1_200,
            silence_timeout_ms: 5_000,
            on_machine: "hangup".into(),
            voicemail_prompt: None,
            callback_url: None,
        }
    }
}

impl AmdSpec {
    /// `amd` of a request body, if given.
    pub fn parse(f: &Fields<'_>) -> Result<Option<AmdSpec>, FieldError> {
        let Some(a) = f.obj_opt("amd")? else {
            return Ok(None);
        };
        a.deny_unknown(&[
            "mode",
            "timeout_ms",
            "speech_threshold_ms",
            "speech_end_threshold_ms",
            "silence_timeout_ms",
            "on_machine",
            "voicemail_prompt",
            "callback_url",
        ])?;
        let d = AmdSpec::default();
        let spec = AmdSpec {
            mode: a.choice_or("mode", &["off", "detect", "detect_message_end"], &d.mode)?,
            timeout_ms: a.int_or("timeout_ms", 3_000, 59_000, d.timeout_ms)?,
            speech_threshold_ms: a.int_or(
                "speech_threshold_ms",
                1_000,
                6_000,
                d.speech_threshold_ms,
            )?,
            speech_end_threshold_ms: a.int_or(
                "speech_end_threshold_ms",
                500,
                5_000,
                d.speech_end_threshold_ms,
            )?,
            silence_timeout_ms: a.int_or(
                "silence_timeout_ms",
                2_000,
                10_000,
                d.silence_timeout_ms,
            )?,
            on_machine: a.choice_or(
                "on_machine",
                &["hangup", "agent", "voicemail_drop"],
                &d.on_machine,
            )?,
            voicemail_prompt: a.str_opt("voicemail_prompt")?.map(str::to_string),
            callback_url: a.str_opt("callback_url")?.map(str::to_string),
        };
        if let Some(u) = &spec.callback_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() <= 2_000
                && !u.contains(char::is_whitespace)
                && reqwest::Url::parse(u).is_ok_and(|p| p.host_str().is_some());
            if !ok {
                return Err(a.err(
                    "callback_url",
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        if spec.on_machine == "voicemail_drop" && spec.voicemail_prompt.is_none() {
            return Err(a.err(
                "voicemail_prompt",
                "is required with on_machine voicemail_drop",
            ));
        }
        if spec.on_machine == "voicemail_drop" && spec.mode != "detect_message_end" {
            return Err(a.err(
                "on_machine",
                "voicemail_drop needs mode detect_message_end (the message goes after the beep)",
            ));
        }
        Ok(Some(spec))
    }

    /// Whether detection runs at all.
    pub fn is_on(&self) -> bool {
        self.mode != "off"
    }

    /// `detect`: the agent is connected at the answer and told the verdict
    /// later (`detect_message_end` connects it after the verdict).
    pub fn connects_at_once(&self) -> bool {
        self.mode == "detect"
    }

    /// The detector's configuration.
    pub fn detector(&self) -> crate::media::amd::AmdConfig {
        crate::media::amd::AmdConfig {
            mode: if self.mode == "detect" {
                crate::media::amd::Mode::Detect
            } else {
                crate::media::amd::Mode::DetectMessageEnd
            },
            timeout_ms: self.timeout_ms,
            speech_threshold_ms: self.speech_threshold_ms,
            speech_end_threshold_ms: self.speech_end_threshold_ms,
            silence_timeout_ms: self.silence_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Option<AmdSpec>, FieldError> {
        AmdSpec::parse(&Fields::new(&v, "").unwrap())
    }

    #[test]
    fn amd_settings_are_checked_field_by_field() {
        assert_eq!(parse(json!({})).unwrap(), None);
        let a = parse(json!({"amd": {"mode": "detect"}})).unwrap().unwrap();
        assert_eq!((a.timeout_ms, a.on_machine.as_str()), (30_000, "hangup"));
        let e = parse(json!({"amd": {"mode": "listen"}})).unwrap_err();
        assert_eq!(e.field, "amd.mode");
        let e =
            parse(json!({"amd": {"mode": "detect_message_end", "on_machine": "voicemail_drop"}}))
                .unwrap_err();
        assert_eq!(e.field, "amd.voicemail_prompt");
        let e = parse(
            json!({"amd": {"mode": "detect", "on_machine": "voicemail_drop",
            "voicemail_prompt": "vm.wav"}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "amd.on_machine");
        let e = parse(json!({"amd": {"mode": "detect", "callback_url": "ftp://x"}})).unwrap_err();
        assert_eq!(e.field, "amd.callback_url");
        let e = parse(json!({"amd": {"timeout_ms": 100}})).unwrap_err();
        assert_eq!(e.field, "amd.timeout_ms");
    }
}
