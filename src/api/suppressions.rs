//! `/v1/suppressions`: addresses never sent to, per channel (`email`: an
//! e-mail address, compared lower-cased; `sms`: an E.164 number). Checked
//! right before each send; bounces and one-click unsubscribes add to it.

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
use crate::domain::fields::Fields;
use crate::domain::FieldError;
use crate::message::request::validate_email;
use crate::store::Store;

pub fn router(store: Store) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(read, remove))
        .with_state(store)
}

/// The address in its stored form, or why it is not one of the channel's.
fn normalise(channel: &str, address: &str) -> Result<String, FieldError> {
    match channel {
        "email" => validate_email(address)
            .map(|a| a.to_ascii_lowercase())
            .map_err(|r| FieldError::new("address", r)),
        "sms" => validate_e164(address.trim())
            .map(|()| address.trim().to_string())
            .map_err(|r| FieldError::new("address", r)),
        other => Err(FieldError::new(
            "channel",
            format!(
                "must be email or sms, got {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// Suppresses an address on a channel: nothing is sent to it again.
#[utoipa::path(post, path = "/suppressions", tag = "suppressions", request_body = doc::SuppressionAdd,
    responses((status = 201, description = "Suppressed.", body = doc::Suppression)))]
async fn add(
    State(store): State<Store>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["channel", "address", "reason"])?;
    let channel = f.str_req("channel")?;
    let address = normalise(channel, f.str_req("address")?)?;
    let reason = f.str_max("reason", 500)?.unwrap_or("requested");
    let now = chrono::Utc::now().timestamp_millis();
    store
        .add_suppression(channel, &address, reason, now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"channel": channel, "address": address, "reason": reason, "created_at": ts(now)}),
        ),
    ))
}

fn path(p: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), ApiError> {
    let Ok(Path((channel, address))) = p else {
        return Err(FieldError::new("address", "is not valid UTF-8").into());
    };
    let address = normalise(&channel, &address)?;
    Ok((channel, address))
}

/// Whether an address is suppressed.
#[utoipa::path(get, path = "/suppressions/{channel}/{address}", tag = "suppressions",
    responses((status = 200, description = "Suppressed.", body = doc::Suppression)))]
async fn read(
    State(store): State<Store>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (channel, address) = path(p)?;
    match store.get_suppression(&channel, &address).await? {
        Some((reason, at)) => Ok(Json(
            json!({"channel": channel, "address": address, "reason": reason, "created_at": ts(at)}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{address} is not suppressed on {channel}"),
        )),
    }
}

/// Lifts a suppression.
#[utoipa::path(delete, path = "/suppressions/{channel}/{address}", tag = "suppressions",
    responses((status = 204, description = "Lifted.")))]
async fn remove(
    State(store): State<Store>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let (channel, address) = path(p)?;
    if store.delete_suppression(&channel, &address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{address} is not suppressed on {channel}"),
        ))
    }
}
