//! Agent configurations: what answers the callee.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::destination::validate_sip_uri;
use crate::domain::fields::{Fields, MAX_DETAIL_CHARS};
use crate::domain::FieldError;

/// Which kind of agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// A WebSocket bot (Twilio Media Streams protocol) at `url`.
    MediaStream,
    /// A second SIP call leg to `url`.
    Sip,
    /// herald plays `script` itself.
    Script,
}

impl AgentKind {
    pub const ALL: [AgentKind; 3] = [AgentKind::MediaStream, AgentKind::Sip, AgentKind::Script];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::MediaStream => "media_stream",
            AgentKind::Sip => "sip",
            AgentKind::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A parsed agent configuration, as stored. `url` is set for the
/// `media_stream` and `sip` kinds, `script` for the `script` kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    #[serde(default)]
    pub detail: String,
    pub kind: AgentKind,
    #[serde(default)]
    pub url: Option<String>,
    /// Passed to the agent with every call (`customParameters`, `X-Herald-*`).
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Sessions the agent may run at once on one node.
    #[serde(default = "AgentSpec::default_max_concurrent_sessions")]
    pub max_concurrent_sessions: u32,
    /// A script object or a shipped script's name.
    #[serde(default)]
    pub script: Option<Value>,
    /// A media_stream agent's socket opens at `answer` (the default, as
    /// Twilio does: a bot never sees a call nobody answered) or at
    /// `ringing` (ready the moment the callee answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
}

impl AgentSpec {
    /// `max_concurrent_sessions` when an agent does not say.
    pub const DEFAULT_MAX_CONCURRENT_SESSIONS: u32 = 100;

    fn default_max_concurrent_sessions() -> u32 {
        Self::DEFAULT_MAX_CONCURRENT_SESSIONS
    }

    /// Parses a request body. A script agent's `script` is only checked for
    /// its shape here: it is compiled, and its prompts loaded, when the
    /// agent is built (before it is stored).
    pub fn parse(v: &Value) -> Result<AgentSpec, FieldError> {
        let f = Fields::new(v, "")?;
        f.deny_unknown(&[
            "name",
            "detail",
            "kind",
            "url",
            "parameters",
            "max_concurrent_sessions",
            "script",
            "connect",
        ])?;
        let name = f.name("name", 200)?;
        let kind_name = f.str_req("kind")?;
        let kind = AgentKind::parse(kind_name).ok_or_else(|| {
            let names: Vec<_> = AgentKind::ALL.iter().map(|k| k.as_str()).collect();
            f.err(
                "kind",
                format!("must be one of {}, got {kind_name:?}", names.join(", ")),
            )
        })?;
        let url = f.str_opt("url")?.map(str::trim);
        let script = f.get("script").cloned();
        match kind {
            AgentKind::MediaStream => {
                let u = url.ok_or_else(|| {
                    f.err(
                        "url",
                        "is required for a media_stream agent (ws:// or wss://)",
                    )
                })?;
                let rest = u
                    .strip_prefix("ws://")
                    .or_else(|| u.strip_prefix("wss://"))
                    .ok_or_else(|| {
                        f.err("url", format!("must start with ws:// or wss://, got {u:?}"))
                    })?;
                if rest.is_empty() || rest.starts_with('/') || u.contains(char::is_whitespace) {
                    return Err(f.err("url", format!("{u:?} has no host")));
                }
            }
            AgentKind::Sip => {
                let u =
                    url.ok_or_else(|| f.err("url", "is required for a sip agent (a SIP URI)"))?;
                validate_sip_uri(u).map_err(|r| f.err("url", r))?;
            }
            AgentKind::Script => {
                match &script {
                    Some(Value::Object(_) | Value::String(_)) => {}
                    Some(_) => {
                        return Err(f.err(
                            "script",
                            "must be an object (the script) or a shipped script's name",
                        ))
                    }
                    None => return Err(f.err("script", "is required for a script agent")),
                }
                if url.is_some() {
                    return Err(f.err("url", "a script agent has no url"));
                }
            }
        }
        let connect = match f.str_opt("connect")? {
            None => None,
            Some(_) if kind != AgentKind::MediaStream => {
                return Err(f.err("connect", "only a media_stream agent has connect"))
            }
            Some(_) => Some(f.choice_or("connect", &["answer", "ringing"], "answer")?),
        };
        Ok(AgentSpec {
            connect,
            name,
            detail: f
                .text_opt("detail", MAX_DETAIL_CHARS)?
                .unwrap_or_default()
                .to_string(),
            kind,
            url: url.map(str::to_string),
            parameters: f.map_opt("parameters", 16 * 1024)?,
            max_concurrent_sessions: f.int_or(
                "max_concurrent_sessions",
                1,
                100_000,
                Self::DEFAULT_MAX_CONCURRENT_SESSIONS,
            )?,
            script,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &Value) -> Result<AgentSpec, FieldError> {
        AgentSpec::parse(v)
    }

    #[test]
    fn agents_need_what_their_kind_needs() {
        let e = |v: Value| parse(&v).unwrap_err().field;
        assert_eq!(e(json!({"name": "a", "kind": "robot"})), "kind");
        assert_eq!(e(json!({"name": "a", "kind": "media_stream"})), "url");
        assert_eq!(
            e(json!({"name": "a", "kind": "media_stream", "url": "http://x"})),
            "url"
        );
        assert_eq!(
            e(json!({"name": "a", "kind": "sip", "url": "agent@x"})),
            "url"
        );
        assert_eq!(e(json!({"name": "a", "kind": "script"})), "script");
        assert_eq!(
            e(
                json!({"name": "a", "kind": "media_stream", "url": "ws://h/s", "max_concurrent_sessions": 0})
            ),
            "max_concurrent_sessions"
        );
        assert_eq!(
            e(
                json!({"name": "a", "kind": "media_stream", "url": "ws://h/s", "max_concurrent_sessions": "25"})
            ),
            "max_concurrent_sessions"
        );
        let ok = parse(
            &json!({"name": "bot", "kind": "media_stream", "url": "ws://127.0.0.1:8765/stream"}),
        )
        .unwrap();
        assert_eq!(ok.max_concurrent_sessions, 100);
    }

    #[test]
    fn a_script_is_an_object_or_a_name_and_is_compiled_later() {
        let e = |v: Value| parse(&v).unwrap_err().field;
        assert_eq!(
            e(json!({"name": "a", "kind": "script", "script": 5})),
            "script"
        );
        assert_eq!(
            e(json!({"name": "a", "kind": "script", "script": "x", "url": "ws://h/s"})),
            "url"
        );
        assert_eq!(
            e(json!({"name": "a", "kind": "script", "script": "x", "detail": "a\u{0}b"})),
            "detail"
        );
        // Not compiled here: an unknown step is the agent builder's to refuse.
        let ok = parse(&json!({"name": "a", "kind": "script", "script": {"start": "x"}})).unwrap();
        assert_eq!(ok.kind, AgentKind::Script);
    }

    #[test]
    fn the_stored_document_keeps_its_shape() {
        let a = parse(&json!({"name": "s", "kind": "sip", "url": " sip:desk@127.0.0.1:5070 "}))
            .unwrap();
        assert_eq!(
            super::super::to_document(&a),
            json!({
                "name": "s", "detail": "", "kind": "sip", "url": "sip:desk@127.0.0.1:5070",
                "parameters": {}, "max_concurrent_sessions": 100, "script": null,
            })
        );
    }
}
