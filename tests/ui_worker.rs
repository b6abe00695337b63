//! The console's messages side in a real Chromium, with herald sending SMS
//! to the npm `smpp` SMSC: a template written in the editor previews as it
//! is typed (no reload), is saved and activated; a worker opens a
//! conversation from the panel with it, the contact's reply (a
//! mobile-originated SMS from the SMSC) appears in the open page without a
//! reload, the worker replies with free text and closes. Each page is
//! checked by axe-core; screenshots go to `target/ui-*.png`.

mod browser;
mod common;
#[path = "peers/smsc.rs"]
mod smsc;

use std::time::Duration;

use browser::Browser;
use common::{spawn_app_with, Db};
use fantoccini::Locator;
use serde_json::json;
use smsc::Smsc;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_writes_a_template_and_talks_with_a_contact_in_chromium() {
    let mut smsc = Smsc::start(&[]).await;
    let url = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let Some(app) = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", url.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
            ("HERALD__CHANNELS__SMS__FROM", "+15550009999"),
        ],
        None,
    )
    .await
    else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = &b.client;
    let (_, key) = app
        .store()
        .create_api_key("alice", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    c.goto(&app.url("/ui/login")).await.unwrap();
    b.fill("key", &key).await;
    b.click("button[type=submit]").await;
    b.shown("nav a[href='/ui/messages']", WAIT).await;

    // The editor: the preview follows the typing, without a reload.
    b.click("nav a[href='/ui/messages']").await;
    b.shown("a[href='/ui/templates/new']", WAIT).await;
    b.assert_accessible("messages").await;
    b.click("a[href='/ui/templates/new']").await;
    b.shown("#template-form", WAIT).await;
    c.execute(
        "document.body.dataset.marker = 'kept'; return true;",
        vec![],
    )
    .await
    .unwrap();
    b.choose("channel", "sms").await;
    b.fill("code", "tuesday-check").await;
    b.fill("name", "Tuesday check").await;
    b.fill("variables", "name\nday = Tuesday").await;
    b.fill("body_template", "Hi {{ name }}, is {{ day }} still good?")
        .await;
    b.fill("sample", "name=Ada").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//dd[@id='preview-body'][text()='Hi Ada, is Tuesday still good?']",
        ))
        .await
        .expect("the preview rendered as typed");
    // A mistake shows in the preview at once.
    b.fill("body_template", "Hi {{ name ").await;
    b.shown("#preview-error", WAIT).await;
    b.fill("body_template", "Hi {{ name }}, is {{ day }} still good?")
        .await;
    b.shown("#preview-body", WAIT).await;
    let marker = c
        .execute("return document.body.dataset.marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("kept"), "the editor was reloaded");
    // Only the chosen channel's parts are shown.
    let shown = c
        .execute(
            "return [...document.querySelectorAll('fieldset.part')].filter(f => f.offsetParent !== null).map(f => f.className);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!(["part part-text"]));
    c.execute("window.scrollTo(0, 0); return true;", vec![])
        .await
        .unwrap();
    b.screenshot("template-editor").await;
    b.assert_accessible("template-editor").await;
    b.click("#template-form button[type=submit]").await;
    b.shown("#template-status", WAIT).await;
    b.click("#template-status").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("h1 .badge-t-active"))
        .await
        .expect("activated");

    // The panel: open a conversation with the canned template.
    c.goto(&app.url("/ui/conversations")).await.unwrap();
    b.shown("#new-conversation", WAIT).await;
    assert!(b.text("h1").await.contains("alice"));
    b.fill("to", "+15551230001").await;
    let template = c
        .find(Locator::Css("#template_sms option:nth-child(2)"))
        .await
        .unwrap();
    assert!(template.text().await.unwrap().contains("tuesday-check"));
    template.click().await.unwrap();
    b.fill("variables", "name=Ada").await;
    b.assert_accessible("worker-panel").await;
    b.click("#new-conversation button[type=submit]").await;
    b.shown("#thread-lines", WAIT).await;
    let submits = smsc.wait_kind("submit_sm", 1, WAIT).await;
    let text =
        String::from_utf8(hex::decode(submits[0]["short_message_hex"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(text, "Hi Ada, is Tuesday still good?");
    assert_eq!(submits[0]["destination_addr"], "15551230001");

    // The contact answers: in the open page, no reload.
    c.execute(
        "document.body.dataset.marker = 'kept'; return true;",
        vec![],
    )
    .await
    .unwrap();
    smsc.mo("15551230001", "15550009999", "Yes, see you then")
        .await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//li[contains(@class,'msg-in')]/p[text()='Yes, see you then']",
        ))
        .await
        .expect("the reply shown live");
    let marker = c
        .execute("return document.body.dataset.marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("kept"), "the conversation page was reloaded");
    b.screenshot("conversation").await;
    b.assert_accessible("conversation").await;

    // A free-text reply reaches the SMSC; then the worker closes.
    b.fill("body", "Thank you, Ada!").await;
    b.click("#reply button[type=submit]").await;
    let submits = smsc.wait_kind("submit_sm", 2, WAIT).await;
    let text =
        String::from_utf8(hex::decode(submits[1]["short_message_hex"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(text, "Thank you, Ada!");
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//li[contains(@class,'msg-out')]/p[text()='Thank you, Ada!']",
        ))
        .await
        .expect("the reply in the thread");
    b.click("#close-conversation").await;
    // htmx asks before closing: the browser's dialog, accepted.
    c.accept_alert().await.unwrap();
    b.shown("#thread-closed", WAIT).await;
    let open = common::expect_json(
        app.get("/v1/conversations?status=open").await,
        reqwest::StatusCode::OK,
    )
    .await;
    assert_eq!(open["items"].as_array().unwrap().len(), 0);

    b.close().await;
    app.stop().await;
}
