//! Bad input over every route, from one table: malformed JSON, wrong types,
//! NUL and control characters, huge strings, unknown and impossible ids,
//! invalid UTF-8 in paths, wrong methods, unknown routes and bad query
//! parameters. Nothing may answer 5xx, and every error body has the API's
//! shape with `details` present (the Twilio route: Twilio's shape). Adding a
//! route is one line in [`ROUTES`].

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{id_of, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One route: method, path (placeholders `{outdial}`, `{outplan}`, `{agent}`,
/// `{campaign}`, `{target}`, `{call}`, `{webhook}`, `{number}`, `{account}`,
/// `{callsid}`), and a valid body to spoil field by field (`None`: no body).
struct Route {
    method: &'static str,
    path: &'static str,
    body: fn() -> Option<Value>,
}

const fn r(method: &'static str, path: &'static str, body: fn() -> Option<Value>) -> Route {
    Route { method, path, body }
}

fn none() -> Option<Value> {
    None
}
fn outdial() -> Option<Value> {
    Some(json!({"name": "leads", "detail": "text"}))
}
fn outplan() -> Option<Value> {
    Some(
        json!({"name": "plan", "detail": "d", "caller_id": "+15550001000",
        "dial_timeout_s": 30, "try_count_max": 3, "max_call_duration_s": 60,
        "retry": {"busy_s": 1, "no_answer_s": 1, "failed_s": 1, "backoff": 1.0, "jitter_s": 0}}),
    )
}
fn agent() -> Option<Value> {
    Some(json!({"name": "bot", "detail": "d", "kind": "media_stream",
        "url": "ws://127.0.0.1:9/s", "parameters": {"a": "b"}, "max_concurrent_sessions": 5}))
}
fn target() -> Option<Value> {
    Some(
        json!({"name": "Jane", "destinations": [{"type": "tel", "target": "+15551230001"}],
        "try_count_max": 2, "variables": {"k": "v"}, "timezone": "America/Chicago",
        "client_token": "tok", "not_before": "2026-01-01T00:00:00Z"}),
    )
}
fn campaign() -> Option<Value> {
    Some(
        json!({"name": "c", "detail": "d", "outdial_id": "{outdial}", "outplan_id": "{outplan}",
        "agent_id": "{agent}", "trunk": "default", "max_concurrent_calls": 2,
        "calls_per_second": 1.0, "priority": "normal", "end_handle": "stop",
        "calling_window": {"timezone": "UTC", "start": "00:00", "end": "23:59"},
        "schedule": {"daily_start": "09:00", "days": ["mon"], "timezone": "UTC"}}),
    )
}
fn stop() -> Option<Value> {
    Some(json!({"force": false}))
}
fn call() -> Option<Value> {
    Some(
        json!({"to": "+15550002222", "from": "+15550001000", "schedule_type": "scheduled",
        "scheduled_at": "2099-01-01T00:00:00Z", "max_duration": 60, "max_retries": 1,
        "ring_timeout": 20, "retry_delay": 5}),
    )
}
fn reschedule() -> Option<Value> {
    Some(json!({"scheduled_at": "2099-02-01T00:00:00Z"}))
}
fn cancel() -> Option<Value> {
    Some(json!({"reason": "no longer needed"}))
}
fn result() -> Option<Value> {
    Some(json!({"result": "completed"}))
}
fn dnc() -> Option<Value> {
    Some(json!({"number": "+15550009999", "reason": "asked"}))
}
fn webhook() -> Option<Value> {
    Some(
        json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"],
        "secret": "0123456789abcdef0123"}),
    )
}

