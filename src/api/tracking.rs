//! The e-mail tracking routes, opened by mail clients (no API key):
//! `GET /t/o/{message}.gif` counts an open and answers a 1×1 GIF;
//! `GET /t/c/{message}/{n}` counts a click and redirects (302) to the
//! message's `n`th link as it was before tracking. Only a message's own
//! links are redirected to: anything else is a 404, never an open redirect.

use utoipa_axum::routes;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::openapi::ApiRouter;
use crate::message::tracking::PIXEL_GIF;
use crate::store::Store;

pub fn router(store: Store) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(click))
        .with_state(store)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An e-mail's open pixel (`{id}.gif`): records the open, answers a 1×1 GIF whatever the id.
#[utoipa::path(get, path = "/t/o/{file}", tag = "tracking",
    responses((status = 200, description = "A 1×1 transparent GIF.", content_type = "image/gif", body = Vec<u8>)))]
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

/// A tracked link in an e-mail: records the click, redirects to the link.
#[utoipa::path(get, path = "/t/c/{id}/{n}", tag = "tracking",
    responses((status = 302, description = "To the link's address (Location)."),
        (status = 404, description = "No such link.", body = super::openapi::schemas::ErrorRef)))]
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
