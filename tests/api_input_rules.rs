//! The API's input rules, each on SQLite and PostgreSQL: control characters
//! refused by field name (and by row in imports, the other rows stored),
//! impossible ids answered without touching the database, the error shape on
//! every kind of error, opaque page tokens, numbers that must be numbers,
//! length limits, and plain-words messages. Each case checks the rows stored
//! before and after.

mod common;

use common::{expect_error, expect_json, id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Asserts a 422 naming `field`, with `details` in the error.
async fn expect_field(r: reqwest::Response, field: &str) -> Value {
    let body = expect_json(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
    body
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
}

async fn docs(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        count(app, "outdials").await,
        count(app, "outplans").await,
        count(app, "agents").await,
        count(app, "campaigns").await,
    )
}

async fn control_characters_are_refused_by_field_and_nothing_is_stored(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, op, ag) = app.fixtures().await;
    let before = docs(&app).await;

    expect_field(
        app.post("/v1/outdials", &json!({"name": "a\u{0}b"})).await,
        "name",
    )
    .await;
    let e = expect_field(
        app.post(
            "/v1/outdials",
            &json!({"name": "ok", "detail": "bell\u{7}"}),
        )
        .await,
        "detail",
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("U+0007 at character 5"),
        "{e}"
    );
    expect_field(
        app.post("/v1/outplans", &json!({"name": "p\u{1b}"})).await,
        "name",
    )
    .await;
    expect_field(
        app.post(
            "/v1/agents",
            &json!({"name": "bot", "kind": "media_stream", "url": "ws://h/\u{0}"}),
        )
        .await,
        "url",
    )
    .await;
    expect_field(
        app.post(
            "/v1/campaigns",
            &json!({"name": "c\u{0}", "outdial_id": od, "outplan_id": op, "agent_id": ag}),
        )
        .await,
        "name",
    )
    .await;
    expect_field(
        app.post(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": "\u{0}", "outplan_id": op, "agent_id": ag}),
        )
        .await,
        "outdial_id",
    )
    .await;
    // A PATCH with a NUL leaves the stored document as it was.
    expect_field(
        app.patch(&format!("/v1/outdials/{od}"), &json!({"name": "x\u{0}"}))
            .await,
        "name",
    )
    .await;
    let stored = expect_json(app.get(&format!("/v1/outdials/{od}")).await, StatusCode::OK).await;
    assert_eq!(stored["name"], "leads");
    assert_eq!(docs(&app).await, before);

    // Tabs and line breaks are allowed in a detail, nowhere else.
    let ok = app
        .post_ok(
            "/v1/outdials",
            &json!({"name": "multi", "detail": "line one\r\n\tline two"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(ok["detail"], "line one\r\n\tline two");
    expect_field(
        app.post("/v1/outdials", &json!({"name": "two\nlines"}))
            .await,
        "name",
    )
    .await;

    // Webhook secret and url, DNC reason, cancel reason.
    let webhooks = count(&app, "webhooks").await;
    expect_field(
        app.post(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/h", "secret": "0123456789abcdef\u{0}"}),
        )
        .await,
        "secret",
    )
    .await;
    expect_field(
        app.post(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/\u{0}", "secret": "0123456789abcdef"}),
        )
        .await,
        "url",
    )
    .await;
    assert_eq!(count(&app, "webhooks").await, webhooks);

    expect_field(
        app.post(
            "/v1/dnc",
            &json!({"number": "+15550001234", "reason": "a\u{0}b"}),
        )
        .await,
        "reason",
    )
    .await;
    expect_field(
        app.post(
            "/v1/dnc",
            &json!({"numbers": ["+15550001234", "+1555\u{0}"]}),
        )
        .await,
        "numbers[1]",
    )
    .await;
    assert_eq!(count(&app, "dnc").await, 0);

    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15550001111", "schedule_type": "scheduled", "scheduled_at": "2099-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        )
        .await;
    let call_id = id_of(&call);
    expect_field(
        app.post(
            &format!("/v1/calls/{call_id}/cancel"),
            &json!({"reason": "x\u{0}"}),
        )
        .await,
        "reason",
    )
    .await;
    let after = expect_json(
        app.get(&format!("/v1/calls/{call_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["status"], "scheduled", "{after}");
    app.stop().await;
}

on_both_backends!(
    control_characters_are_refused_by_field_and_nothing_is_stored,
    control_characters_are_refused_by_field_and_nothing_is_stored
);

async fn a_bad_row_in_an_import_is_reported_and_the_others_are_stored(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, _, _) = app.fixtures().await;
    let path = format!("/v1/outdials/{od}/targets");

    // JSON: reported by index, with the field.
    let report = app
        .post_ok(
            &path,
            &json!({"targets": [
                {"name": "ok", "destination": {"type": "tel", "target": "+15551112221"}},
                {"name": "a\u{0}b", "destination": {"type": "tel", "target": "+15551112222"}},
                {"name": "ok too", "destination": {"type": "tel", "target": "+1555111\u{0}2223"}},
                {"name": "fine", "destination": {"type": "tel", "target": "+15551112224"}}
            ]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(report["created"], 2, "{report}");
    assert_eq!(report["invalid_count"], 2, "{report}");
    assert_eq!(report["invalid"][0]["index"], 1, "{report}");
    assert_eq!(report["invalid"][0]["field"], "targets[1].name", "{report}");
    assert_eq!(report["invalid"][1]["index"], 2, "{report}");
    assert_eq!(
        report["invalid"][1]["field"], "targets[2].destination.target",
        "{report}"
    );
    assert_eq!(count(&app, "targets").await, 2);

    // CSV: a NUL in a cell is a row error by line; the next row is stored.
    let r = app
        .post_csv(
            &path,
            "phone,name\n+15551113331,a\u{0}b\n+15551113332,fine\n".to_string(),
        )
        .await;
    let report = expect_json(r, StatusCode::OK).await;
    assert_eq!(report["created"], 1, "{report}");
    assert_eq!(report["invalid_count"], 1, "{report}");
    assert_eq!(report["invalid"][0]["line"], 2, "{report}");
    assert_eq!(report["invalid"][0]["field"], "name", "{report}");
    assert_eq!(count(&app, "targets").await, 3);
    let names = app
        .rows("SELECT name FROM targets ORDER BY name")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect::<Vec<_>>();
    assert_eq!(names, vec!["fine", "fine", "ok"]);
    app.stop().await;
}

on_both_backends!(
    a_bad_row_in_an_import_is_reported_and_the_others_are_stored,
    a_bad_row_in_an_import_is_reported_and_the_others_are_stored
);

async fn ids_that_cannot_be_ids_are_not_found_and_filters_are_refused(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, _, _) = app.fixtures().await;
    for (path, noun) in [
        ("/v1/outdials/%00", "outdial"),
        ("/v1/outdials/%FF%FE", "outdial"),
        ("/v1/outplans/%FF%FE", "outplan"),
        ("/v1/agents/a%00b", "agent"),
        ("/v1/targets/%00", "target"),
        ("/v1/targets/%00/events", "target"),
        ("/v1/campaigns/%FF%FE", "campaign"),
        ("/v1/campaigns/%00/events", "campaign"),
        ("/v1/calls/%00", "call"),
        ("/v1/webhooks/%00", "webhook"),
        ("/v1/outdials/%00/targets", "outdial"),
    ] {
        let body = expect_error(
            app.get(path).await,
            StatusCode::NOT_FOUND,
            "not_found",
            noun,
        )
        .await;
        assert!(body["error"]["details"].is_null(), "{path}: {body}");
    }
    let r = app
        .client
        .delete(app.url("/v1/outdials/%00"))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "outdial").await;

    for key in ["campaign_id", "target_id", "agent_id"] {
        expect_field(app.get(&format!("/v1/calls?{key}=%00")).await, key).await;
        expect_field(app.get(&format!("/v1/calls?{key}=nope")).await, key).await;
    }
    // A well-formed id that is not stored filters to nothing.
    let list = expect_json(
        app.get("/v1/calls?campaign_id=019b0000-0000-7000-8000-000000000000")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([]));

    // DNC paths are numbers: invalid UTF-8 or NUL names the field.
    expect_field(app.get("/v1/dnc/%FF%FE").await, "number").await;
    expect_field(app.get("/v1/dnc/%2B1555%00").await, "number").await;
    assert_eq!(count(&app, "outdials").await, 1);
    let _ = od;
    app.stop().await;
}

on_both_backends!(
    ids_that_cannot_be_ids_are_not_found_and_filters_are_refused,
    ids_that_cannot_be_ids_are_not_found_and_filters_are_refused
);

async fn every_error_has_the_shape_with_details_and_405_says_allow(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, _, _) = app.fixtures().await;
    let send = |m: &str, p: &str| {
        app.client
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                app.url(p),
            )
            .header("x-api-key", &app.key)
            .send()
    };
    for (method, path, allow) in [
        (
            "PUT",
            format!("/v1/outdials/{od}"),
            vec!["GET", "PATCH", "DELETE"],
        ),
        ("PATCH", "/v1/webhooks/x".to_string(), vec!["GET", "DELETE"]),
        ("GET", "/v1/dnc".to_string(), vec!["POST"]),
        ("DELETE", "/v1/outdials".to_string(), vec!["GET", "POST"]),
        ("POST", "/healthz".to_string(), vec!["GET"]),
    ] {
        let r = send(method, &path).await.unwrap();
        let header = r
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_string();
        for m in allow {
            assert!(
                header.contains(m),
                "{method} {path}: Allow {header:?} lacks {m}"
            );
        }
        let body = expect_json(r, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(method),
            "{body}"
        );
        assert!(body["error"].as_object().unwrap().contains_key("details"));
    }
    for path in ["/v1/nope", "/nope", "/v1/outdials/x/y"] {
        let body = expect_json(send("GET", path).await.unwrap(), StatusCode::NOT_FOUND).await;
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        assert!(
            body["error"].as_object().unwrap().contains_key("details"),
            "{body}"
        );
    }
    // Errors without more to say carry details: null.
    let r = app
        .client
        .get(app.url("/v1/outdials"))
        .send()
        .await
        .unwrap();
    let body = expect_json(r, StatusCode::UNAUTHORIZED).await;
    assert!(
        body["error"].as_object().unwrap().contains_key("details"),
        "{body}"
    );
    let r = app
        .client
        .post(app.url("/v1/outdials"))
        .header("x-api-key", &app.key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let body = expect_json(r, StatusCode::BAD_REQUEST).await;
    assert!(body["error"]["details"].is_null(), "{body}");
    assert!(
        body["error"].as_object().unwrap().contains_key("details"),
        "{body}"
    );
    app.stop().await;
}

on_both_backends!(
    every_error_has_the_shape_with_details_and_405_says_allow,
    every_error_has_the_shape_with_details_and_405_says_allow
);

async fn page_tokens_are_checked(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    for name in ["a", "b", "c"] {
        app.post_ok("/v1/outdials", &json!({"name": name}), StatusCode::CREATED)
            .await;
    }
    let first = expect_json(app.get("/v1/outdials?page_size=2").await, StatusCode::OK).await;
    let token = first["next_page_token"].as_str().expect("a second page");
    let second = expect_json(
        app.get(&format!("/v1/outdials?page_size=2&page_token={token}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["name"], "c");

    let forged_id = base64_url(&format!("p1:{}", id_of(&second["items"][0])));
    for bad in [
        "AAAA",
        "%00",
        "%FF",
        &base64_url("p1:%00"),
        &base64_url(first["items"][0]["id"].as_str().unwrap()),
        &format!("{token}="),
    ] {
        let body = expect_error(
            app.get(&format!("/v1/outdials?page_token={bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_page_token",
            "page_token",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "page_token");
    }
    // A well-formed token made elsewhere is a cursor like any other.
    let after_last = expect_json(
        app.get(&format!("/v1/outdials?page_token={forged_id}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after_last["items"], json!([]));
    // Target events use numbers as keys.
    let t = app
        .post_ok(
            &format!("/v1/outdials/{}/targets", id_of(&first["items"][0])),
            &json!({"destination": {"type": "tel", "target": "+15551114441"}}),
            StatusCode::CREATED,
        )
        .await;
    expect_error(
        app.get(&format!("/v1/targets/{}/events?page_token=AAAA", id_of(&t)))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_page_token",
        "page_token",
    )
    .await;
    assert_eq!(count(&app, "outdials").await, 3);
    app.stop().await;
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

on_both_backends!(page_tokens_are_checked, page_tokens_are_checked);

async fn numbers_lengths_and_either_or_fields_are_enforced(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let (od, op, ag) = app.fixtures().await;
    let plans = count(&app, "outplans").await;
    let e = expect_field(
        app.post(
            "/v1/outplans",
            &json!({"name": "p", "dial_timeout_s": "25"}),
        )
        .await,
        "dial_timeout_s",
    )
    .await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("a string"),
        "{e}"
    );
    expect_field(
        app.post(
            "/v1/outplans",
            &json!({"name": "p", "retry": {"busy_s": "5"}}),
        )
        .await,
        "retry.busy_s",
    )
    .await;
    assert_eq!(count(&app, "outplans").await, plans);

    let campaign = |cps: Value| json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": ag, "calls_per_second": cps});
    let e = expect_field(
        app.post("/v1/campaigns", &campaign(json!(1e-9))).await,
        "calls_per_second",
    )
    .await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("0.01"),
        "{e}"
    );
    expect_field(
        app.post("/v1/campaigns", &campaign(json!("5"))).await,
        "calls_per_second",
    )
    .await;
    assert_eq!(count(&app, "campaigns").await, 0);
    let c = app
        .post_ok("/v1/campaigns", &campaign(json!(0.01)), StatusCode::CREATED)
        .await;
    assert_eq!(c["calls_per_second"], 0.01);

    // Free-text limits.
    expect_field(
        app.post(
            "/v1/dnc",
            &json!({"number": "+15550001234", "reason": "r".repeat(501)}),
        )
        .await,
        "reason",
    )
    .await;
    expect_field(
        app.post(
            "/v1/dnc",
            &json!({"number": "+15550001234", "reason": "r".repeat(1 << 20)}),
        )
        .await,
        "reason",
    )
    .await;
    expect_field(
        app.post(
            "/v1/outdials",
            &json!({"name": "d", "detail": "d".repeat(2001)}),
        )
        .await,
        "detail",
    )
    .await;
    expect_field(
        app.post(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": "x".repeat(5000), "outplan_id": op, "agent_id": ag}),
        )
        .await,
        "outdial_id",
    )
    .await;
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15550001111", "schedule_type": "scheduled", "scheduled_at": "2099-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        )
        .await;
    let call_id = id_of(&call);
    expect_field(
        app.post(
            &format!("/v1/calls/{call_id}/cancel"),
            &json!({"reason": "r".repeat(1 << 20)}),
        )
        .await,
        "reason",
    )
    .await;
    let still = expect_json(
        app.get(&format!("/v1/calls/{call_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["status"], "scheduled");
    let cancelled = expect_json(
        app.post(
            &format!("/v1/calls/{call_id}/cancel"),
            &json!({"reason": "r".repeat(500)}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");

    // number and numbers together: refused, nothing added.
    let e = expect_field(
        app.post(
            "/v1/dnc",
            &json!({"number": "+15550001234", "numbers": ["+15550001235"]}),
        )
        .await,
        "number",
    )
    .await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("not both"),
        "{e}"
    );
    assert_eq!(count(&app, "dnc").await, 0);
    app.post_ok(
        "/v1/dnc",
        &json!({"numbers": ["+15550001234", "+15550001235"], "reason": "r".repeat(500)}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(count(&app, "dnc").await, 2);
    app.stop().await;
}

on_both_backends!(
    numbers_lengths_and_either_or_fields_are_enforced,
    numbers_lengths_and_either_or_fields_are_enforced
);

async fn messages_name_what_is_missing(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    // A result for an unknown call names the call.
    let unknown = "019b0000-0000-7000-8000-0000000000ff";
    let body = expect_error(
        app.post(
            &format!("/v1/calls/{unknown}/result"),
            &json!({"result": "completed"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        unknown,
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("call"),
        "{body}"
    );

    // The Twilio call update: Status in plain words, Twilio's shape.
    let account = common::test_config("sqlite::memory:", &[])
        .agents
        .account_sid;
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15550001111", "schedule_type": "scheduled", "scheduled_at": "2099-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        )
        .await;
    let sid = format!("CA{}", id_of(&call).replace('-', ""));
    let url = app.url(&format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"));
    for (form, message) in [
        (
            vec![("Status", "bogus")],
            "Status must be completed or canceled, got \"bogus\"",
        ),
        (vec![], "Status is required"),
    ] {
        let r = app
            .client
            .post(&url)
            .basic_auth(&account, Some(&app.key))
            .form(&form)
            .send()
            .await
            .unwrap();
        let body = expect_json(r, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["code"], 21218, "{body}");
        assert_eq!(body["status"], 400, "{body}");
        assert!(body["more_info"].is_string(), "{body}");
        let got = body["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{got:?}");
        assert!(!got.contains("Some(") && !got.contains("None"), "{got:?}");
    }
    let still = expect_json(
        app.get(&format!("/v1/calls/{}", id_of(&call))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["status"], "scheduled");
    // A Twilio path that is not UTF-8: Twilio's 404.
    let r = app
        .client
        .get(app.url(&format!("/2010-04-01/Accounts/{account}/Calls/%FF%FE.json")))
        .basic_auth(&account, Some(&app.key))
        .send()
        .await
        .unwrap();
    let body = expect_json(r, StatusCode::NOT_FOUND).await;
    assert_eq!(body["code"], 20404, "{body}");
    app.stop().await;
}

on_both_backends!(messages_name_what_is_missing, messages_name_what_is_missing);
