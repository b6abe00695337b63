//! Request helpers: a JSON body extractor with API-shaped errors, list query
//! parameters, and timestamp rendering.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
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
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
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
        Ok(PageRequest::parse(
            size,
            self.0.get("page_token").map(String::as_str),
        )?)
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
