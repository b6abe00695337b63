//! The template editor: a new template, or a new version of one (channel,
//! code, name, variables, the chosen channel's parts), checked as `POST
//! /v1/templates` checks it with each error beside its field; activate and
//! deactivate; a live preview rendered as one types, through `POST
//! /v1/templates/{id}/render`'s code, with sample values (nothing stored).

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{json, Map, Value};

use super::form_values;
use super::pages::{form_page, mutation, to_login};
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::error::ApiError;
use crate::api::templates::{code_taken, draft_of, preview, template_json};
use crate::store::StoreError;

/// The editor of a new template, or of one (a save makes a new version).
#[derive(Template)]
#[template(path = "template.html", config = "src/ui/askama.toml")]
struct TemplatePage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    notice: Option<String>,
    /// `None` for a new template.
    id: Option<String>,
    status: String,
    version: i64,
    values: HashMap<String, String>,
    errors: Vec<(String, String)>,
}

impl TemplatePage {
    /// An empty editor for the session's key.
    fn new(sess: super::Session) -> TemplatePage {
        TemplatePage {
            assets: asset_names(),
            csrf: sess.row.csrf,
            key_name: sess.row.key_name,
            notice: None,
            id: None,
            status: "inactive".into(),
            version: 0,
            values: HashMap::new(),
            errors: Vec::new(),
        }
    }

    fn val(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }

    fn err(&self, f: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(k, _)| {
                k == f || k.starts_with(&format!("{f}.")) || k.starts_with(&format!("{f}["))
            })
            .map(|(_, m)| m.as_str())
    }
}

/// The form's fields, as typed.
const FIELDS: [&str; 13] = [
    "channel",
    "code",
    "name",
    "variables",
    "subject_template",
    "body_text_template",
    "body_html_template",
    "body_template",
    "provider_name",
    "provider_language",
    "provider_parameters",
    "track_opens",
    "track_clicks",
];

fn lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The form as `POST /v1/templates` takes it: variables one per line
/// (`key` required, `key?` optional, `key = default`), only the parts of
/// the chosen channel, and only those filled in.
fn template_body(v: &HashMap<String, String>) -> Value {
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let channel = get("channel");
    let variables: Vec<Value> = lines(get("variables"))
        .map(|l| match l.split_once('=') {
            Some((k, d)) => json!({"key": k.trim(), "required": false, "default": d.trim()}),
            None => match l.strip_suffix('?') {
                Some(k) => json!({"key": k.trim(), "required": false}),
                None => json!({"key": l, "required": true}),
            },
        })
        .collect();
    let mut o = Map::new();
    o.insert("channel".into(), json!(channel));
    o.insert("code".into(), json!(get("code")));
    o.insert("name".into(), json!(get("name")));
    o.insert("variables".into(), Value::Array(variables));
    let mut part = |k: &str| {
        let t = v.get(k).map(String::as_str).unwrap_or("");
        if !t.trim().is_empty() {
            o.insert(k.into(), json!(t));
        }
    };
    match channel {
        "email" => {
            part("subject_template");
            part("body_text_template");
            part("body_html_template");
        }
        "sms" | "slack" => part("body_template"),
        _ => {}
    }
    match channel {
        "email" => {
            o.insert("track_opens".into(), json!(v.contains_key("track_opens")));
            o.insert("track_clicks".into(), json!(v.contains_key("track_clicks")));
        }
        "whatsapp" => {
            let params: Vec<&str> = get("provider_parameters")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            o.insert(
                "provider_template".into(),
                json!({"name": get("provider_name"), "language": get("provider_language"), "parameters": params}),
            );
        }
        _ => {}
    }
    Value::Object(o)
}