/// Every route herald serves.
const ROUTES: &[Route] = &[
    r("GET", "/healthz", none),
    r("GET", "/metrics", none),
    r("POST", "/v1/outdials", outdial),
    r("GET", "/v1/outdials", none),
    r("GET", "/v1/outdials/{outdial}", none),
    r("PATCH", "/v1/outdials/{outdial}", outdial),
    r("DELETE", "/v1/outdials/{outdial}", none),
    r("POST", "/v1/outdials/{outdial}/targets", target),
    r("GET", "/v1/outdials/{outdial}/targets", none),
    r("GET", "/v1/targets/{target}", none),
    r("DELETE", "/v1/targets/{target}", none),
    r("GET", "/v1/targets/{target}/events", none),
    r("POST", "/v1/outplans", outplan),
    r("GET", "/v1/outplans", none),
    r("GET", "/v1/outplans/{outplan}", none),
    r("PATCH", "/v1/outplans/{outplan}", outplan),
    r("DELETE", "/v1/outplans/{outplan}", none),
    r("POST", "/v1/agents", agent),
    r("GET", "/v1/agents", none),
    r("GET", "/v1/agents/{agent}", none),
    r("PATCH", "/v1/agents/{agent}", agent),
    r("DELETE", "/v1/agents/{agent}", none),
    r("POST", "/v1/campaigns", campaign),
    r("GET", "/v1/campaigns", none),
    r("GET", "/v1/campaigns/{campaign}", none),
    r("PATCH", "/v1/campaigns/{campaign}", campaign),
    r("DELETE", "/v1/campaigns/{campaign}", none),
    r("POST", "/v1/campaigns/{campaign}/start", none),
    r("POST", "/v1/campaigns/{campaign}/pause", none),
    r("POST", "/v1/campaigns/{campaign}/resume", none),
    r("POST", "/v1/campaigns/{campaign}/stop", stop),
    r("GET", "/v1/campaigns/{campaign}/stats", none),
    r("GET", "/v1/campaigns/{campaign}/events", none),
    r("POST", "/v1/calls", call),
    r("GET", "/v1/calls", none),
    r("GET", "/v1/calls/{call}", none),
    r("PATCH", "/v1/calls/{call}", reschedule),
    r("DELETE", "/v1/calls/{call}", none),
    r("POST", "/v1/calls/{call}/cancel", cancel),
    r("POST", "/v1/calls/{call}/result", result),
    r("POST", "/v1/dnc", dnc),
    r("GET", "/v1/dnc/{number}", none),
    r("DELETE", "/v1/dnc/{number}", none),
    r("POST", "/v1/webhooks", webhook),
    r("GET", "/v1/webhooks", none),
    r("GET", "/v1/webhooks/{webhook}", none),
    r("DELETE", "/v1/webhooks/{webhook}", none),
    r(
        "GET",
        "/2010-04-01/Accounts/{account}/Calls/{callsid}.json",
        none,
    ),
    r(
        "POST",
        "/2010-04-01/Accounts/{account}/Calls/{callsid}.json",
        none,
    ),
];

const PLACEHOLDERS: &[&str] = &[
    "{outdial}",
    "{outplan}",
    "{agent}",
    "{campaign}",
    "{target}",
    "{call}",
    "{webhook}",
    "{number}",
    "{account}",
    "{callsid}",
];

fn is_twilio(path: &str) -> bool {
    path.starts_with("/2010-04-01/")
}

/// Real ids for every placeholder.
async fn fixtures(app: &TestApp) -> BTreeMap<&'static str, String> {
    let (od, op, ag) = app.fixtures().await;
    let t = app
        .post_ok(
            &format!("/v1/outdials/{od}/targets"),
            &json!({"destination": {"type": "tel", "target": "+15551239999"}}),
            StatusCode::CREATED,
        )
        .await;
    let c = app
        .post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag}),
            StatusCode::CREATED,
        )
        .await;
    let call = app
        .post_ok("/v1/calls", &call().unwrap(), StatusCode::CREATED)
        .await;
    let w = app
        .post_ok("/v1/webhooks", &webhook().unwrap(), StatusCode::CREATED)
        .await;
    app.post_ok(
        "/v1/dnc",
        &json!({"number": "+15550008888"}),
        StatusCode::CREATED,
    )
    .await;
    let call_id = id_of(&call);
    BTreeMap::from([
        ("{outdial}", od),
        ("{outplan}", op),
        ("{agent}", ag),
        ("{campaign}", id_of(&c)),
        ("{target}", id_of(&t)),
        ("{callsid}", format!("CA{}", call_id.replace('-', ""))),
        ("{call}", call_id),
        ("{webhook}", id_of(&w)),
        ("{number}", "+15550008888".to_string()),
        (
            "{account}",
            common::test_config("sqlite::memory:", &[])
                .agents
                .account_sid,
        ),
    ])
}

