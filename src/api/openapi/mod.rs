//! The API's OpenAPI 3.1 document, made from the code: every route is
//! registered through [`ApiRouter`] with `utoipa_axum::routes!`, so a route
//! cannot be served without its `#[utoipa::path]` description, nor
//! described without being served. [`finish`] adds what every operation
//! shares (the error responses, the security scheme, path parameters left
//! undeclared) so that each handler states only what is its own.
//!
//! Served at `GET /v1/openapi.json`, rendered at `GET /v1/docs` (RapiDoc
//! 9.3.8 from its npm package, embedded; licence: rapidoc.LICENSE). Neither
//! needs a key: the document holds no data.

pub mod schemas;

use std::sync::{Arc, LazyLock, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};
use utoipa_axum::routes;

/// A router whose routes carry their OpenAPI description.
pub type ApiRouter<S = ()> = utoipa_axum::router::OpenApiRouter<S>;

const RAPIDOC: &[u8] = include_bytes!("rapidoc-9.3.8.min.js");

/// The prefix under which the notification platform's paths are served a
/// second time, for clients written against it.
pub const SEED_PREFIX: &str = "/api/v1";

/// Routes without an API key: public pages, links in messages, signed
/// provider callbacks, the probes, and the document itself.
fn is_public(path: &str) -> bool {
    path == "/healthz"
        || path.starts_with("/unsubscribe/")
        || path.starts_with("/t/")
        || path.starts_with("/v1/providers/")
        || path == "/v1/openapi.json"
        || path == "/v1/docs"
        || path.starts_with("/v1/docs/")
}

/// The operations' groups, in the order a reader meets them.
const TAGS: [(&str, &str); 21] = [
    ("campaigns", "Campaigns: what to dial, with which plan and agent, how fast, when; start, pause, resume, stop."),
    ("outdials", "Target lists."),
    ("targets", "The people in a list, and each one's history."),
    ("outplans", "Retry plans."),
    ("agents", "Who talks to an answered call: a WebSocket bot, a SIP agent or a script."),
    ("calls", "Attempts, and one-off calls."),
    ("dnc", "The do-not-call list, checked before every INVITE."),
    ("trunks", "The configured SIP trunks (read-only): limits, live calls, registration."),
    ("events", "Server-Sent Events: a campaign's log, and the global one."),
    ("templates", "Message templates, with a render preview."),
    ("e-mail", "E-mail."),
    ("sms", "SMS."),
    ("whatsapp", "WhatsApp, and the Cloud API's webhook."),
    ("notifications", "One send over every channel, in bulk too."),
    ("conversations", "A worker's messages to a contact, and the replies."),
    ("suppressions", "Addresses no message goes to."),
    ("webhooks", "Signed deliveries of every event."),
    ("tracking", "Opens, clicks and unsubscribes from e-mails (no key)."),
    ("twilio", "The part of Twilio's REST API media-stream bots use."),
    ("ops", "Health and metrics."),
    ("docs", "This document."),
];

fn is_twilio(path: &str) -> bool {
    path.starts_with("/2010-04-01/")
}

/// Completes the generated document: metadata, security schemes, the
/// shared error responses, and path parameters.
pub fn finish(doc: utoipa::openapi::OpenApi, metrics_need_key: bool) -> Value {
    let mut doc = serde_json::to_value(doc).expect("the document serializes");
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "herald",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "herald's REST API: outdial lists and targets, retry plans, agents, \
            campaigns and their control, one-off calls, do-not-call, templates, e-mail, SMS, \
            WhatsApp, notifications over every channel, conversations, webhooks and event \
            streams. Every /v1 route takes an API key in the X-API-Key header. Every error \
            is {\"error\": {\"code\", \"message\", \"details\"}}; a field that is wrong is \
            named in the message and in details.field.",
        "license": {"name": "MIT", "identifier": "MIT"},
    });
    doc["tags"] = json!(TAGS
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description}))
        .collect::<Vec<_>>());
    let components = doc["components"].as_object_mut().map(std::mem::take);
    let mut components = components.unwrap_or_default();
    components.insert(
        "securitySchemes".into(),
        json!({
            "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "An API key made with `herald apikey create --name NAME` or on the console's settings page."},
            "twilio_basic": {"type": "http", "scheme": "basic",
                "description": "The account sid (agents.account_sid) as the user and an API key as the password."},
        }),
    );
    let schemas = components
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas is an object");
    schemas.insert("Error".into(), error_schema());
    schemas.insert("TwilioError".into(), twilio_error_schema());
    doc["components"] = Value::Object(components);

    let paths = doc["paths"].as_object_mut().expect("paths is an object");
    for (path, item) in paths.iter_mut() {
        let item = item.as_object_mut().expect("a path item is an object");
        for (method, op) in item.iter_mut() {
            complete_operation(path, method, op, metrics_need_key);
        }
    }
    unique_operation_ids(paths);
    add_links(paths);
    doc
}

