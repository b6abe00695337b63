//! API-key authentication for every /v1 route: the `X-API-Key` header is
//! hashed and looked up; the bootstrap key (HERALD_BOOTSTRAP_API_KEY) is
//! compared by hash too. Keys never appear in logs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::store::apikeys::hash_key;
use crate::store::Store;

#[derive(Clone)]
pub struct AuthState {
    pub store: Store,
    /// Hash of the bootstrap key, when one is configured.
    pub bootstrap_hash: Option<Arc<str>>,
}

pub async fn require_api_key(
    State(auth): State<AuthState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = req
        .headers()
        .get("x-api-key")
        .ok_or_else(|| ApiError::unauthorized("missing X-API-Key header"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid API key"))?;
    if key_is_valid(&auth, key).await? {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::unauthorized("invalid API key"))
    }
}

/// Whether `key` is the bootstrap key or a live stored key.
pub async fn key_is_valid(auth: &AuthState, key: &str) -> Result<bool, ApiError> {
    let hash = hash_key(key);
    if auth.bootstrap_hash.as_deref() == Some(hash.as_str()) {
        return Ok(true);
    }
    Ok(auth.store.api_key_name_by_hash(&hash).await?.is_some())
}
