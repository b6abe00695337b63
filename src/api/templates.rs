//! `/v1/templates`: create, read (by id or code), list, change (a new
//! immutable version each time), activate / deactivate, render a preview,
//! delete. Validation and rendering are `message::template`'s; this file
//! maps bodies to drafts and drafts to JSON.

use utoipa_axum::routes;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ts, IdPath, JsonBody, ListQuery};
use super::openapi::{schemas as doc, ApiRouter, Paging};
use crate::domain::fields::Fields;
use crate::domain::FieldError;
use crate::message::sms_text;
use crate::message::template::{self, Channel, RenderError, TemplateParts, VariableSpec};
use crate::store::templates::{TemplateDraft, TemplateRow};
use crate::store::{Store, StoreError};

const PART_KEYS: [&str; 7] = [
    "subject_template",
    "body_html_template",
    "body_text_template",
    "body_template",
    "provider_template",
    "track_opens",
    "track_clicks",
];
const MAX_CODE_CHARS: usize = 100;

pub fn router(store: Store) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read_by_code))
        .routes(routes!(read, change, remove))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(render))
        .with_state(store)
}

/// A template's code: letters, digits, `_`, `-` and `.`, 1–100 characters.
fn check_code(f: &Fields<'_>, code: &str) -> Result<(), FieldError> {
    let ok = !code.is_empty()
        && code.chars().count() <= MAX_CODE_CHARS
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(f.err(
            "code",
            format!("must be 1 to {MAX_CODE_CHARS} letters, digits, '_', '-' or '.', got {code:?}"),
        ))
    }
}

/// The typed pieces of a template body (complete, as after a merge).
pub(crate) fn draft_of(
    body: &Value,
) -> Result<(TemplateDraft, Channel, Vec<VariableSpec>, TemplateParts), ApiError> {
    let f = Fields::new(body, "")?;
    let mut allowed = vec!["name", "code", "channel", "variables"];
    allowed.extend(PART_KEYS);
    f.deny_unknown(&allowed)?;
    let name = f.name("name", 200)?;
    let code = f.str_req("code")?.trim().to_string();
    check_code(&f, &code)?;
    let channel_name = f.str_req("channel")?;
    let channel: Channel = serde_json::from_value(Value::String(channel_name.to_string()))
        .map_err(|_| {
            f.err(
                "channel",
                format!("must be email, sms, whatsapp or slack, got {channel_name:?}"),
            )
        })?;
    let variables: Vec<VariableSpec> = match f.get("variables") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            f.err(
                "variables",
                format!("must be a list of {{\"key\", \"required\", \"default\"}}: {e}"),
            )
        })?,
    };
    let mut parts_obj = serde_json::Map::new();
    for k in PART_KEYS {
        if let Some(v) = f.get(k) {
            parts_obj.insert(k.to_string(), v.clone());
        }
    }
    let parts: TemplateParts = serde_json::from_value(Value::Object(parts_obj))
        .map_err(|e| FieldError::new("(body)", format!("template parts: {e}")))?;
    template::validate(channel, &variables, &parts).map_err(ApiError::fields)?;
    let draft = TemplateDraft {
        code,
        name,
        channel: channel.as_str().to_string(),
        variables: serde_json::to_string(&variables).map_err(ApiError::internal)?,
        parts: serde_json::to_string(&parts).map_err(ApiError::internal)?,
    };
    Ok((draft, channel, variables, parts))
}

/// The stored template's typed pieces.
pub fn typed(t: &TemplateRow) -> Result<(Channel, Vec<VariableSpec>, TemplateParts), ApiError> {
    let channel: Channel =
        serde_json::from_value(Value::String(t.channel.clone())).map_err(ApiError::internal)?;
    let variables: Vec<VariableSpec> =
        serde_json::from_str(&t.variables).map_err(ApiError::internal)?;
    let parts: TemplateParts = serde_json::from_str(&t.parts).map_err(ApiError::internal)?;
    Ok((channel, variables, parts))
}

