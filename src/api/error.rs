//! The one error type of the REST API and its JSON shape:
//! `{"error": {"code": "...", "message": "...", "details": ...}}`, with
//! `details` always present (`null` when there is nothing more to say).
//! [`json_errors`] puts the responses axum itself makes (405, rejections)
//! into the same shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(noun: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {noun} with id {id:?}"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// A `page_token` that this server did not issue.
    pub fn invalid_page_token(e: FieldError) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_page_token",
            e.to_string(),
        )
        .with_details(json!({"field": e.field, "reason": e.reason}))
    }

    /// Several invalid fields at once: a 422 naming the first in its message
    /// and every one in `details.errors`.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let Some(first) = errors.first().cloned() else {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "invalid",
            );
        };
        let message = match errors.len() {
            1 => first.to_string(),
            n => format!("{first} (and {} more in details.errors)", n - 1),
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
        .with_details(json!({"field": first.field, "reason": first.reason, "errors": errors}))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// Maps a store error, naming the missing resource on NotFound.
    pub fn from_store(e: StoreError, noun: &str, id: &str) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(noun, id),
            other => other.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.to_string(),
        )
        .with_details(json!({"field": e.field, "reason": e.reason}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            StoreError::Conflict(m) => ApiError::conflict(m),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message, "details": self.details});
        (self.status, Json(json!({ "error": body }))).into_response()
    }
}

/// The error code for a status that axum answered by itself.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Longest text of axum's own error body kept in the message.
const MAX_REJECTION_TEXT: usize = 512;

/// Rewrites an error response that is not JSON (axum's 405 and extractor
/// rejections, which are empty or plain text) into the API's error shape,
/// keeping its status and headers (`Allow` on a 405). JSON errors pass as
/// they are.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if allow.is_empty() {
            // axum adds `Allow` after this layer has run.
            format!("{method} is not allowed here; the Allow header lists the methods that are")
        } else {
            format!("{method} is not allowed here; allowed: {allow}")
        }
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text.chars().take(MAX_REJECTION_TEXT).collect()
    };
    let body = json!({"error": {"code": code_of(status), "message": message, "details": null}});
    let bytes = serde_json::to_vec(&body).expect("error body serializes");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

pub type ApiResult<T> = Result<T, ApiError>;
