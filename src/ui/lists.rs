//! Lists: upload a CSV of leads into a new list (streamed into the same
//! importer as `POST /v1/outdials/{id}/targets` with `text/csv`), then the
//! report: rows stored, duplicates and rejected rows with line, column and
//! reason, the rejected rows downloadable as CSV.

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{json, Value};

use super::pages::{csrf_matches, csrf_refused, form_page, render, to_login};
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::documents::outdial_document;
use crate::api::error::ApiError;
use crate::api::import::import_csv_stream;
use crate::store::documents::OUTDIALS;
use crate::store::PageRequest;

/// The longest small field (the token, the name) read from the form.
const MAX_FIELD_BYTES: usize = 4096;

#[derive(Template)]
#[template(path = "lists.html", config = "src/ui/askama.toml")]
struct ListsPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    name: String,
    name_error: Option<String>,
    file_error: Option<String>,
    lists: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "import_report.html", config = "src/ui/askama.toml")]
struct ReportPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    id: String,
    name: String,
    received: i64,
    created: i64,
    duplicate_count: i64,
    invalid_count: i64,
    truncated: bool,
    stopped: Option<String>,
    invalid: Vec<(String, String, String)>,
    duplicates: Vec<(String, String)>,
    rejected_csv: String,
}

async fn lists_page(
    s: &UiState,
    csrf: String,
    key_name: String,
    name: String,
    name_error: Option<String>,
    file_error: Option<String>,
) -> Result<Response, ApiError> {
    let docs = s
        .store
        .list_docs(
            OUTDIALS,
            &PageRequest {
                size: 200,
                after: None,
            },
        )
        .await?;
    let lists = docs
        .items
        .into_iter()
        .map(|d| {
            let at = chrono::DateTime::from_timestamp_millis(d.created_at).unwrap_or_default();
            (d.id, d.name, at.format("%Y-%m-%d %H:%M UTC").to_string())
        })
        .collect();
    let invalid = name_error.is_some() || file_error.is_some();
    form_page(
        &ListsPage {
            assets: asset_names(),
            csrf,
            key_name,
            name,
            name_error,
            file_error,
            lists,
        },
        invalid,
    )
}

pub(super) async fn lists(
    State(s): State<UiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    lists_page(
        &s,
        sess.row.csrf,
        sess.row.key_name,
        String::new(),
        None,
        None,
    )
    .await
}

/// A small text field, refused past [`MAX_FIELD_BYTES`].
async fn small_text(field: &mut axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(format!("the form could not be read: {e}")))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FIELD_BYTES {
            return Err(ApiError::bad_request(format!(
                "a form field is longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("a form field is not UTF-8"))
}

/// `POST /ui/lists`: the form's fields in order (`csrf`, `name`, then
/// `file`, as the page sends them): the token is checked before a byte of
/// the file is read.
pub(super) async fn upload(
    State(s): State<UiState>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let (csrf, key_name) = (sess.row.csrf.clone(), sess.row.key_name.clone());
    let mut token_ok = false;
    let mut name = String::new();
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("the form could not be read: {e}"))
    };
    while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
        match field.name().unwrap_or("") {
            "csrf" => token_ok = csrf_matches(&small_text(&mut field).await?, &csrf),
            "name" => name = small_text(&mut field).await?.trim().to_string(),
            "file" => {
                if !token_ok {
                    return Ok(csrf_refused());
                }
                let (list_name, doc) = match outdial_document(&json!({"name": name})) {
                    Ok(d) => d,
                    Err(e) => {
                        return lists_page(&s, csrf, key_name, name, Some(e.reason), None).await;
                    }
                };
                let outdial = s
                    .store
                    .insert_doc(OUTDIALS, &list_name, &doc, now_ms())
                    .await?;
                let data = field.map_err(std::io::Error::other);
                let (report, stopped) =
                    match import_csv_stream(&s.store, &outdial.id, data, s.csv_limit).await {
                        Ok(r) => (r, None),
                        // A header that cannot be read: nothing was stored.
                        Err(e) if e.details.get("lines_read").is_none() => {
                            s.store.delete_doc(OUTDIALS, &outdial.id).await?;
                            return lists_page(
                                &s,
                                csrf,
                                key_name,
                                name,
                                None,
                                Some(format!("{}: {}", field_of(&e), e.message)),
                            )
                            .await;
                        }
                        // Cut short or too large: what came before is stored and said.
                        Err(e) => (e.details.clone(), Some(e.message)),
                    };
                return Ok(render(&report_page(
                    csrf, key_name, outdial.id, list_name, &report, stopped,
                ))?
                .into_response());
            }
            _ => {}
        }
    }
    if !token_ok {
        return Ok(csrf_refused());
    }
    lists_page(
        &s,
        csrf,
        key_name,
        name,
        None,
        Some("choose a CSV file to import".into()),
    )
    .await
}

fn field_of(e: &ApiError) -> String {
    e.details
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("the file")
        .to_string()
}

fn report_page(
    csrf: String,
    key_name: String,
    id: String,
    name: String,
    r: &Value,
    stopped: Option<String>,
) -> ReportPage {
    let n = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    let text = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let invalid: Vec<(String, String, String)> = r["invalid"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| (text(v, "line"), text(v, "field"), text(v, "reason")))
                .collect()
        })
        .unwrap_or_default();
    let duplicates = r["duplicates"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| (text(v, "line"), text(v, "destination")))
                .collect()
        })
        .unwrap_or_default();
    let mut csv = String::from("line,column,reason\n");
    for (line, column, reason) in &invalid {
        csv.push_str(&format!(
            "{},{},{}\n",
            cell(line),
            cell(column),
            cell(reason)
        ));
    }
    let rejected_csv = format!(
        "data:text/csv;charset=utf-8,{}",
        form_urlencoded::byte_serialize(csv.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    ReportPage {
        assets: asset_names(),
        csrf,
        key_name,
        id,
        name,
        received: n("received"),
        created: n("created"),
        duplicate_count: n("duplicate_count"),
        invalid_count: n("invalid_count"),
        truncated: r["truncated"].as_bool().unwrap_or(false),
        stopped,
        invalid,
        duplicates,
        rejected_csv,
    }
}

/// A CSV cell, quoted when it must be.
fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
