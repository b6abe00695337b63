//! The subset of Twilio's REST API that media-stream bots use to hang up:
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with
//! `Status=completed` (or `canceled`) ends the call; `GET` on the same path
//! returns it with a Twilio-style `status`. HTTP Basic auth: the account sid
//! (`agents.account_sid`) and an herald API key. Errors use Twilio's shape
//! (`code`, `message`, `more_info`, `status`), e.g. 20404 for an unknown call.

use utoipa_axum::routes;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use serde_json::{json, Value};

use super::auth::{key_is_valid, AuthState};
use super::openapi::{schemas as doc, ApiRouter};
use crate::agent::{attempt_of_call_sid, call_sid, AgentRuntime};
use crate::store::{Store, StoreError};

#[derive(Clone)]
struct TwilioState {
    auth: AuthState,
    store: Store,
    runtime: AgentRuntime,
}

pub fn router(auth: AuthState, store: Store, runtime: AgentRuntime) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(read, update))
        .with_state(TwilioState {
            auth,
            store,
            runtime,
        })
}

/// A Twilio-shaped error response.
fn twilio_error(status: StatusCode, code: u32, message: String) -> Response {
    let body = Json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    }));
    if status == StatusCode::UNAUTHORIZED {
        (
            status,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"herald\"")],
            body,
        )
            .into_response()
    } else {
        (status, body).into_response()
    }
}

/// Checks Basic auth: the user is the account sid of the path and of herald,
/// the password a valid API key.
async fn authenticate(s: &TwilioState, headers: &HeaderMap, account: &str) -> Option<Response> {
    let denied = || {
        Some(twilio_error(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - invalid username or password".into(),
        ))
    };
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return denied();
    };
    let Some(decoded) = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return denied();
    };
    let Some((user, key)) = decoded.split_once(':') else {
        return denied();
    };
    if user != account || user != s.runtime.account_sid {
        return denied();
    }
    match key_is_valid(&s.auth, key).await {
        Ok(true) => None,
        Ok(false) => denied(),
        Err(e) => Some(e.into_response()),
    }
}

/// The attempt id of `{CallSid}.json`, or a 20404 response.
fn attempt_of(account: &str, call: &str) -> Result<String, Box<Response>> {
    call.strip_suffix(".json")
        .and_then(attempt_of_call_sid)
        .ok_or_else(|| Box::new(not_found(account, call)))
}

/// A path whose account or call sid is not valid UTF-8 names no resource.
fn unreadable_path() -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found: the path is not valid UTF-8".into(),
    )
}

fn not_found(account: &str, call: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource /2010-04-01/Accounts/{account}/Calls/{call} was not found"),
    )
}

/// A call as Twilio shows it (for media-stream bots written against Twilio).
/// `{call}` is the CallSid followed by `.json`.
#[utoipa::path(get, operation_id = "twilio_read_call", path = "/2010-04-01/Accounts/{account}/Calls/{call}", tag = "twilio",
    responses((status = 200, description = "The call.", body = doc::TwilioCall)))]
async fn read(
    State(s): State<TwilioState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((account, call))) = path else {
        return unreadable_path();
    };
    if let Some(denied) = authenticate(&s, &headers, &account).await {
        return denied;
    }
    let attempt = match attempt_of(&account, &call) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match resource(&s, &account, &attempt).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => *r,
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateForm {
    status: Option<String>,
    twiml: Option<String>,
    url: Option<String>,
}

