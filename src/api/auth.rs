//! API-key authentication for every /v1 route: the `X-API-Key` header is
//! hashed and looked up; the bootstrap key (HERALD_BOOTSTRAP_API_KEY) is
//! compared by hash too. Keys never appear in logs. A stored key found live
//! is taken without a database read for [`VALID_FOR`] after (a key revoked
//! in the database stops working within that time); a key not found is
//! looked up every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::store::apikeys::hash_key;
use crate::store::Store;

/// How long a stored key found live is taken without looking it up again.
pub const VALID_FOR: Duration = Duration::from_secs(1);
/// Hashes remembered at most (the oldest go first).
const REMEMBERED: usize = 1_024;

/// Hash → (name, when found live).
type LiveKeys = HashMap<String, (Arc<str>, Instant)>;

#[derive(Clone)]
pub struct AuthState {
    pub store: Store,
    /// Hash of the bootstrap key, when one is configured.
    pub bootstrap_hash: Option<Arc<str>>,
    /// Hashes of stored keys found live: their names, and when.
    pub live: Arc<Mutex<LiveKeys>>,
}

impl AuthState {
    pub fn new(store: Store, bootstrap_hash: Option<Arc<str>>) -> AuthState {
        AuthState {
            store,
            bootstrap_hash,
            live: Default::default(),
        }
    }

    fn seen_live(&self, hash: &str) -> Option<Arc<str>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(hash)
            .filter(|(_, at)| at.elapsed() < VALID_FOR)
            .map(|(name, _)| name.clone())
    }

    fn remember(&self, hash: String, name: Arc<str>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= REMEMBERED {
            live.retain(|_, (_, at)| at.elapsed() < VALID_FOR);
            if live.len() >= REMEMBERED {
                live.clear();
            }
        }
        live.insert(hash, (name, Instant::now()));
    }
}

/// The name of the API key a request came with (`bootstrap` for the
/// bootstrap key), in the request's extensions for handlers that record who
/// asked; `console` for the console's cookie on an event stream.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<str>);

pub async fn require_api_key(
    State(auth): State<AuthState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(key) = req.headers().get("x-api-key") else {
        // A browser's EventSource cannot send headers: the console's
        // session cookie opens the GET event streams (and nothing else).
        if is_event_stream(&req) && crate::ui::cookie_opens(&auth, req.headers()).await? {
            req.extensions_mut().insert(Caller(Arc::from("console")));
            return Ok(next.run(req).await);
        }
        return Err(ApiError::unauthorized("missing X-API-Key header"));
    };
    let key = key
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid API key"))?;
    match key_name(&auth, hash_key(key)).await? {
        Some(name) => {
            req.extensions_mut().insert(Caller(name));
            Ok(next.run(req).await)
        }
        None => Err(ApiError::unauthorized("invalid API key")),
    }
}

/// A GET of one of the SSE routes (`…/events`).
fn is_event_stream(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == axum::http::Method::GET
        && path.ends_with("/events")
        && !path.contains("/targets/")
}

/// Whether `key` is the bootstrap key or a live stored key.
pub async fn key_is_valid(auth: &AuthState, key: &str) -> Result<bool, ApiError> {
    key_hash_is_valid(auth, hash_key(key)).await
}

/// The name of the key with this hash while it is live: `bootstrap` for
/// the bootstrap key (the console's sessions name their key).
pub async fn live_key_name(auth: &AuthState, hash: &str) -> Result<Option<String>, ApiError> {
    if auth.bootstrap_hash.as_deref() == Some(hash) {
        return Ok(Some("bootstrap".into()));
    }
    Ok(auth.store.api_key_name_by_hash(hash).await?)
}

/// As [`key_is_valid`], from the key's hash.
pub async fn key_hash_is_valid(auth: &AuthState, hash: String) -> Result<bool, ApiError> {
    Ok(key_name(auth, hash).await?.is_some())
}

/// The name of the live key with this hash (`bootstrap` for the bootstrap
/// key); a stored key found live is remembered for [`VALID_FOR`].
async fn key_name(auth: &AuthState, hash: String) -> Result<Option<Arc<str>>, ApiError> {
    if auth.bootstrap_hash.as_deref() == Some(hash.as_str()) {
        return Ok(Some(Arc::from("bootstrap")));
    }
    if let Some(name) = auth.seen_live(&hash) {
        return Ok(Some(name));
    }
    let name: Option<Arc<str>> = auth.store.api_key_name_by_hash(&hash).await?.map(Arc::from);
    if let Some(name) = &name {
        auth.remember(hash, name.clone());
    }
    Ok(name)
}
