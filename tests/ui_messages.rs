//! The console's messages pages over HTTP on both databases: templates
//! created and changed from the editor's form with REST's validation (an
//! error beside its field, nothing stored), activated; the live preview's
//! fragment; sent messages by status; the WhatsApp window said for a
//! number; the CSRF token and the session required.

mod common;

use common::{expect_json, id_of, Db};
use reqwest::header::{COOKIE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::json;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn location(r: &Response) -> String {
    r.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

async fn logged_in(app: &common::TestApp, c: &reqwest::Client) -> (String, String) {
    let (_, key) = app
        .store()
        .create_api_key("front desk", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let r = c
        .post(app.url("/ui/login"))
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = get(app, c, "/ui/messages", &cookie)
        .await
        .text()
        .await
        .unwrap();
    (cookie, csrf_of(&page))
}

async fn get(app: &common::TestApp, c: &reqwest::Client, path: &str, cookie: &str) -> Response {
    c.get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn post(
    app: &common::TestApp,
    c: &reqwest::Client,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> Response {
    c.post(app.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn messages_pages(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let c = client();
    let r = c.get(app.url("/ui/messages")).send().await.unwrap();
    assert_eq!(location(&r), "/ui/login", "no session: to the login page");
    let (cookie, csrf) = logged_in(&app, &c).await;

    // A bad code: the error beside the field, 422, nothing stored.
    let form = |code: &'static str, body: &'static str| {
        vec![
            ("channel", "sms"),
            ("code", code),
            ("name", "Visit reminder"),
            ("variables", "name\nday = Tuesday"),
            ("body_template", body),
        ]
    };
    let mut bad = form("visit reminder!", "Hi {{ name }}, see you {{ day }}.");
    bad.push(("csrf", &csrf));
    let r = post(&app, &c, "/ui/templates", &cookie, &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"code-error\""), "{html}");
    assert!(
        html.contains("visit reminder!"),
        "the typed value kept: {html}"
    );
    let listed = expect_json(app.get("/v1/templates").await, StatusCode::OK).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);

    // Without the CSRF token: refused, nothing stored.
    let r = post(&app, &c, "/ui/templates", &cookie, &form("visit", "Hi")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A good one: stored as REST stores it, inactive, version 1.
    let mut good = form("visit-reminder", "Hi {{ name }}, see you {{ day }}.");
    good.push(("csrf", &csrf));
    let r = post(&app, &c, "/ui/templates", &cookie, &good).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with("/ui/templates/"), "{to}");
    let t = expect_json(
        app.get("/v1/templates/by-code/visit-reminder").await,
        StatusCode::OK,
    )
    .await;
    let id = id_of(&t);
    assert_eq!(t["status"], "inactive");
    assert_eq!(t["body_template"], "Hi {{ name }}, see you {{ day }}.");
    assert_eq!(
        t["variables"][1],
        json!({"key": "day", "required": false, "default": "Tuesday"})
    );
    let page = get(&app, &c, &to, &cookie).await.text().await.unwrap();
    assert!(page.contains("Saved: visit-reminder version 1."), "{page}");
    assert!(
        page.contains("name\nday = Tuesday"),
        "the variables as typed: {page}"
    );

    // Saved again: a new version; activated from its page.
    let mut changed = form("visit-reminder", "Hello {{ name }}, see you {{ day }}.");
    changed.push(("csrf", &csrf));
    let r = post(&app, &c, &format!("/ui/templates/{id}"), &cookie, &changed).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = post(
        &app,
        &c,
        &format!("/ui/templates/{id}/activate"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let t = expect_json(
        app.get(&format!("/v1/templates/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (t["version"].as_i64(), t["status"].as_str()),
        (Some(2), Some("active"))
    );

    // The preview renders the form as typed with the sample values, and
    // says why it cannot.
    let mut typed = form("visit-reminder", "Hi {{ name }}, see you {{ day }}.");
    typed.push(("sample", "name=Ada"));
    let r = post(&app, &c, "/ui/templates/preview", &cookie, &typed).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Hi Ada, see you Tuesday."), "{html}");
    assert!(html.contains("GSM-7") || html.contains("gsm"), "{html}");
    let r = post(
        &app,
        &c,
        "/ui/templates/preview",
        &cookie,
        &form("x", "Hi {{ name }}"),
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("preview-error") && html.contains("name"),
        "{html}"
    );
    let r = post(
        &app,
        &c,
        "/ui/templates/preview",
        &cookie,
        &form("x", "Hi {{ name"),
    )
    .await;
    assert!(r.text().await.unwrap().contains("Cannot render"));

    // Sent messages by status, on the page and filtered.
    app.post_ok(
        "/v1/sms",
        &json!({"to": "+15551230001", "template_id": id, "template_variables": {"name": "Ada"}}),
        StatusCode::ACCEPTED,
    )
    .await;
    let html = get(&app, &c, "/ui/messages?channel=sms", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("+15551230001"), "{html}");
    assert!(html.contains("id=\"template-list\"") && html.contains("visit-reminder"));
    let html = get(
        &app,
        &c,
        "/ui/messages?channel=sms&status=cancelled",
        &cookie,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!html.contains("+15551230001"), "{html}");
    assert!(
        html.contains("No sms messages that are cancelled"),
        "{html}"
    );

    // The WhatsApp window of a number: closed until the contact writes.
    let html = get(
        &app,
        &c,
        "/ui/conversations/window?to=%2B15551230002",
        &cookie,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        html.contains("id=\"wa-closed\"") && html.contains("has not written"),
        "{html}"
    );
    app.store()
        .record_inbound(&[herald::store::inbound::NewInbound {
            channel: "whatsapp".into(),
            provider_id: "wamid.1".into(),
            from: "+15551230002".into(),
            to: "1234".into(),
            body: "hello".into(),
            received_at: chrono::Utc::now().timestamp_millis(),
        }])
        .await
        .unwrap();
    let html = get(
        &app,
        &c,
        "/ui/conversations/window?to=%2B15551230002",
        &cookie,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(html.contains("id=\"wa-open\""), "{html}");
    let r = c
        .get(app.url("/ui/conversations/window?to=%2B15551230002"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no session");

    // The worker panel opens, named after the key.
    let html = get(&app, &c, "/ui/conversations", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Conversations of front desk"), "{html}");
    assert!(
        html.contains("visit-reminder — Visit reminder"),
        "the active template offered: {html}"
    );
    app.stop().await;
}

on_both_backends!(messages_over_http, messages_pages);