/// `Status=completed` (or `canceled`) hangs the call up.
#[utoipa::path(post, operation_id = "twilio_update_call", path = "/2010-04-01/Accounts/{account}/Calls/{call}", tag = "twilio",
    request_body(content = doc::TwilioUpdate, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The call, completed if it was live.", body = doc::TwilioCall)))]
async fn update(
    State(s): State<TwilioState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<UpdateForm>, FormRejection>,
) -> Response {
    let Ok(Path((account, call))) = path else {
        return unreadable_path();
    };
    if let Some(denied) = authenticate(&s, &headers, &account).await {
        return denied;
    }
    let attempt = match attempt_of(&account, &call) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Ok(Form(form)) = form else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            20001,
            "The request body must be form-encoded (Status=completed)".into(),
        );
    };
    if form.twiml.is_some() || form.url.is_some() {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            20001,
            "Only Status=completed or Status=canceled is supported; Twiml and Url are not".into(),
        );
    }
    if let Err(message) = check_status(form.status.as_deref()) {
        return twilio_error(StatusCode::BAD_REQUEST, 21218, message);
    }
    let live = s.runtime.sessions.get(&attempt);
    if let Some(ctl) = &live {
        tracing::info!(call = %attempt, "hang-up requested through the Twilio call update");
        ctl.hang_up();
    }
    match resource(&s, &account, &attempt).await {
        Ok(mut v) => {
            if live.is_some() {
                // Being hung up now.
                v["status"] = json!("completed");
            }
            Json(v).into_response()
        }
        Err(r) => *r,
    }
}

/// The update's `Status`: `completed` or `canceled`, else the message to answer.
fn check_status(status: Option<&str>) -> Result<(), String> {
    match status {
        Some("completed") | Some("canceled") => Ok(()),
        None | Some("") => Err("Status is required (completed or canceled)".into()),
        Some(other) => {
            let shown: String = other.chars().take(64).collect();
            Err(format!(
                "Status must be completed or canceled, got {shown:?}"
            ))
        }
    }
}

/// The call as Twilio shows it.
async fn resource(s: &TwilioState, account: &str, attempt: &str) -> Result<Value, Box<Response>> {
    let call = match s.store.get_call(attempt).await {
        Ok(c) => super::calls::call_json(&c),
        Err(StoreError::NotFound) => {
            return Err(Box::new(not_found(
                account,
                &format!("{}.json", call_sid(attempt)),
            )))
        }
        Err(e) => return Err(Box::new(super::error::ApiError::from(e).into_response())),
    };
    let live = s.runtime.sessions.get(attempt);
    let status = match &live {
        Some(ctl) if ctl.is_answered() => "in-progress",
        Some(_) => "ringing",
        None => twilio_status(&call),
    };
    let sid = call_sid(attempt);
    let rfc2822 = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(Value::Null, |t| json!(t.to_rfc2822()))
    };
    let duration = match (
        call["answered_at"].as_str().and_then(parse_ts),
        call["ended_at"].as_str().and_then(parse_ts),
    ) {
        (Some(a), Some(e)) => json!(((e - a).num_milliseconds().max(0) / 1000).to_string()),
        _ => Value::Null,
    };
    Ok(json!({
        "sid": sid,
        "account_sid": account,
        "to": call["to"],
        "from": call["from"],
        "status": status,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": rfc2822(&call["created_at"]),
        "start_time": rfc2822(&call["answered_at"]),
        "end_time": rfc2822(&call["ended_at"]),
        "duration": duration,
        "answered_by": Value::Null,
        "uri": format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"),
    }))
}

fn parse_ts(t: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t).ok()
}

/// Twilio's call status for a call that is not live.
fn twilio_status(call: &Value) -> &'static str {
    match call["outcome"].as_str() {
        Some("answered") | Some("agent_unavailable") | Some("abandoned") => "completed",
        Some("busy") => "busy",
        Some("no_answer") => "no-answer",
        Some("interrupted") => "canceled",
        Some(_) => "failed",
        None => match call["status"].as_str() {
            Some("cancelled") => "canceled",
            _ => "queued",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_are_plain_words() {
        // (Status, the message or None when accepted)
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("completed"), None),
            (Some("canceled"), None),
            (
                Some("bogus"),
                Some("Status must be completed or canceled, got \"bogus\""),
            ),
            (None, Some("Status is required (completed or canceled)")),
            (Some(""), Some("Status is required (completed or canceled)")),
        ];
        for (status, want) in cases {
            assert_eq!(check_status(*status).err().as_deref(), *want, "{status:?}");
        }
    }
}