/// Links from each create (`POST /v1/things`, answering the new thing) to
/// the operations on it (`/v1/things/{id}…`), so a client or a stateful
/// fuzzer can follow them.
fn add_links(paths: &mut serde_json::Map<String, Value>) {
    let mut targets = Vec::new();
    for (path, item) in paths.iter() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if let Some(id) = op["operationId"].as_str() {
                targets.push((path.clone(), method.clone(), id.to_string()));
            }
        }
    }
    for (path, item) in paths.iter_mut() {
        if path.ends_with('}') {
            continue;
        }
        let Some(create) = item.get_mut("post") else {
            continue;
        };
        let prefix = format!("{path}/{{");
        for code in ["201", "202"] {
            let Some(response) = create["responses"].get_mut(code) else {
                continue;
            };
            let mut links = serde_json::Map::new();
            for (other, method, id) in &targets {
                let Some(rest) = other.strip_prefix(&prefix) else {
                    continue;
                };
                let Some(param) = rest.split('}').next() else {
                    continue;
                };
                if param.is_empty() || !rest.starts_with(&format!("{param}}}")) {
                    continue;
                }
                links.insert(
                    format!("{method}_{id}"),
                    json!({"operationId": id, "parameters": {format!("path.{param}"): "$response.body#/id"}}),
                );
            }
            if !links.is_empty() {
                response["links"] = Value::Object(links);
            }
        }
    }
}

/// Handlers of different resources share names (`list`, `read`, …): an
/// operation id used more than once gets its path's words appended
/// (`read_campaigns`, `list_outdials_targets`).
fn unique_operation_ids(paths: &mut serde_json::Map<String, Value>) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(id) = op["operationId"].as_str() {
                *seen.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    for (path, item) in paths.iter_mut() {
        let resource = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != "v1" && *s != "api" && !s.starts_with('{'))
            .collect::<Vec<_>>()
            .join("_")
            .replace('-', "_");
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            if seen.get(id).copied().unwrap_or(0) > 1 {
                op["operationId"] = json!(format!("{id}_{resource}"));
            }
        }
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "examples": ["validation_failed"],
                    "description": "A stable, machine-readable code (not_found, validation_failed, conflict, unauthorized, …)."},
                "message": {"type": "string", "examples": ["calls_per_second: must be a number between 0.01 and 1000"]},
                "details": {"description": "More about the error: for a field, `field` and `reason`, and every invalid field in `errors`; null when there is nothing more."},
            },
        }},
        "example": {"error": {"code": "validation_failed",
            "message": "calling_window.timezone: unknown time zone \"Mars/Base\"",
            "details": {"field": "calling_window.timezone", "reason": "unknown time zone \"Mars/Base\"",
                "errors": [{"field": "calling_window.timezone", "reason": "unknown time zone \"Mars/Base\""}]}}},
    })
}

fn twilio_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message", "more_info", "status"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "more_info": {"type": "string"},
            "status": {"type": "integer"},
        },
    })
}

fn error_response(description: &str, twilio: bool) -> Value {
    let schema = if twilio { "TwilioError" } else { "Error" };
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    })
}

