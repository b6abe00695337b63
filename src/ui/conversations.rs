//! The worker's messaging panel: a person (the worker) opens a conversation
//! by sending an SMS or WhatsApp message — a canned template or free text —
//! then reads the contact's replies as they arrive (the page listens to the
//! worker's event stream, `GET /v1/workers/{worker}/events`, and fetches
//! the thread again on each of its events), replies and closes. Free text
//! on WhatsApp only reaches a contact who wrote in the last 24 hours; the
//! page says so for the number typed and offers the templates. Opening,
//! replying and closing go through REST's code (`api::conversations`).

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{json, Map, Value};

use super::form_values;
use super::pages::{form_page, mutation, render, to_login};
use super::utc_time as when;
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::conversations::{close_with, load, open_with, reply_with, ConvState};
use crate::api::error::ApiError;
use crate::api::messages::compose::WHATSAPP_WINDOW_MS;
use crate::store::PageRequest;

struct ConvItem {
    id: String,
    channel: String,
    contact: String,
    last: String,
}

/// The channels' active templates, for the pickers: (id, "code — name").
struct Canned {
    sms: Vec<(String, String)>,
    whatsapp: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "conversations.html", config = "src/ui/askama.toml")]
struct PanelPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    worker: String,
    open: Vec<ConvItem>,
    canned: Canned,
    values: HashMap<String, String>,
    errors: Vec<(String, String)>,
}

impl PanelPage {
    fn val(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }

    fn err(&self, f: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(k, _)| k == f || k.starts_with(&format!("{f}.")))
            .map(|(_, m)| m.as_str())
    }
}

fn iso(ms: i64) -> String {
    crate::store::from_ms(ms).to_rfc3339()
}

fn conv_state(s: &UiState) -> ConvState {
    ConvState {
        store: s.store.clone(),
        messaging: s.messaging.clone(),
    }
}

/// The worker a page acts as: `?worker=`, else the session key's name.
fn worker_of(q: &HashMap<String, String>, key_name: &str) -> String {
    q.get("worker")
        .map(|w| w.trim())
        .filter(|w| !w.is_empty() && w.len() <= 200)
        .unwrap_or(key_name)
        .to_string()
}

async fn canned(s: &UiState) -> Result<Canned, ApiError> {
    let page = &PageRequest {
        size: 500,
        after: None,
    };
    let list = |c| async move {
        Ok::<_, ApiError>(
            s.store
                .list_templates(Some(c), Some("active"), page)
                .await?
                .items
                .into_iter()
                .map(|t| (t.id, format!("{} — {}", t.code, t.name)))
                .collect::<Vec<_>>(),
        )
    };
    Ok(Canned {
        sms: list("sms").await?,
        whatsapp: list("whatsapp").await?,
    })
}

async fn panel(
    s: &UiState,
    sess: super::Session,
    worker: String,
    values: HashMap<String, String>,
    errors: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let page = PageRequest {
        size: 200,
        after: None,
    };
    let open = s
        .store
        .list_conversations(Some(&worker), Some("open"), &page)
        .await?
        .items
        .into_iter()
        .map(|c| ConvItem {
            id: c.id,
            channel: c.channel,
            contact: c.contact_address,
            last: when(c.last_activity_at),
        })
        .collect();
    let invalid = !errors.is_empty();
    form_page(
        &PanelPage {
            assets: asset_names(),
            csrf: sess.row.csrf,
            key_name: sess.row.key_name,
            worker,
            open,
            canned: canned(s).await?,
            values,
            errors,
        },
        invalid,
    )
}

pub(super) async fn conversations(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let worker = worker_of(&q, &sess.row.key_name);
    let mut values = HashMap::new();
    values.insert("channel".to_string(), "sms".to_string());
    panel(&s, sess, worker, values, Vec::new()).await
}

/// The message's content as REST takes it: a template with its variables
/// (`key=value` lines), or free text.
fn content(v: &HashMap<String, String>, channel: &str) -> Map<String, Value> {
    let mut o = Map::new();
    let template = v
        .get(&format!("template_{channel}"))
        .map(|t| t.trim())
        .unwrap_or("");
    if !template.is_empty() {
        o.insert("template_id".into(), json!(template));
        let mut vars = Map::new();
        for l in v.get("variables").map(String::as_str).unwrap_or("").lines() {
            if let Some((k, val)) = l.split_once('=') {
                vars.insert(k.trim().into(), json!(val.trim()));
            }
        }
        o.insert("template_variables".into(), Value::Object(vars));
    } else {
        o.insert(
            "body".into(),
            json!(v.get("body").map(String::as_str).unwrap_or("")),
        );
    }
    o
}

/// An API error as the form shows it.
fn said(e: &ApiError) -> Vec<(String, String)> {
    let field = e
        .details
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("(form)");
    // The message's content fields are one box on the page.
    let field = match field {
        "template_variables" | "template_id" => "template",
        f => f,
    };
    vec![(field.to_string(), e.message.clone())]
}

