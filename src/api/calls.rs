//! Calls: one row per attempt (campaign attempts; one-off calls later).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::ListQuery;
use crate::domain::{FieldError, Outcome};
use crate::store::Store;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/calls", get(list))
        .route("/calls/{id}", get(read))
        .with_state(store)
}

async fn list(
    State(store): State<Store>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    let outcome = match q.get("outcome") {
        None => None,
        Some(o) => Some(
            Outcome::parse(o)
                .ok_or_else(|| FieldError::new("outcome", format!("unknown outcome {o:?}")))?,
        ),
    };
    let page = store
        .list_calls(
            q.get("campaign_id"),
            q.get("target_id"),
            outcome.map(|o| o.as_str()),
            &q.page()?,
        )
        .await?;
    Ok(Json(serde_json::to_value(page).expect("page serializes")))
}

async fn read(State(store): State<Store>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(
        store
            .get_call(&id)
            .await
            .map_err(|e| ApiError::from_store(e, "call", &id))?,
    ))
}