/// The `{name}` segments of a path template.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn complete_operation(path: &str, method: &str, op: &mut Value, metrics_need_key: bool) {
    let twilio = is_twilio(path);
    let Some(op) = op.as_object_mut() else {
        return;
    };
    // The notification platform's paths are the same operations again.
    if path.starts_with(SEED_PREFIX) {
        if let Some(Value::String(id)) = op.get_mut("operationId") {
            *id = format!("seed_{id}");
        }
    }
    // Path parameters not declared by the handler: strings.
    let params = op
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("parameters is an array");
    for name in path_params(path) {
        let declared = params
            .iter()
            .any(|p| p["name"] == name && p["in"] == "path");
        if !declared {
            let schema = match name {
                "id" if !is_public(path) && !is_twilio(path) => {
                    json!({"type": "string", "format": "uuid"})
                }
                "number" => json!({"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"}),
                _ => json!({"type": "string"}),
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    let has_query = params.iter().any(|p| p["in"] == "query");
    if params.is_empty() {
        op.remove("parameters");
    }
    let has_body = op.contains_key("requestBody");
    if twilio {
        op.insert("security".into(), json!([{"twilio_basic": []}]));
    } else if path == "/metrics" {
        if metrics_need_key {
            op.insert("security".into(), json!([{"api_key": []}]));
        } else {
            op.insert("security".into(), json!([]));
        }
    } else if is_public(path) {
        op.insert("security".into(), json!([]));
    } else {
        op.insert("security".into(), json!([{"api_key": []}]));
    }
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    let mut add = |code: &str, description: &str| {
        responses
            .entry(code.to_string())
            .or_insert_with(|| error_response(description, twilio));
    };
    if secured {
        add("401", "No API key, or one that is unknown or revoked.");
    }
    let has_path = !path_params(path).is_empty();
    if has_body || has_query || has_path || method == "post" || method == "patch" {
        add(
            "400",
            "The body or query could not be read (not JSON, not UTF-8).",
        );
        add(
            "422",
            "A field is invalid: the message and details.field name it.",
        );
    }
    if has_body || method == "post" || method == "patch" {
        add(
            "413",
            "The body is larger than api.body_limit_bytes (or api.csv_body_limit_bytes).",
        );
        add(
            "415",
            "The body's Content-Type is not one this route reads.",
        );
    }
    if has_path || has_body {
        add(
            "404",
            "No such resource (or an id that cannot be one), or one the body names (a template).",
        );
    }
}

/// The finished document's bytes, set once the routes are all known.
#[derive(Clone, Default)]
pub struct DocCell(Arc<OnceLock<Bytes>>);

impl DocCell {
    pub fn set(&self, doc: &Value) {
        let bytes = serde_json::to_vec(doc).expect("the document serializes");
        self.0.set(Bytes::from(bytes)).ok();
    }
}

/// `GET /v1/openapi.json`, `GET /v1/docs` and the viewer's script.
pub fn routes(cell: DocCell) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(document))
        .routes(routes!(docs_page))
        .routes(routes!(docs_asset))
        .with_state(cell)
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "docs", operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = schemas::AnyObject)))]
async fn document(State(cell): State<DocCell>) -> Response {
    match cell.0.get() {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response()
        }
        None => super::error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the document is not ready yet",
        )
        .into_response(),
    }
}

/// This document, rendered (RapiDoc).
#[utoipa::path(get, path = "/v1/docs", tag = "docs", operation_id = "openapi_page",
    responses((status = 200, description = "An HTML page.", content_type = "text/html", body = String)))]
async fn docs_page() -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>herald API</title>\
         <script type=\"module\" src=\"/v1/docs/{}\"></script></head>\
         <body><rapi-doc spec-url=\"/v1/openapi.json\" render-style=\"read\" \
         show-header=\"false\" allow-try=\"true\" allow-server-selection=\"false\" \
         theme=\"light\"></rapi-doc></body></html>\n",
        rapidoc_name()
    ))
}

fn rapidoc_name() -> &'static str {
    static NAME: LazyLock<String> = LazyLock::new(|| {
        use sha2::Digest as _;
        format!(
            "rapidoc-9.3.8.{}.min.js",
            &hex::encode(sha2::Sha256::digest(RAPIDOC))[..10]
        )
    });
    &NAME
}

/// The page's viewer (a content-hashed name, cached for good).
#[utoipa::path(get, path = "/v1/docs/{file}", tag = "docs", operation_id = "openapi_viewer",
    responses((status = 200, description = "JavaScript.", content_type = "text/javascript", body = String),
        (status = 404, description = "No such file.", body = schemas::ErrorRef)))]
async fn docs_asset(Path(file): Path<String>) -> Response {
    if file == rapidoc_name() {
        (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            RAPIDOC,
        )
            .into_response()
    } else {
        super::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file")
            .into_response()
    }
}

/// Query parameters shared by list routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Paging {
    /// Items per page, 1 to 1000 (100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<i64>,
    /// The `next_page_token` of the page before.
    pub page_token: Option<String>,
}