pub fn template_json(t: &TemplateRow) -> Value {
    let mut v = json!({
        "id": t.id,
        "code": t.code,
        "name": t.name,
        "channel": t.channel,
        "status": t.status,
        "version": t.version,
        "variables": serde_json::from_str::<Value>(&t.variables).unwrap_or(Value::Null),
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
    });
    if let (Value::Object(o), Ok(Value::Object(parts))) =
        (&mut v, serde_json::from_str::<Value>(&t.parts))
    {
        for (k, p) in parts {
            if !p.is_null() {
                o.insert(k, p);
            }
        }
    }
    v
}

/// Maps a render failure: missing variables are a 422 listing every key.
pub fn render_error(e: RenderError) -> ApiError {
    match e {
        RenderError::MissingVariables(keys) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_variables",
            format!("template variables missing: {}", keys.join(", ")),
        )
        .with_details(json!({"field": "template_variables", "missing": keys})),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "render_failed",
            other.to_string(),
        ),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates a template as a draft (checked: every variable used is declared).
#[utoipa::path(post, path = "/templates", tag = "templates", request_body = doc::TemplateInput,
    responses((status = 201, description = "Created.", body = doc::Template),
        (status = 409, description = "The code is taken (template_code_taken).", body = doc::ErrorRef)))]
async fn create(
    State(store): State<Store>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (draft, ..) = draft_of(&body)?;
    let t = store
        .create_template(&draft, now())
        .await
        .map_err(code_taken)?;
    Ok((StatusCode::CREATED, Json(template_json(&t))))
}

pub(crate) fn code_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "template_code_taken", m),
        other => other.into(),
    }
}

/// One template.
#[utoipa::path(get, path = "/templates/{id}", tag = "templates",
    responses((status = 200, description = "The template.", body = doc::Template)))]
async fn read(State(store): State<Store>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let t = store
        .get_template(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "template", &id))?;
    Ok(Json(template_json(&t)))
}

/// A template by its code.
#[utoipa::path(get, path = "/templates/by-code/{code}", tag = "templates",
    responses((status = 200, description = "The template.", body = doc::Template)))]
async fn read_by_code(
    State(store): State<Store>,
    Path(code): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = store
        .get_template_by_code(&code)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "template_not_found",
                format!(
                    "no template with code {:?}",
                    code.chars().take(100).collect::<String>()
                ),
            ),
            other => other.into(),
        })?;
    Ok(Json(template_json(&t)))
}

/// Templates.
#[utoipa::path(get, path = "/templates", tag = "templates",
    params(Paging, ("channel" = Option<String>, Query), ("status" = Option<String>, Query)),
    responses((status = 200, description = "A page of templates.", body = doc::Page<doc::Template>)))]
async fn list(
    State(store): State<Store>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = ListQuery(q);
    let channel = q.get("channel");
    if let Some(c) = channel {
        if !matches!(c, "email" | "sms" | "whatsapp") {
            return Err(FieldError::new(
                "channel",
                format!("must be email, sms, whatsapp or slack, got {c:?}"),
            )
            .into());
        }
    }
    let status = q.get("status");
    if let Some(s) = status {
        if !matches!(s, "active" | "inactive") {
            return Err(FieldError::new(
                "status",
                format!("must be active or inactive, got {s:?}"),
            )
            .into());
        }
    }
    let page = store.list_templates(channel, status, &q.page()?).await?;
    Ok(Json(
        serde_json::to_value(page.map(|t| template_json(&t))).map_err(ApiError::internal)?,
    ))
}

/// A change: a merge patch over the current version; `channel` cannot change.
/// Changes a template (a merge patch; a new version).
#[utoipa::path(patch, path = "/templates/{id}", tag = "templates", request_body = doc::MergePatch,
    responses((status = 200, description = "Changed.", body = doc::Template),
        (status = 409, description = "The new code is taken.", body = doc::ErrorRef)))]