/// The form's values of a stored template.
fn stored_values(t: &crate::store::templates::TemplateRow) -> HashMap<String, String> {
    let j = template_json(t);
    let mut v: HashMap<String, String> = HashMap::new();
    for k in [
        "channel",
        "code",
        "name",
        "subject_template",
        "body_text_template",
        "body_html_template",
        "body_template",
    ] {
        if let Some(s) = j[k].as_str() {
            v.insert(k.into(), s.into());
        }
    }
    let vars: Vec<String> = j["variables"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let k = x["key"].as_str().unwrap_or("");
                    match (x["required"].as_bool(), x["default"].as_str()) {
                        (_, Some(d)) => format!("{k} = {d}"),
                        (Some(true), None) => k.to_string(),
                        _ => format!("{k}?"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    v.insert("variables".into(), vars.join("\n"));
    if let Some(p) = j["provider_template"].as_object() {
        v.insert(
            "provider_name".into(),
            p["name"].as_str().unwrap_or("").into(),
        );
        v.insert(
            "provider_language".into(),
            p["language"].as_str().unwrap_or("").into(),
        );
        let params: Vec<&str> = p["parameters"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        v.insert("provider_parameters".into(), params.join(", "));
    }
    for k in ["track_opens", "track_clicks"] {
        if j[k] == true {
            v.insert(k.into(), "on".into());
        }
    }
    v
}

/// An API error as the form shows it: each field error beside its field.
fn said(e: &ApiError) -> Vec<(String, String)> {
    if let Some(errs) = e.details.get("errors").and_then(Value::as_array) {
        return errs
            .iter()
            .map(|x| {
                (
                    x["field"].as_str().unwrap_or("(form)").to_string(),
                    x["reason"].as_str().unwrap_or("invalid").to_string(),
                )
            })
            .collect();
    }
    let field = e
        .details
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("(form)");
    let reason = e
        .details
        .get("reason")
        .and_then(Value::as_str)
        .map_or_else(|| e.message.clone(), str::to_string);
    vec![(field.to_string(), reason)]
}

pub(super) async fn new_template(
    State(s): State<UiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let mut page = TemplatePage::new(sess);
    page.values.insert("channel".to_string(), "sms".to_string());
    form_page(&page, false)
}

pub(super) async fn template(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let t = s
        .store
        .get_template(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "template", &id))?;
    form_page(
        &TemplatePage {
            notice: q.get("notice").cloned(),
            values: stored_values(&t),
            id: Some(t.id),
            status: t.status,
            version: t.version,
            ..TemplatePage::new(sess)
        },
        false,
    )
}

/// Creates a template (`id` none) or saves a new version of one; errors
/// are shown beside their fields and nothing is stored.
pub(super) async fn save(
    s: &UiState,
    headers: &HeaderMap,
    id: Option<String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let values = form_values(body);
    let csrf = values.get("csrf").cloned().unwrap_or_default();
    let sess = match mutation(s, headers, &csrf).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let doc = template_body(&values);
    let stored = match draft_of(&doc) {
        Ok((draft, ..)) => match &id {
            None => s
                .store
                .create_template(&draft, now_ms())
                .await
                .map_err(code_taken),
            Some(id) => s
                .store
                .update_template(id, &draft, now_ms())
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => ApiError::not_found("template", id),
                    other => code_taken(other),
                }),
        },
        Err(e) => Err(e),
    };
    let e = match stored {
        Ok(t) => {
            let notice = format!("Saved: {} version {}.", t.code, t.version);
            let to = format!(
                "/ui/templates/{}?notice={}",
                t.id,
                form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
            );
            return Ok(Redirect::to(&to).into_response());
        }
        Err(e) if e.status.is_client_error() => e,
        Err(e) => return Err(e),
    };
    let (status, version) = match &id {
        Some(id) => s
            .store
            .get_template(id)
            .await
            .map(|t| (t.status, t.version))
            .unwrap_or(("inactive".into(), 0)),
        None => ("inactive".into(), 0),
    };
    form_page(
        &TemplatePage {
            id,
            status,
            version,
            values: values
                .into_iter()
                .filter(|(k, _)| FIELDS.contains(&k.as_str()))
                .collect(),
            errors: said(&e),
            ..TemplatePage::new(sess)
        },
        true,
    )
}

pub(super) async fn create(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    save(&s, &headers, None, &body).await
}

pub(super) async fn update(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    save(&s, &headers, Some(id), &body).await
}

/// `activate` or `deactivate`, as REST's verbs.
pub(super) async fn set_status(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let values = form_values(&body);
    let csrf = values.get("csrf").cloned().unwrap_or_default();
    if let Err(r) = mutation(&s, &headers, &csrf).await {
        return Ok(r);
    }
    let to = match verb.as_str() {
        "activate" => "active",
        "deactivate" => "inactive",
        _ => return Err(ApiError::not_found("action", &verb)),
    };
    let t = s
        .store
        .set_template_status(&id, to, now_ms())
        .await
        .map_err(|e| ApiError::from_store(e, "template", &id))?;
    let notice = format!("{} is {}.", t.code, t.status);
    Ok(Redirect::to(&format!(
        "/ui/templates/{id}?notice={}",
        form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
    ))
    .into_response())
}

#[derive(Template)]
#[template(path = "preview.html", config = "src/ui/askama.toml")]
struct Preview {
    error: Option<String>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    body: Option<String>,
    sms: Option<String>,
    parameters: Vec<String>,
}

/// The live preview of the editor's form (nothing stored): the template as
/// typed, rendered with the sample values (`key=value` lines).
pub(super) async fn preview_form(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if session(&s, &headers).await?.is_none() {
        return Ok(to_login());
    }
    let v = form_values(&body);
    let mut sample = Map::new();
    for l in lines(v.get("sample").map(String::as_str).unwrap_or("")) {
        if let Some((k, val)) = l.split_once('=') {
            sample.insert(k.trim().into(), json!(val.trim()));
        }
    }
    let mut p = Preview {
        error: None,
        subject: None,
        text: None,
        html: None,
        body: None,
        sms: None,
        parameters: Vec::new(),
    };
    let rendered = draft_of(&template_body(&v))
        .and_then(|(_, channel, vars, parts)| preview(channel, &vars, &parts, &sample));
    match rendered {
        Ok(r) => {
            let s = |k: &str| r[k].as_str().map(str::to_string);
            p.subject = s("subject");
            p.text = s("body_text");
            p.html = s("body_html");
            p.body = s("body");
            if r["channel"] == "sms" {
                p.sms = Some(format!(
                    "{} encoding, {} segment(s)",
                    r["encoding"].as_str().unwrap_or("?"),
                    r["segments"]
                ));
            }
            p.parameters = r["parameters"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        Err(e) => {
            p.error = Some(
                said(&e)
                    .into_iter()
                    .map(|(f, r)| {
                        if f == "(form)" {
                            r
                        } else {
                            format!("{f}: {r}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
    }
    Ok(Html(p.render().map_err(ApiError::internal)?).into_response())
}
