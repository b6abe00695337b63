//! Request helpers: a JSON body extractor and a path-id extractor with
//! API-shaped errors, list query parameters (id filters, paging), and
//! timestamp rendering. Anything that cannot be an id is answered here and
//! never reaches a query.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use chrono::SecondsFormat;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::FieldError;
use crate::store::{from_ms, PageRequest};

/// A JSON request body as a `Value`; errors come out in the API's shape.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON request body, its media type checked, not parsed yet (for a body
/// whose large parts are read one at a time).
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !(ct.starts_with("application/json") || ct.contains("+json")) {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("expected Content-Type application/json, got {ct:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("request body is larger than api.body_limit_bytes")
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

/// Whether `s` can be an id herald issued: a UUID in canonical form.
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

/// The resource noun of a route's `{id}`: the singular of the segment before it
/// (`/v1/outdials/{id}/targets` → "outdial").
fn noun_of(route: &str) -> &str {
    let mut prev = None;
    for seg in route.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('{') {
            break;
        }
        prev = Some(seg);
    }
    let seg = prev.unwrap_or("resource");
    seg.strip_suffix('s').unwrap_or(seg)
}

/// The `{id}` of a route. A path segment that is not valid UTF-8 or cannot be
/// an id is a 404 naming the resource, as an id that is not stored would be.
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let noun = noun_of(&route);
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if is_id(&id) => Ok(IdPath(id)),
            Ok(Path(id)) => {
                let shown: String = id.chars().take(64).collect();
                Err(ApiError::not_found(noun, &shown))
            }
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no {noun} with that id: the id in the path is not valid UTF-8"),
            )),
        }
    }
}

/// Query parameters of list routes.
pub struct ListQuery(pub HashMap<String, String>);

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let size = match self.0.get("page_size") {
            None => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                FieldError::new("page_size", format!("must be an integer, got {s:?}"))
            })?),
        };
        let size = PageRequest::parse(size, None)?.size;
        let mut page = PageRequest::parse(None, self.0.get("page_token").map(String::as_str))
            .map_err(ApiError::invalid_page_token)?;
        page.size = size;
        Ok(page)
    }

    /// A filter that names a resource by id: absent, or an id (422 otherwise).
    pub fn id(&self, key: &str) -> Result<Option<&str>, FieldError> {
        match self.get(key) {
            Some(v) if !is_id(v) => Err(FieldError::new(
                key,
                format!(
                    "must be an id (a UUID as herald returns it), got {:?}",
                    v.chars().take(64).collect::<String>()
                ),
            )),
            other => Ok(other),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Epoch milliseconds as an RFC 3339 UTC string.
pub fn ts(ms: i64) -> Value {
    Value::String(from_ms(ms).to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn ts_opt(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_ids() {
        let id = "019b0000-0000-7000-8000-00000000000a";
        // (text, is an id)
        let cases = [
            (id, true),
            ("019B0000-0000-7000-8000-00000000000A", false),
            ("019b0000000070008000000000000000", false),
            ("{019b0000-0000-7000-8000-00000000000a}", false),
            ("", false),
            ("\u{0}", false),
            ("nope", false),
            ("019b0000-0000-7000-8000-00000000000a\u{0}", false),
        ];
        for (text, ok) in cases {
            assert_eq!(is_id(text), ok, "{text:?}");
        }
    }

    #[test]
    fn the_noun_is_the_segment_before_the_id() {
        let cases = [
            ("/v1/outdials/{id}", "outdial"),
            ("/v1/outdials/{id}/targets", "outdial"),
            ("/v1/calls/{id}/result", "call"),
            ("/v1/campaigns/{id}/events", "campaign"),
            ("", "resource"),
        ];
        for (route, noun) in cases {
            assert_eq!(noun_of(route), noun, "{route}");
        }
    }
}
