//! REST tests for auth, outdials, outplans, agents and campaigns against the
//! real server on port 0, on SQLite and on PostgreSQL.

mod common;

use common::{expect_error, expect_json, id_of, Db};
use reqwest::StatusCode;
use serde_json::json;

async fn every_v1_route_needs_a_valid_key(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[], Some("boot-key-123")).await else {
        return;
    };
    let c = &app.client;
    // /healthz is open.
    let health = expect_json(
        c.get(app.url("/healthz")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(health["database"], "ok");
    for path in [
        "/v1/outdials",
        "/v1/outplans",
        "/v1/agents",
        "/v1/campaigns",
        "/v1/targets/x",
    ] {
        let r = c.get(app.url(path)).send().await.unwrap();
        expect_error(
            r,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing X-API-Key",
        )
        .await;
        let r = c
            .get(app.url(path))
            .header("x-api-key", "hk_wrong")
            .send()
            .await
            .unwrap();
        expect_error(
            r,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid API key",
        )
        .await;
    }
    let r = c
        .post(app.url("/v1/outdials"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A stored key and the bootstrap key both work.
    expect_json(app.get("/v1/outdials").await, StatusCode::OK).await;
    let r = c
        .get(app.url("/v1/outdials"))
        .header("x-api-key", "boot-key-123")
        .send()
        .await
        .unwrap();
    expect_json(r, StatusCode::OK).await;
    // Nothing about the key is stored in clear.
    let hashes: Vec<String> = match &app.store().pool {
        herald::store::Pool::Sqlite(p) => sqlx::query_scalar("SELECT key_hash FROM api_keys")
            .fetch_all(p)
            .await
            .unwrap(),
        herald::store::Pool::Postgres(p) => sqlx::query_scalar("SELECT key_hash FROM api_keys")
            .fetch_all(p)
            .await
            .unwrap(),
    };
    assert_eq!(hashes.len(), 1);
    assert!(!hashes[0].contains(&app.key) && hashes[0].len() == 64);
    app.stop().await;
}
on_both_backends!(auth, every_v1_route_needs_a_valid_key);

async fn outdials_crud(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app
        .post_ok(
            "/v1/outdials",
            &json!({"name": " leads ", "detail": "Q4"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(od["name"], "leads");
    let id = id_of(&od);
    let got = expect_json(app.get(&format!("/v1/outdials/{id}")).await, StatusCode::OK).await;
    assert_eq!(got["detail"], "Q4");
    assert_eq!(got["target_count"], 0);
    let patched = expect_json(
        app.patch(&format!("/v1/outdials/{id}"), &json!({"name": "renamed"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["name"], "renamed");
    assert_eq!(patched["detail"], "Q4");
    let r = app
        .patch(&format!("/v1/outdials/{id}"), &json!({"name": ""}))
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "name",
    )
    .await;
    let r = app.post("/v1/outdials", &json!({"nme": "x"})).await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "nme",
    )
    .await;
    let list = expect_json(app.get("/v1/outdials").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["next_page_token"].is_null());
    assert_eq!(
        app.delete(&format!("/v1/outdials/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = app.get(&format!("/v1/outdials/{id}")).await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found", &id).await;
    let r = app.delete(&format!("/v1/outdials/{id}")).await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "outdial").await;
    app.stop().await;
}
on_both_backends!(outdials, outdials_crud);

async fn outplans_and_agents_crud_and_validation(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let plan = json!({"name": "sales-3x", "caller_id": "+15550001111", "dial_timeout_s": 25, "try_count_max": 3,
        "retry": {"busy_s": 300, "no_answer_s": 3600, "failed_s": 600, "backoff": 2.0, "jitter_s": 30},
        "max_call_duration_s": 600});
    let op = app
        .post_ok("/v1/outplans", &plan, StatusCode::CREATED)
        .await;
    assert_eq!(op["retry"]["backoff"], 2.0);
    let id = id_of(&op);
    let p = expect_json(
        app.patch(
            &format!("/v1/outplans/{id}"),
            &json!({"retry": {"busy_s": 60}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(p["retry"]["busy_s"], 60);
    assert_eq!(
        p["retry"]["no_answer_s"], 3600,
        "merge patch keeps siblings"
    );
    for (body, field) in [
        (json!({"name": "x", "caller_id": "5550001111"}), "caller_id"),
        (
            json!({"name": "x", "retry": {"jitter_s": -1}}),
            "retry.jitter_s",
        ),
        (json!({"name": "x", "try_count_max": 0}), "try_count_max"),
        (json!({"caller_id": "+15550001111"}), "name"),
    ] {
        let r = app.post("/v1/outplans", &body).await;
        let err = expect_error(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
        )
        .await;
        assert_eq!(err["error"]["details"]["field"], field);
    }
    let r = app
        .patch(&format!("/v1/outplans/{id}"), &json!({"dial_timeout_s": 1}))
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "dial_timeout_s",
    )
    .await;
    // The failed PATCH changed nothing.
    let p = expect_json(app.get(&format!("/v1/outplans/{id}")).await, StatusCode::OK).await;
    assert_eq!(p["dial_timeout_s"], 25);

    let ag = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "survey-bot", "kind": "media_stream", "url": "ws://127.0.0.1:8765/stream",
                    "parameters": {"voice": "alloy"}, "max_concurrent_sessions": 200}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(ag["parameters"]["voice"], "alloy");
    let sip = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "desk", "kind": "sip", "url": "sip:desk@127.0.0.1:5070"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(sip["kind"], "sip");
    for (body, field) in [
        (
            json!({"name": "a", "kind": "media_stream", "url": "https://x"}),
            "url",
        ),
        (json!({"name": "a", "kind": "telepathy"}), "kind"),
        (json!({"name": "a", "kind": "script"}), "script"),
        (
            json!({"name": "a", "kind": "sip", "url": "sip:a@b", "max_concurrent_sessions": 0}),
            "max_concurrent_sessions",
        ),
    ] {
        let r = app.post("/v1/agents", &body).await;
        expect_error(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
        )
        .await;
    }
    let list = expect_json(app.get("/v1/agents?page_size=1").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let token = list["next_page_token"].as_str().expect("a second page");
    let list2 = expect_json(
        app.get(&format!("/v1/agents?page_size=1&page_token={token}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_ne!(list2["items"][0]["id"], list["items"][0]["id"]);
    assert!(list2["next_page_token"].is_null());
    let r = app.get("/v1/agents?page_size=1001").await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "page_size",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/agents/{}", id_of(&sip)))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}
on_both_backends!(outplans_agents, outplans_and_agents_crud_and_validation);

async fn campaigns_crud_and_references(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, op, ag) = app.fixtures().await;
    let body = json!({
        "name": "flu-shot reminders", "outdial_id": od, "outplan_id": op, "agent_id": ag,
        "trunk": "default", "max_concurrent_calls": 50, "calls_per_second": 5,
        "calling_window": {"timezone": "America/Chicago", "days": ["mon","tue","wed","thu","fri"], "start": "09:00", "end": "20:00"},
        "schedule": {"daily_start": "09:00"}, "priority": "normal", "end_handle": "stop"
    });
    let c = app
        .post_ok("/v1/campaigns", &body, StatusCode::CREATED)
        .await;
    assert_eq!(c["status"], "draft");
    assert_eq!(c["calling_window"]["timezone"], "America/Chicago");
    let id = id_of(&c);
    let p = expect_json(
        app.patch(
            &format!("/v1/campaigns/{id}"),
            &json!({"calls_per_second": 10}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(p["calls_per_second"], 10.0);
    assert_eq!(p["max_concurrent_calls"], 50);

    let mut bad = body.clone();
    bad["outdial_id"] = json!("nope");
    let r = app.post("/v1/campaigns", &bad).await;
    let e = expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "outdial_id",
    )
    .await;
    assert!(e["error"]["message"].as_str().unwrap().contains("nope"));
    let mut bad = body.clone();
    bad["trunk"] = json!("carrier-x");
    expect_error(
        app.post("/v1/campaigns", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "trunk",
    )
    .await;
    let mut bad = body.clone();
    bad["calling_window"]["days"] = json!(["mon", "holiday"]);
    expect_error(
        app.post("/v1/campaigns", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "calling_window.days[1]",
    )
    .await;
    let mut bad = body.clone();
    bad["calling_window"]["timezone"] = json!("America/Chicagoo");
    expect_error(
        app.post("/v1/campaigns", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "calling_window.timezone",
    )
    .await;
    let mut bad = body.clone();
    bad["calling_window"]["end"] = json!("08:00");
    expect_error(
        app.post("/v1/campaigns", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "calling_window.end",
    )
    .await;

    // Documents a campaign uses cannot be deleted from under it.
    expect_error(
        app.delete(&format!("/v1/outplans/{op}")).await,
        StatusCode::CONFLICT,
        "conflict",
        "used by a campaign",
    )
    .await;
    expect_error(
        app.delete(&format!("/v1/outdials/{od}")).await,
        StatusCode::CONFLICT,
        "conflict",
        "campaign",
    )
    .await;
    let list = expect_json(app.get("/v1/campaigns?status=draft").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    expect_error(
        app.get("/v1/campaigns?status=sleeping").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "status",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/campaigns/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/v1/outplans/{op}")).await.status(),
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}
on_both_backends!(campaigns, campaigns_crud_and_references);

async fn malformed_requests_get_clear_errors(db: Db) {
    let Some(app) =
        common::spawn_app_with(db, &[("HERALD__API__BODY_LIMIT_BYTES", "2048")], None).await
    else {
        return;
    };
    let r = app
        .client
        .post(app.url("/v1/outdials"))
        .header("x-api-key", &app.key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request", "not valid JSON").await;
    let r = app
        .client
        .post(app.url("/v1/outdials"))
        .header("x-api-key", &app.key)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/json",
    )
    .await;
    let big = json!({"name": "x".repeat(5000)});
    expect_error(
        app.post("/v1/outdials", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "body",
    )
    .await;
    expect_error(
        app.post("/v1/outdials", &json!([1, 2])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "JSON object",
    )
    .await;
    expect_error(
        app.get("/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "route",
    )
    .await;
    app.stop().await;
}
on_both_backends!(malformed, malformed_requests_get_clear_errors);

async fn settings_numbers_must_be_json_numbers(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, op, ag) = app.fixtures().await;
    let cases = [
        (
            "/v1/outplans",
            json!({"name": "p", "dial_timeout_s": "25"}),
            "dial_timeout_s: must be an integer, got a string",
        ),
        (
            "/v1/outplans",
            json!({"name": "p", "retry": {"busy_s": "60"}}),
            "retry.busy_s: must be an integer, got a string",
        ),
        (
            "/v1/agents",
            json!({"name": "a", "kind": "sip", "url": "sip:a@127.0.0.1", "max_concurrent_sessions": "25"}),
            "max_concurrent_sessions: must be an integer, got a string",
        ),
        (
            "/v1/campaigns",
            json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag, "max_concurrent_calls": "25"}),
            "max_concurrent_calls: must be an integer, got a string",
        ),
        (
            "/v1/campaigns",
            json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag, "calls_per_second": "25"}),
            "calls_per_second: must be a number, got a string",
        ),
        (
            "/v1/calls",
            json!({"to": "+15551234567", "ring_timeout": "25"}),
            "ring_timeout: must be an integer, got a string",
        ),
    ];
    for (route, body, message) in cases {
        let err = expect_error(
            app.post(route, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
        .await;
        assert_eq!(err["error"]["message"], message, "{route}");
    }
    // Nothing was stored: only the fixtures' outplan and agent exist.
    for (route, n) in [
        ("/v1/outplans", 1),
        ("/v1/agents", 1),
        ("/v1/campaigns", 0),
        ("/v1/calls", 0),
    ] {
        let list = expect_json(app.get(route).await, StatusCode::OK).await;
        assert_eq!(list["items"].as_array().unwrap().len(), n, "{route}");
    }
    // The same numbers as JSON numbers are taken.
    let c = app
        .post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag,
                    "max_concurrent_calls": 25, "calls_per_second": 25}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(c["max_concurrent_calls"], 25);
    assert_eq!(c["calls_per_second"], 25.0);
    app.stop().await;
}
on_both_backends!(json_numbers, settings_numbers_must_be_json_numbers);
