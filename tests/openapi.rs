//! The OpenAPI document against the routes herald serves.
//!
//! Routes are registered only through `utoipa_axum::routes!`, which takes
//! each route's path from its handler's description: a route cannot be
//! served without being described. This test checks that nothing bypasses
//! that (no `.route(` or a plain `Router` in src/api), that every described
//! operation is served (a request for it is not answered by the fallback's
//! "no such route" or a 405), and that the document says what clients and
//! generators need: 3.1, the key scheme, error shapes, SSE media types,
//! unique operation ids, examples.

mod common;

use std::collections::BTreeSet;

use common::{spawn_app, Db};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A value for a path parameter: an id that is well formed but unknown, a
/// number, or a word.
fn sample(param: &str) -> &'static str {
    match param {
        "number" => "%2B15551230001",
        "channel" => "email",
        "address" => "pat%40example.com",
        "file" => "nothing.gif",
        "n" => "0",
        "code" => "no-such-code",
        "worker" => "ana",
        "account" => "AC00000000000000000000000000000000",
        "call" => "CA00000000000000000000000000000000.json",
        _ => "019b0000-0000-7000-8000-00000000000a",
    }
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => sample(p).to_string(),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The Server-Sent Events routes.
const STREAMS: [&str; 4] = [
    "campaign_events",
    "events",
    "worker_events",
    "unassigned_events",
];

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_described_operation_is_served_and_described_fully() {
    let Some(app) = spawn_app(Db::Sqlite).await else {
        return;
    };
    // The document needs no key.
    let r = reqwest::get(app.url("/v1/openapi.json")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"][0],
        "error"
    );

    let ops = operations(&doc);
    assert!(ops.len() >= 100, "only {} operations", ops.len());
    let mut ids = BTreeSet::new();
    let mut examples = 0;
    for (method, path, op) in &ops {
        let what = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
        assert!(
            op["summary"].as_str().is_some_and(|s| s.len() > 5),
            "{what}: no summary"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|c| c.starts_with('2') || c.starts_with('3')),
            "{what}: no success response"
        );
        for (code, resp) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                let content = resp["content"].as_object();
                assert!(content.is_some(), "{what} {code}: no body described");
            }
        }
        let secured = !op["security"].as_array().unwrap().is_empty();
        let public = path == "/healthz"
            || path == "/metrics"
            || path.starts_with("/t/")
            || path.starts_with("/unsubscribe/")
            || path.starts_with("/v1/providers/")
            || path.starts_with("/v1/openapi")
            || path.starts_with("/v1/docs");
        assert_eq!(secured, !public, "{what}: security");
        if secured {
            assert!(responses.contains_key("401"), "{what}: no 401");
        }
        assert_eq!(
            op["responses"]["200"]["content"]["text/event-stream"].is_object(),
            STREAMS.contains(&id),
            "{what}: described as an event stream or not"
        );
        if op["requestBody"].is_object() {
            assert!(responses.contains_key("422"), "{what}: no 422");
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if let Some(r) = schema["$ref"].as_str() {
                let name = r.rsplit('/').next().unwrap();
                if doc["components"]["schemas"][name]["example"].is_object() {
                    examples += 1;
                }
            }
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "path" {
                assert!(
                    path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())),
                    "{what}"
                );
            }
        }
    }
    assert!(
        examples >= 15,
        "only {examples} request bodies have examples"
    );

    // Every described operation is routed: the fallback (404 "no such
    // route") and axum's 405 answer only what is not.
    for (method, path, op) in &ops {
        if STREAMS.contains(&op["operationId"].as_str().unwrap()) {
            continue; // they never end; one is checked below
        }
        let url = app.url(&concrete(path));
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .client
            .request(m, &url)
            .header("X-API-Key", &app.key)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed: {body}"
        );
        assert!(status.as_u16() < 500, "{method} {path}: {status} {body}");
    }
    // A stream answers its headers at once.
    let r = app
        .client
        .get(app.url("/v1/events"))
        .header("X-API-Key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);

    // What is not described is not served.
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("PUT", "/v1/campaigns"),
        ("GET", "/v2/campaigns"),
    ] {
        let r = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            )
            .header("X-API-Key", &app.key)
            .send()
            .await
            .unwrap();
        assert!(
            [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status()),
            "{method} {path}: {}",
            r.status()
        );
    }

    // Each request body's example is a body the route takes: sent as it is,
    // it is accepted, or refused only for naming something that does not
    // exist here (an id, a path's resource, a channel not configured).
    let mut tried = 0;
    for (method, path, op) in &ops {
        let Some(r) = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
        else {
            continue;
        };
        let example = &doc["components"]["schemas"][r.rsplit('/').next().unwrap()]["example"];
        if !example.is_object() {
            continue;
        }
        tried += 1;
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .client
            .request(m, app.url(&concrete(path)))
            .header("X-API-Key", &app.key)
            .json(example)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let field = body["error"]["details"]["field"].as_str().unwrap_or("");
        let code = body["error"]["code"].as_str().unwrap_or("");
        let fine = status.is_success()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::CONFLICT
            || (status == StatusCode::UNPROCESSABLE_ENTITY
                && (field.ends_with("_id") || code == "channel_unavailable"));
        assert!(
            fine,
            "{method} {path}: its example {example} is refused: {status} {body}"
        );
    }
    assert!(tried >= 15, "only {tried} examples sent");

    // The viewer page loads the document and its script, embedded.
    let page = reqwest::get(app.url("/v1/docs"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("spec-url=\"/v1/openapi.json\""), "{page}");
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script");
    let r = reqwest::get(app.url(script)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().len() > 100_000);
    app.stop().await;
}

/// Every route of the API goes through `routes!`: a plain axum route in
/// src/api would be served without being described.
#[test]
fn no_api_route_bypasses_the_document() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut stack = vec![root];
    let mut offenders = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files += 1;
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains(".route(")
                        || code.contains(".route_service(")
                        || code.contains(".nest_service(")
                        || code.contains("Router::new()") && !code.contains("ApiRouter::new()")
                    {
                        offenders.push(format!("{}:{}: {line}", p.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(files > 20, "read only {files} files");
    assert!(
        offenders.is_empty(),
        "routes outside the document:\n{}",
        offenders.join("\n")
    );
}