fn fill(path: &str, ids: &BTreeMap<&'static str, String>) -> String {
    let mut p = path.to_string();
    for (k, v) in ids {
        p = p.replace(k, v);
    }
    p
}

fn fill_value(v: &Value, ids: &BTreeMap<&'static str, String>) -> Value {
    match v {
        Value::String(s) => Value::String(fill(s, ids)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_value(x, ids)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_value(x, ids)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Sends one request (with the API key, and Basic auth on the Twilio route).
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    account: &str,
) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("x-api-key", &app.key)
        .basic_auth(account, Some(&app.key));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    req.send().await.expect("request sent")
}

/// Asserts no 5xx and, for a 4xx, the error shape; returns the status.
async fn check(r: reqwest::Response, what: &str) -> StatusCode {
    let status = r.status();
    let allow = r.headers().get("allow").cloned();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status.is_success() || status.is_redirection() {
        // Not read: an event stream that was opened never ends.
        return status;
    }
    let text = r.text().await.unwrap_or_default();
    assert!(
        !status.is_server_error(),
        "{what}: answered {status}: {text}"
    );
    if status.is_client_error() {
        assert!(
            ct.starts_with("application/json"),
            "{what}: {status} with content-type {ct:?}: {text}"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {text}"));
        if what.contains(" /2010-04-01/") && status != StatusCode::METHOD_NOT_ALLOWED {
            for k in ["code", "message", "more_info", "status"] {
                assert!(
                    body.get(k).is_some(),
                    "{what}: Twilio error lacks {k}: {body}"
                );
            }
            assert_eq!(body["status"], status.as_u16(), "{what}: {body}");
        } else {
            let e = &body["error"];
            assert!(e["code"].is_string(), "{what}: no error.code: {body}");
            assert!(e["message"].is_string(), "{what}: no error.message: {body}");
            assert!(
                e.as_object().is_some_and(|o| o.contains_key("details")),
                "{what}: error.details missing: {body}"
            );
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(allow.is_some(), "{what}: 405 without Allow");
        }
    }
    status
}

/// Values that replace one field of a valid body.
fn spoilers() -> Vec<(&'static str, Value)> {
    vec![
        ("NUL", json!("a\u{0}b")),
        ("ESC", json!("x\u{1b}[31m")),
        ("huge", json!("x".repeat(200_000))),
        ("number as text", json!("25")),
        ("boolean", json!(true)),
        ("negative", json!(-1)),
        ("huge number", json!(1e308)),
        ("array", json!([1, "a\u{0}"])),
        ("object", json!({"a\u{0}": "b\u{0}"})),
    ]
}

/// Every way of spoiling one route.
async fn probe_route(app: &TestApp, route: &Route, ids: &BTreeMap<&'static str, String>) {
    let account = ids["{account}"].clone();
    let path = fill(route.path, ids);
    let label = |what: &str| format!("{} {} ({what})", route.method, route.path);

    // Ids in the path: unknown, impossible, NUL, invalid UTF-8, huge.
    for ph in PLACEHOLDERS.iter().filter(|p| route.path.contains(*p)) {
        for bad in [
            "019b0000-0000-7000-8000-000000000000",
            "nope",
            "%00",
            "a%00b",
            "%FF%FE",
            "%0A%0D",
            &"z".repeat(5000),
        ] {
            let mut p = route.path.replace(ph, bad);
            p = fill(&p, ids);
            let body = (route.body)().map(|b| serde_json::to_vec(&fill_value(&b, ids)).unwrap());
            let st = check(
                send(app, route.method, &p, body, &account).await,
                &label(&format!("{ph}={bad:.12}")),
            )
            .await;
            assert!(
                st.is_client_error(),
                "{}: {st}",
                label(&format!("{ph}={bad:.12}"))
            );
        }
    }

    // Query parameters: on every GET, the list filters and paging.
    if route.method == "GET" && !is_twilio(route.path) {
        for q in [
            "page_token=AAAA",
            "page_token=%00",
            "page_token=%FF",
            "page_size=abc",
            "page_size=0",
            "page_size=99999999999999999999",
            "state=%00",
            "status=%00",
            "outcome=%00",
            "campaign_id=%00",
            "target_id=nope",
            "agent_id=%FF%FE",
            "created_after=%00",
            "after=-1",
        ] {
            check(
                send(app, "GET", &format!("{path}?{q}"), None, &account).await,
                &label(q),
            )
            .await;
        }
    }

    // Bodies: malformed, wrong top-level types, then each field spoiled.
    let Some(good) = (route.body)() else {
        if route.method != "GET" {
            for raw in [&b"{\"a\":"[..], b"\xff\xfe", b"[]"] {
                check(
                    send(app, route.method, &path, Some(raw.to_vec()), &account).await,
                    &label("body on a route without one"),
                )
                .await;
            }
        }
        return;
    };
    let good = fill_value(&good, ids);
    for (what, raw) in [
        ("malformed JSON", b"{\"name\": ".to_vec()),
        ("not UTF-8", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("NUL escape", b"{\"name\": \"a\\u0000b\"}".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"x\"".to_vec()),
        ("null", b"null".to_vec()),
        ("number", b"42".to_vec()),
        ("deep", "[".repeat(10_000).into_bytes()),
    ] {
        check(
            send(app, route.method, &path, Some(raw), &account).await,
            &label(what),
        )
        .await;
    }
    let Value::Object(fields) = &good else {
        unreachable!("bodies are objects")
    };
    for key in fields.keys() {
        for (what, v) in spoilers() {
            let mut b = good.clone();
            b[key] = v;
            check(
                send(
                    app,
                    route.method,
                    &path,
                    Some(serde_json::to_vec(&b).unwrap()),
                    &account,
                )
                .await,
                &label(&format!("{key} {what}")),
            )
            .await;
        }
    }
    let mut unknown = good.clone();
    unknown["no_such_field\u{0}"] = json!(1);
    check(
        send(
            app,
            route.method,
            &path,
            Some(serde_json::to_vec(&unknown).unwrap()),
            &account,
        )
        .await,
        &label("unknown field"),
    )
    .await;
}

async fn every_route_answers_bad_input_with_a_4xx_in_the_error_shape(db: Db) {
    let Some(app) = common::spawn_instant_app(db, &[]).await else {
        return;
    };
    let ids = fixtures(&app).await;
    let account = ids["{account}"].clone();

    // Routes that change or delete the fixtures go last.
    let (last, first): (Vec<&Route>, Vec<&Route>) = ROUTES
        .iter()
        .partition(|r| r.method == "DELETE" || r.path.ends_with("/start"));
    for route in first.into_iter().chain(last) {
        probe_route(&app, route, &ids).await;
    }

    // Wrong methods: every method a path does not serve is a 405 with Allow.
    let mut served: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for route in ROUTES {
        served.entry(route.path).or_default().insert(route.method);
    }
    for (path, methods) in &served {
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods.contains(m) {
                continue;
            }
            let r = send(&app, m, &fill(path, &ids), None, &account).await;
            let st = check(r, &format!("{m} {path} (wrong method)")).await;
            assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        }
    }

    // Unknown routes.
    for p in [
        "/nope",
        "/v1",
        "/v1/nope",
        "/v1/outdials/x/y/z",
        "/v1/%FF",
        "/%00",
    ] {
        let st = check(send(&app, "GET", p, None, &account).await, p).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{p}");
    }
    app.stop().await;
}

on_both_backends!(
    every_route_answers_bad_input_with_a_4xx_in_the_error_shape,
    every_route_answers_bad_input_with_a_4xx_in_the_error_shape
);
