//! The Twilio Media Streams messages, as plain data: what herald sends
//! (`connected`, `start`, `media`, `dtmf`, `mark`, `stop`) and what it reads
//! from a bot (`media`, `mark`, `clear`).
//!
//! Owns: the exact JSON shapes (ids and counters as strings), the message
//! sequence numbers and media chunk numbers, the media timestamp (the
//! milliseconds of audio sent before the frame: the stream is continuous,
//! so this is the time since the stream started), and decoding bots'
//! audio. Media frames are written into one reused buffer.
//!
//! Must not: touch sockets, read the clock, or panic on anything a bot sends.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The first message on a new socket.
pub const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;

/// A mark with this prefix sets the session's result when it plays.
pub const RESULT_MARK_PREFIX: &str = "herald.result:";

/// Standard base64 for what herald sends.
const B64_OUT: GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Standard base64 for what bots send, with or without padding.
const B64_IN: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// μ-law bytes (samples) per millisecond (8 kHz).
const SAMPLES_PER_MS: u64 = 8;

/// Builds herald's messages for one stream, numbering them.
#[derive(Debug)]
pub struct Outbound {
    stream_sid: String,
    /// The last `sequenceNumber` used (`connected` has none; `start` is 1).
    sequence: u64,
    /// The last media `chunk` used.
    chunk: u64,
    /// Audio bytes sent in `media` so far.
    samples: u64,
    buf: BytesMut,
}

/// `customParameters`: every value as a string (`null` as an empty one).
pub fn custom_parameters(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect()
}