pub(super) async fn open(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = form_values(&body);
    let sess = match mutation(&s, &headers, v.get("csrf").map_or("", String::as_str)).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let worker = worker_of(&v, &sess.row.key_name);
    let channel = v.get("channel").cloned().unwrap_or_default();
    let mut req = content(&v, &channel);
    req.insert("channel".into(), json!(channel));
    req.insert("to".into(), json!(v.get("to").map_or("", |t| t.trim())));
    req.insert("worker".into(), json!(worker));
    match open_with(&conv_state(&s), &Value::Object(req)).await {
        Ok(c) => {
            let id = c["id"].as_str().unwrap_or_default();
            Ok(Redirect::to(&format!("/ui/conversations/{id}")).into_response())
        }
        Err(e) if e.status == StatusCode::CONFLICT && e.code == "conversation_open" => {
            // One open conversation per pair of addresses: go to it.
            let open = &e.details["conversation"];
            let errors = vec![(
                "to".to_string(),
                format!(
                    "a conversation with this number is already open (worker {}); reply there",
                    open["worker"]
                ),
            )];
            let mut v = v;
            v.insert(
                "existing".into(),
                open["id"].as_str().unwrap_or_default().to_string(),
            );
            panel(&s, sess, worker, v, errors).await
        }
        Err(e) if e.status.is_client_error() => {
            let errors = said(&e);
            panel(&s, sess, worker, v, errors).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "wa_window.html", config = "src/ui/askama.toml")]
struct WaWindow {
    /// When free text may be sent until (`None`: only templates now).
    open_until: Option<(String, String)>,
    wrote: bool,
}

/// Whether free text may go to this WhatsApp number now, and until when.
async fn wa_window(s: &UiState, to: &str) -> Result<WaWindow, ApiError> {
    let last = s.store.last_inbound_at("whatsapp", to.trim()).await?;
    let until = last.map(|t| t + WHATSAPP_WINDOW_MS);
    Ok(WaWindow {
        open_until: until.filter(|u| *u > now_ms()).map(|u| (iso(u), when(u))),
        wrote: last.is_some(),
    })
}

/// `GET /ui/conversations/window?to=`: the WhatsApp window of a number, as a fragment.
pub(super) async fn window(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if session(&s, &headers).await?.is_none() {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    }
    let to = q.get("to").map(String::as_str).unwrap_or("");
    if to.trim().is_empty() {
        return Ok(Html(String::new()).into_response());
    }
    Ok(render(&wa_window(&s, to).await?)?.into_response())
}

struct Line {
    direction: String,
    body: String,
    at_iso: String,
    at: String,
    status: String,
}

#[derive(Template)]
#[template(path = "thread.html", config = "src/ui/askama.toml")]
struct Thread {
    lines: Vec<Line>,
    status: String,
    closed_reason: String,
}

async fn thread(s: &UiState, id: &str) -> Result<Thread, ApiError> {
    let c = load(&conv_state(s), id).await?;
    let mut lines = Vec::new();
    for m in s.store.conversation_messages(&c.id).await? {
        let status = if m.direction == "out" {
            s.store
                .get_message(&m.message_id)
                .await
                .map(|r| r.status)
                .unwrap_or_default()
        } else {
            "received".into()
        };
        lines.push(Line {
            direction: m.direction,
            body: m.body,
            at_iso: iso(m.at),
            at: when(m.at),
            status,
        });
    }
    Ok(Thread {
        lines,
        status: c.status,
        closed_reason: c.closed_reason.unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "conversation.html", config = "src/ui/askama.toml")]
struct ConversationPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    id: String,
    channel: String,
    contact: String,
    worker: String,
    is_open: bool,
    /// The worker's event stream, from the event before this page.
    stream: String,
    thread: String,
    window: String,
    canned: Vec<(String, String)>,
    values: HashMap<String, String>,
    error: Option<String>,
}

impl ConversationPage {
    fn val(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }
}

async fn conversation_page(
    s: &UiState,
    sess: super::Session,
    id: &str,
    values: HashMap<String, String>,
    error: Option<String>,
) -> Result<Response, ApiError> {
    let c = load(&conv_state(s), id).await?;
    let after = s.store.global_event_seq().await?;
    let thread = thread(s, id).await?.render().map_err(ApiError::internal)?;
    let canned = canned(s).await?;
    let window = if c.channel == "whatsapp" {
        wa_window(s, &c.contact_address)
            .await?
            .render()
            .map_err(ApiError::internal)?
    } else {
        String::new()
    };
    let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
    let invalid = error.is_some();
    form_page(
        &ConversationPage {
            assets: asset_names(),
            csrf: sess.row.csrf,
            key_name: sess.row.key_name,
            id: c.id.clone(),
            stream: format!(
                "/v1/workers/{}/events?after={after}",
                enc(&c.worker).replace('+', "%20")
            ),
            is_open: c.status == "open",
            canned: if c.channel == "whatsapp" {
                canned.whatsapp
            } else {
                canned.sms
            },
            channel: c.channel,
            contact: c.contact_address,
            worker: c.worker,
            thread,
            window,
            values,
            error,
        },
        invalid,
    )
}

pub(super) async fn conversation(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    conversation_page(&s, sess, &id, HashMap::new(), None).await
}

/// The thread alone, fetched again on each event of the worker's stream.
pub(super) async fn thread_part(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if session(&s, &headers).await?.is_none() {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    }
    Ok(render(&thread(&s, &id).await?)?.into_response())
}

pub(super) async fn reply(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = form_values(&body);
    let sess = match mutation(&s, &headers, v.get("csrf").map_or("", String::as_str)).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let c = load(&conv_state(&s), &id).await?;
    let req = content(&v, &c.channel);
    match reply_with(&conv_state(&s), &id, &Value::Object(req)).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/conversations/{id}")).into_response()),
        Err(e) if e.status.is_client_error() => {
            let msg = e.message.clone();
            conversation_page(&s, sess, &id, v, Some(msg)).await
        }
        Err(e) => Err(e),
    }
}

pub(super) async fn close(
    State(s): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = form_values(&body);
    if let Err(r) = mutation(&s, &headers, v.get("csrf").map_or("", String::as_str)).await {
        return Ok(r);
    }
    close_with(&conv_state(&s), &id).await?;
    Ok(Redirect::to(&format!("/ui/conversations/{id}")).into_response())
}
