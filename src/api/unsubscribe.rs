//! `/unsubscribe/{id}`: the one-click unsubscribe URL of marketing mail
//! (RFC 8058; no API key). A `POST` suppresses the message's recipients on
//! the e-mail channel; a `GET` shows a one-button form for a browser.

use utoipa_axum::routes;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde_json::Value;

use super::error::ApiError;
use super::openapi::ApiRouter;
use crate::store::Store;

/// The unsubscribe routes (outside `/v1`, without an API key).
pub fn router(store: Store) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(unsubscribe_page, unsubscribe))
        .with_state(store)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The recipients of a marketing e-mail, for its unsubscribe link.
async fn unsubscribe_targets(store: &Store, id: &str) -> Option<Vec<String>> {
    uuid::Uuid::try_parse(id).ok()?;
    let m = store.get_message(id).await.ok()?;
    let r: Value = serde_json::from_str(&m.rendered).ok()?;
    r.get("list_unsubscribe").filter(|v| !v.is_null())?;
    let to = r.get("to")?.as_array()?;
    Some(
        to.iter()
            .filter_map(|a| a.get("email").and_then(Value::as_str))
            .map(str::to_ascii_lowercase)
            .collect(),
    )
}

const UNSUBSCRIBE_GONE: &str = "This unsubscribe link is not valid.";

/// RFC 8058 one-click: `POST` with `List-Unsubscribe=One-Click`.
/// One-click unsubscribe (RFC 8058): the address is suppressed for e-mail.
#[utoipa::path(post, path = "/unsubscribe/{id}", tag = "tracking",
    responses((status = 200, description = "Unsubscribed.", content_type = "text/html", body = String),
        (status = 404, description = "No such message.", content((String = "text/html"), (super::openapi::schemas::ErrorRef = "application/json"))),
        (status = 503, description = "The database does not answer; try again.", content_type = "text/html", body = String)))]
async fn unsubscribe(State(store): State<Store>, Path(id): Path<String>) -> impl IntoResponse {
    match unsubscribe_targets(&store, &id).await {
        None => (StatusCode::NOT_FOUND, Html(UNSUBSCRIBE_GONE.to_string())),
        Some(addresses) => {
            for a in &addresses {
                if let Err(e) = store
                    .add_suppression("email", a, "unsubscribed", now())
                    .await
                {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Html(ApiError::internal(e).message),
                    );
                }
            }
            (StatusCode::OK, Html("You are unsubscribed.".to_string()))
        }
    }
}

/// A person following the link in a browser gets a one-button form.
/// The page an e-mail's unsubscribe link opens (it asks before unsubscribing).
#[utoipa::path(get, path = "/unsubscribe/{id}", tag = "tracking",
    responses((status = 200, description = "A page with the button.", content_type = "text/html", body = String),
        (status = 404, description = "No such message, or its link has expired.", content((String = "text/html"), (super::openapi::schemas::ErrorRef = "application/json")))))]
async fn unsubscribe_page(State(store): State<Store>, Path(id): Path<String>) -> impl IntoResponse {
    match unsubscribe_targets(&store, &id).await {
        None => (StatusCode::NOT_FOUND, Html(UNSUBSCRIBE_GONE.to_string())),
        Some(_) => (
            StatusCode::OK,
            Html(
                "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
                 <form method=post><input type=hidden name=List-Unsubscribe value=One-Click>\
                 <button type=submit>Unsubscribe</button></form>"
                    .to_string(),
            ),
        ),
    }
}
