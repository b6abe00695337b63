//! The e-mail tracking routes, opened by mail clients (no API key):
//! `GET /t/o/{message}.gif` counts an open and answers a 1×1 GIF;
//! `GET /t/c/{message}/{n}` counts a click and redirects (302) to the
//! message's `n`th link as it was before tracking. Only a message's own
//! links are redirected to: anything else is a 404, never an open redirect.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use crate::message::tracking::PIXEL_GIF;
use crate::store::Store;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/t/o/{file}", get(open))
        .route("/t/c/{id}/{n}", get(click))
        .with_state(store)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn open(State(store): State<Store>, Path(file): Path<String>) -> ApiResult<Response> {
    let id = file.strip_suffix(".gif").unwrap_or(&file);
    // The pixel is answered whatever the id: a mail client gets no error page.
    if id.len() <= 64 {
        if let Err(e) = store.record_engagement(id, None, now()).await {
            tracing::warn!(error = %e, "counting an e-mail open failed");
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL_GIF.to_vec(),
    )
        .into_response())
}

async fn click(
    State(store): State<Store>,
    Path((id, n)): Path<(String, usize)>,
) -> ApiResult<Response> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such link");
    let rendered = store.tracked_rendering(&id).await?.ok_or_else(not_found)?;
    let rendered: Value = serde_json::from_str(&rendered).map_err(ApiError::internal)?;
    let url = rendered["tracking"]["links"]
        .get(n)
        .and_then(Value::as_str)
        .ok_or_else(not_found)?
        .to_string();
    store.record_engagement(&id, Some(&url), now()).await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}