async fn change(
    State(store): State<Store>,
    IdPath(id): IdPath,
    JsonBody(patch): JsonBody,
) -> ApiResult<Json<Value>> {
    Fields::new(&patch, "")?;
    let t = store
        .get_template(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "template", &id))?;
    if let Some(c) = patch.get("channel") {
        if c.as_str() != Some(t.channel.as_str()) {
            return Err(
                FieldError::new("channel", "cannot change; create another template").into(),
            );
        }
    }
    let mut whole = template_json(&t);
    if let Value::Object(o) = &mut whole {
        for k in ["id", "status", "version", "created_at", "updated_at"] {
            o.remove(k);
        }
    }
    crate::domain::fields::merge_patch(&mut whole, &patch);
    let (draft, ..) = draft_of(&whole)?;
    let t = store
        .update_template(&id, &draft, now())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("template", &id),
            other => code_taken(other),
        })?;
    Ok(Json(template_json(&t)))
}

async fn set_status(store: &Store, id: &str, status: &str) -> ApiResult<Json<Value>> {
    let t = store
        .set_template_status(id, status, now())
        .await
        .map_err(|e| ApiError::from_store(e, "template", id))?;
    Ok(Json(template_json(&t)))
}

/// Activates a template: messages may use it.
#[utoipa::path(post, path = "/templates/{id}/activate", tag = "templates",
    responses((status = 200, description = "Active.", body = doc::Template)))]
async fn activate(State(store): State<Store>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    set_status(&store, &id, "active").await
}

/// Deactivates a template: new messages may not use it.
#[utoipa::path(post, path = "/templates/{id}/deactivate", tag = "templates",
    responses((status = 200, description = "Inactive.", body = doc::Template)))]
async fn deactivate(State(store): State<Store>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    set_status(&store, &id, "inactive").await
}

/// `{"variables": {...}}` → what a send would carry; nothing is sent.
/// Renders a template with variables, as a message would be (a preview).
#[utoipa::path(post, path = "/templates/{id}/render", tag = "templates", request_body = doc::RenderInput,
    responses((status = 200, description = "The rendered parts.", body = doc::Rendered)))]
async fn render(
    State(store): State<Store>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new(&body, "")?;
    f.deny_unknown(&["variables"])?;
    let values = f.map_opt("variables", crate::message::request::MAX_VARIABLES_BYTES)?;
    let t = store
        .get_template(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "template", &id))?;
    let (channel, variables, parts) = typed(&t)?;
    let mut out = preview(channel, &variables, &parts, &values)?;
    let o = out.as_object_mut().expect("object");
    o.insert("template_id".into(), json!(t.id));
    o.insert("version".into(), json!(t.version));
    Ok(Json(out))
}

/// What a template's parts render to with `values`, as `POST
/// /v1/templates/{id}/render` shows it (the console's preview too).
pub(crate) fn preview(
    channel: Channel,
    variables: &[VariableSpec],
    parts: &TemplateParts,
    values: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    let r = template::render(channel, variables, parts, values).map_err(render_error)?;
    let mut out = json!({"channel": channel.as_str()});
    let o = out.as_object_mut().expect("object");
    match channel {
        Channel::Email => {
            o.insert("subject".into(), json!(r.subject));
            o.insert("body_html".into(), json!(r.body_html));
            o.insert("body_text".into(), json!(r.body_text));
        }
        Channel::Sms => {
            let body = r.body.unwrap_or_default();
            let info = sms_text::analyse(&body);
            o.insert("encoding".into(), json!(info.encoding));
            o.insert("segments".into(), json!(info.segments));
            o.insert("body".into(), json!(body));
        }
        Channel::Whatsapp => {
            o.insert("parameters".into(), json!(r.parameters));
        }
        Channel::Slack => {
            o.insert("body".into(), json!(r.body));
        }
    }
    Ok(out)
}

/// Deletes a template no message or campaign uses.
#[utoipa::path(delete, path = "/templates/{id}", tag = "templates",
    responses((status = 204, description = "Deleted."),
        (status = 409, description = "It is in use (template_in_use).", body = doc::ErrorRef)))]
async fn remove(State(store): State<Store>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    match store.delete_template(&id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::not_found("template", &id)),
        Err(StoreError::Conflict(m)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "template_in_use", m))
        }
        Err(e) => Err(e.into()),
    }
}