impl Outbound {
    pub fn new(stream_sid: &str) -> Outbound {
        Outbound {
            stream_sid: stream_sid.to_string(),
            sequence: 0,
            chunk: 0,
            samples: 0,
            buf: BytesMut::with_capacity(512),
        }
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    /// `start`: the call's ids, its parameters and the media format.
    pub fn start(
        &mut self,
        account_sid: &str,
        call_sid: &str,
        parameters: &Map<String, Value>,
    ) -> Utf8Bytes {
        let v = json!({
            "event": "start",
            "sequenceNumber": self.next_sequence(),
            "start": {
                "accountSid": account_sid,
                "streamSid": self.stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom_parameters(parameters),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.stream_sid,
        });
        Utf8Bytes::from(v.to_string())
    }

    /// `media`: the next frame (μ-law) of the continuous stream; its
    /// timestamp is the audio sent before it, in milliseconds.
    pub fn media(&mut self, ulaw: &[u8]) -> Utf8Bytes {
        self.sequence += 1;
        self.chunk += 1;
        let ts = self.samples / SAMPLES_PER_MS;
        self.samples += ulaw.len() as u64;
        let b = &mut self.buf;
        b.reserve(160 + self.stream_sid.len() + ulaw.len().div_ceil(3) * 4);
        // Writing to a BytesMut cannot fail.
        let _ = write!(
            b,
            r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":""#,
            self.sequence, self.chunk, ts
        );
        let at = b.len();
        b.resize(at + base64::encoded_len(ulaw.len(), true).unwrap_or(0), 0);
        let n = B64_OUT.encode_slice(ulaw, &mut b[at..]).unwrap_or(0);
        b.truncate(at + n);
        let _ = write!(b, r#""}},"streamSid":"{}"}}"#, self.stream_sid);
        let frozen = b.split().freeze();
        // Only ASCII was written.
        Utf8Bytes::try_from(frozen).unwrap_or_else(|_| Utf8Bytes::from_static("{}"))
    }

    /// `dtmf`: one key press of the callee.
    pub fn dtmf(&mut self, digit: char) -> Utf8Bytes {
        let v = json!({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": self.next_sequence(),
            "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
        });
        Utf8Bytes::from(v.to_string())
    }

    /// `mark`: the echo of a bot's mark once the audio before it has played.
    pub fn mark(&mut self, name: &str) -> Utf8Bytes {
        let v = json!({
            "event": "mark",
            "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid,
            "mark": {"name": name},
        });
        Utf8Bytes::from(v.to_string())
    }

    /// `stop`: the call is over.
    pub fn stop(&mut self, account_sid: &str, call_sid: &str) -> Utf8Bytes {
        let v = json!({
            "event": "stop",
            "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        });
        Utf8Bytes::from(v.to_string())
    }
}

/// A message from the bot that herald acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// μ-law audio to play (any length).
    Media(Bytes),
    Mark(String),
    Clear,
    /// An event herald does not act on (ignored).
    Other(String),
}

/// Why a bot's message was ignored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("not a Media Streams message: {0}")]
    Json(String),
    #[error("{0}: is required")]
    Missing(&'static str),
    #[error("media.payload: not base64 ({0})")]
    Base64(String),
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    mark: Option<MarkBody>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MarkBody {
    #[serde(default)]
    name: Option<String>,
}

/// Parses one message from the bot; audio is decoded into `audio` (reused).
pub fn parse_inbound(text: &[u8], audio: &mut BytesMut) -> Result<Inbound, InboundError> {
    let msg: Message<'_> =
        serde_json::from_slice(text).map_err(|e| InboundError::Json(e.to_string()))?;
    match msg.event.as_ref() {
        "media" => {
            let payload = msg
                .media
                .and_then(|m| m.payload)
                .ok_or(InboundError::Missing("media.payload"))?;
            let payload = payload.trim();
            audio.clear();
            audio.resize(base64::decoded_len_estimate(payload.len()), 0);
            let n = B64_IN
                .decode_slice(payload, &mut audio[..])
                .map_err(|e| InboundError::Base64(e.to_string()))?;
            audio.truncate(n);
            Ok(Inbound::Media(audio.split().freeze()))
        }
        "mark" => msg
            .mark
            .and_then(|m| m.name)
            .map(Inbound::Mark)
            .ok_or(InboundError::Missing("mark.name")),
        "clear" => Ok(Inbound::Clear),
        other => Ok(Inbound::Other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(m: &Utf8Bytes) -> Value {
        serde_json::from_str(m.as_str()).expect("valid JSON")
    }

    #[test]
    fn start_and_media_have_twilios_shape_and_count_every_message() {
        let mut o = Outbound::new("MZ0123");
        let mut p = Map::new();
        p.insert("clinic".into(), json!("North"));
        p.insert("slot".into(), json!(3));
        p.insert("vip".into(), json!(true));
        p.insert("none".into(), Value::Null);
        let s = json_of(&o.start("AC1", "CA1", &p));
        assert_eq!(s["event"], "start");
        assert_eq!(s["sequenceNumber"], "1");
        assert_eq!(s["streamSid"], "MZ0123");
        assert_eq!(s["start"]["streamSid"], "MZ0123");
        assert_eq!(s["start"]["accountSid"], "AC1");
        assert_eq!(s["start"]["callSid"], "CA1");
        assert_eq!(s["start"]["tracks"], json!(["inbound"]));
        assert_eq!(
            s["start"]["customParameters"],
            json!({"clinic": "North", "slot": "3", "vip": "true", "none": ""})
        );
        assert_eq!(
            s["start"]["mediaFormat"],
            json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        );
        let frame: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
        let m = json_of(&o.media(&frame));
        assert_eq!(m["event"], "media");
        assert_eq!(m["sequenceNumber"], "2");
        assert_eq!(m["streamSid"], "MZ0123");
        assert_eq!(m["media"]["track"], "inbound");
        assert_eq!(m["media"]["chunk"], "1");
        assert_eq!(m["media"]["timestamp"], "0");
        let payload = B64_OUT.decode(m["media"]["payload"].as_str().unwrap());
        assert_eq!(payload.unwrap(), frame);
        let m = json_of(&o.media(&frame));
        assert_eq!(
            (
                &m["sequenceNumber"],
                &m["media"]["chunk"],
                &m["media"]["timestamp"]
            ),
            (&json!("3"), &json!("2"), &json!("20"))
        );
        let d = json_of(&o.dtmf('7'));
        assert_eq!(
            d,
            json!({"event": "dtmf", "streamSid": "MZ0123", "sequenceNumber": "4",
                   "dtmf": {"track": "inbound_track", "digit": "7"}})
        );
        let k = json_of(&o.mark("a \"quoted\" name"));
        assert_eq!(
            k,
            json!({"event": "mark", "sequenceNumber": "5", "streamSid": "MZ0123",
                   "mark": {"name": "a \"quoted\" name"}})
        );
        let e = json_of(&o.stop("AC1", "CA1"));
        assert_eq!(
            e,
            json!({"event": "stop", "sequenceNumber": "6", "streamSid": "MZ0123",
                   "stop": {"accountSid": "AC1", "callSid": "CA1"}})
        );
        assert_eq!(
            json_of(&Utf8Bytes::from_static(CONNECTED))["protocol"],
            "Call"
        );
    }

    #[test]
    fn media_timestamps_count_the_audio_sent_before_each_frame() {
        let mut o = Outbound::new("MZ1");
        let ts = |m: Utf8Bytes| json_of(&m)["media"]["timestamp"].clone();
        assert_eq!(ts(o.media(&[0xFF; 160])), "0");
        assert_eq!(ts(o.media(&[0xFF; 240])), "20");
        assert_eq!(ts(o.media(&[0xFF; 160])), "50", "a 30 ms frame before");
        assert_eq!(ts(o.media(&[0xFF; 4])), "70");
        assert_eq!(
            ts(o.media(&[0xFF; 160])),
            "70",
            "half a millisecond is not one yet"
        );
        assert_eq!(ts(o.media(&[0xFF; 160])), "90");
    }

    #[test]
    fn bots_messages_are_parsed_and_bad_ones_are_refused_with_the_field() {
        let mut buf = BytesMut::new();
        let audio: Vec<u8> = (0..=255u8).collect();
        let msg = json!({"event": "media", "streamSid": "MZ1",
                         "media": {"payload": B64_OUT.encode(&audio)}});
        assert_eq!(
            parse_inbound(msg.to_string().as_bytes(), &mut buf),
            Ok(Inbound::Media(Bytes::from(audio.clone())))
        );
        // Escaped slashes and no padding.
        let unpadded = B64_OUT
            .encode(&audio[..10])
            .trim_end_matches('=')
            .replace('/', "\\/");
        let text = format!(r#"{{"event":"media","media":{{"payload":"{unpadded}"}}}}"#);
        assert_eq!(
            parse_inbound(text.as_bytes(), &mut buf),
            Ok(Inbound::Media(Bytes::copy_from_slice(&audio[..10])))
        );
        assert_eq!(
            parse_inbound(br#"{"event":"mark","mark":{"name":"m1"}}"#, &mut buf),
            Ok(Inbound::Mark("m1".into()))
        );
        assert_eq!(
            parse_inbound(br#"{"event":"clear","streamSid":"MZ1"}"#, &mut buf),
            Ok(Inbound::Clear)
        );
        assert_eq!(
            parse_inbound(br#"{"event":"hello","extra":[1,2]}"#, &mut buf),
            Ok(Inbound::Other("hello".into()))
        );
        assert_eq!(
            parse_inbound(br#"{"event":"mark","mark":{}}"#, &mut buf),
            Err(InboundError::Missing("mark.name"))
        );
        assert_eq!(
            parse_inbound(br#"{"event":"media"}"#, &mut buf),
            Err(InboundError::Missing("media.payload"))
        );
        assert!(matches!(
            parse_inbound(br#"{"event":"media","media":{"payload":"***"}}"#, &mut buf),
            Err(InboundError::Base64(_))
        ));
        for bad in [
            &b"not json"[..],
            b"{}",
            b"[1]",
            b"{\"event\":5}",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                parse_inbound(bad, &mut buf),
                Err(InboundError::Json(_))
            ));
        }
    }
}
