//! The do-not-call list: E.164 numbers never dialed (checked right before each INVITE).
//! A path that is not a valid number is a 422 naming `number`.

use utoipa_axum::routes;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ts, JsonBody};
use super::openapi::{schemas as doc, ApiRouter};
use crate::domain::destination::validate_e164;
use crate::domain::fields::{check_text, Fields, MAX_STRING_CHARS};
use crate::domain::FieldError;
use crate::store::Store;

/// Longest reason stored with a number.
pub const MAX_REASON_CHARS: usize = 500;

pub fn router(store: Store) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(read, remove))
        .with_state(store)
}

pub(crate) fn number_field(field: &str, n: &str) -> Result<String, FieldError> {
    let n = n.trim();
    validate_e164(n).map_err(|r| FieldError::new(field, r))?;
    Ok(n.to_string())
}

/// `{"number": "+1…", "reason": "…"}` or `{"numbers": [...]}`.
#[utoipa::path(post, path = "/dnc", tag = "dnc", request_body = doc::DncAdd,
    responses((status = 201, description = "The numbers added (in E.164).", body = doc::DncAdded)))]
async fn add(
    State(store): State<Store>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["number", "numbers", "reason"])?;
    let reason = f
        .str_max("reason", MAX_REASON_CHARS)?
        .unwrap_or("requested");
    if f.has("number") && f.has("numbers") {
        return Err(f
            .err("number", "give either number or numbers, not both")
            .into());
    }
    let mut numbers = Vec::new();
    if let Some(n) = f.str_opt("number")? {
        numbers.push(number_field("number", n)?);
    }
    for (i, n) in f.array_opt("numbers")?.into_iter().flatten().enumerate() {
        let field = format!("numbers[{i}]");
        let n = n
            .as_str()
            .ok_or_else(|| FieldError::new(&field, "must be a string"))?;
        check_text(n, false, MAX_STRING_CHARS).map_err(|why| FieldError::new(&field, why))?;
        numbers.push(number_field(&field, n)?);
    }
    if numbers.is_empty() {
        return Err(FieldError::new("number", "is required").into());
    }
    let now = chrono::Utc::now().timestamp_millis();
    for n in &numbers {
        store.add_dnc(n, reason, now).await?;
    }
    Ok((StatusCode::CREATED, Json(json!({"added": numbers}))))
}

/// The `{number}` of the path, checked as E.164.
fn path_number(path: Result<Path<String>, PathRejection>) -> Result<String, FieldError> {
    match path {
        Ok(Path(n)) => number_field("number", &n),
        Err(_) => Err(FieldError::new("number", "is not valid UTF-8")),
    }
}

/// Whether a number is on the list, why and since when.
#[utoipa::path(get, path = "/dnc/{number}", tag = "dnc",
    responses((status = 200, description = "On the list.", body = doc::DncEntry),
        (status = 404, description = "Not on the list.", body = doc::ErrorRef)))]
async fn read(
    State(store): State<Store>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let number = path_number(path)?;
    match store.get_dnc(&number).await? {
        Some((reason, at)) => Ok(Json(
            json!({"number": number, "reason": reason, "created_at": ts(at)}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{number} is not on the do-not-call list"),
        )),
    }
}

/// Takes a number off the list.
#[utoipa::path(delete, path = "/dnc/{number}", tag = "dnc",
    responses((status = 204, description = "Removed."), (status = 404, description = "Not on the list.", body = doc::ErrorRef)))]
async fn remove(
    State(store): State<Store>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let number = path_number(path)?;
    if store.delete_dnc(&number).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{number} is not on the do-not-call list"),
        ))
    }
}
