//! The Twilio-compatible call resource: Basic auth with herald's account sid
//! and an API key, Twilio's error shapes, and the status of a call that is
//! not live. (Hanging up a live call is in tests/agent_media_stream.rs.)

mod common;

use common::{expect_json, id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// herald's account sid (`agents.account_sid`, the default in tests).
fn account() -> String {
    common::test_config("sqlite::memory:", &[])
        .agents
        .account_sid
}

async fn twilio(
    app: &TestApp,
    method: reqwest::Method,
    account: &str,
    call_sid: &str,
    auth: (&str, &str),
    form: Option<&[(&str, &str)]>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(
            method,
            app.url(&format!(
                "/2010-04-01/Accounts/{account}/Calls/{call_sid}.json"
            )),
        )
        .basic_auth(auth.0, Some(auth.1));
    if let Some(f) = form {
        req = req.form(f);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_call_resource_checks_credentials_and_speaks_twilio() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let ac = account();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15550001111", "schedule_type": "scheduled", "scheduled_at": "2099-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&call);
    let sid = format!("CA{}", id.replace('-', ""));
    let get = reqwest::Method::GET;

    // Right credentials: the call, Twilio-shaped.
    let (st, body) = twilio(&app, get.clone(), &ac, &sid, (&ac, &app.key), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["sid"], sid.as_str());
    assert_eq!(body["account_sid"], ac.as_str());
    assert_eq!(body["to"], "+15550001111");
    assert_eq!(body["status"], "queued");
    assert_eq!(
        body["uri"],
        format!("/2010-04-01/Accounts/{ac}/Calls/{sid}.json")
    );

    // A wrong key, another account, no auth at all: 401 with code 20003.
    for (user, pass) in [
        (ac.as_str(), "wrong"),
        ("AC00000000000000000000000000000000", app.key.as_str()),
    ] {
        let (st, body) = twilio(&app, get.clone(), &ac, &sid, (user, pass), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], 20003, "{body}");
    }
    let r = app
        .client
        .get(app.url(&format!("/2010-04-01/Accounts/{ac}/Calls/{sid}.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));

    // Unknown calls: 404 with code 20404, for a well-formed and a malformed sid.
    for unknown in ["CA0190a0a0000070008000000000000000", "CAnot-a-sid"] {
        let (st, body) = twilio(&app, get.clone(), &ac, unknown, (&ac, &app.key), None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["code"], 20404, "{body}");
        assert_eq!(body["status"], 404);
    }

    // An update other than Status=completed|canceled is refused; one for a
    // call that is not live changes nothing.
    let post = reqwest::Method::POST;
    let (st, body) = twilio(
        &app,
        post.clone(),
        &ac,
        &sid,
        (&ac, &app.key),
        Some(&[("Twiml", "<Response/>")]),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = twilio(
        &app,
        post.clone(),
        &ac,
        &sid,
        (&ac, &app.key),
        Some(&[("Status", "paused")]),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = twilio(
        &app,
        post,
        &ac,
        &sid,
        (&ac, &app.key),
        Some(&[("Status", "completed")]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "queued");
    let r = app.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(expect_json(r, StatusCode::OK).await["status"], "scheduled");
    app.stop().await;
}
