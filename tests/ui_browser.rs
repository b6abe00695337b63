//! The console in a real Chromium: a wrong key refused beside its field;
//! login; the campaigns list; start, pause and stop (confirmed in the
//! browser's dialog) by clicking, each seen in the page and over REST;
//! htmx carries the clicks (a marker set in the page survives them, as it
//! would not a full reload); logout. Screenshots go to `target/ui-*.png`.

mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use common::{id_of, Db};
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::json;

async fn status_over_rest(app: &common::TestApp, id: &str) -> String {
    let c = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    c["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_logs_in_and_steers_a_campaign_in_chromium() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let (od, op, ag) = app.fixtures().await;
    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            common::csv(3, 15_550_100_000),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // Its calling window is open only tomorrow: started, it waits (and
    // dials nothing) while the test steers it.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%a")
        .to_string()
        .to_lowercase();
    let made = app
        .post_ok(
            "/v1/campaigns",
            &json!({"name": "Clinic reminders", "outdial_id": od, "outplan_id": op, "agent_id": ag,
                    "calling_window": {"timezone": "UTC", "days": [tomorrow], "start": "12:00", "end": "12:01"}}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&made);
    let (_, key) = app
        .store()
        .create_api_key("manager", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let c = &b.client;

    // Without a session the console opens on the login page.
    c.goto(&app.url("/ui/campaigns")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));

    // A wrong key: the error beside the field, the field marked invalid.
    c.find(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys("hk_wrong")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = b.shown("#key-error", Duration::from_secs(10)).await;
    assert!(error.text().await.unwrap().contains("not valid"));
    assert_eq!(
        c.find(Locator::Id("key"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    b.screenshot("login-refused").await;

    // The right key: the campaigns list.
    c.find(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = format!("#campaign-{id}");
    let badge = b
        .shown(&format!("{row} .badge"), Duration::from_secs(10))
        .await;
    assert_eq!(badge.text().await.unwrap(), "draft");
    // Times also in the viewer's zone (the browser runs in America/Chicago).
    let local = b
        .shown(&format!("{row} .viewer-time"), Duration::from_secs(10))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        local.contains("your time") && (local.contains("CST") || local.contains("CDT")),
        "{local}"
    );
    assert!(c
        .find(Locator::Css(&format!("{row} th")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("Clinic reminders"));

    // A marker in the page: htmx swaps the page's content on each click,
    // so a full reload (which would drop it) does not happen.
    c.execute(
        "document.body.dataset.marker = 'kept'; return true;",
        vec![],
    )
    .await
    .unwrap();

    // Start, by clicking.
    c.find(Locator::Css(&format!(
        "{row} form[action$='/start'] button"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    b.shown(
        &format!("{row} .badge-running, {row} .badge-waiting"),
        Duration::from_secs(10),
    )
    .await;
    let started = status_over_rest(&app, &id).await;
    assert!(started == "running" || started == "waiting", "{started}");
    b.shown(".notice", Duration::from_secs(10)).await;

    // Pause.
    c.find(Locator::Css(&format!(
        "{row} form[action$='/pause'] button"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    b.shown(&format!("{row} .badge-paused"), Duration::from_secs(10))
        .await;
    assert_eq!(status_over_rest(&app, &id).await, "paused");
    b.screenshot("campaigns").await;

    // Stop asks first; a dismissed dialog changes nothing, an accepted one stops.
    let stop = format!("{row} form[action$='/stop'] button");
    c.find(Locator::Css(&stop))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let asked = c.get_alert_text().await.unwrap();
    assert!(asked.contains("Stop campaign Clinic reminders?"), "{asked}");
    c.dismiss_alert().await.unwrap();
    assert_eq!(status_over_rest(&app, &id).await, "paused");
    c.find(Locator::Css(&stop))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    b.shown(
        &format!("{row} .badge-stopping, {row} .badge-stopped"),
        Duration::from_secs(10),
    )
    .await;
    let stopped = status_over_rest(&app, &id).await;
    assert!(stopped == "stopping" || stopped == "stopped", "{stopped}");

    let marker = c
        .execute("return document.body.dataset.marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(
        marker,
        json!("kept"),
        "the page was reloaded: htmx did not carry the clicks"
    );

    // The campaign's live page: targets by state, kept current from its
    // event stream while the page stays (the marker survives).
    c.find(Locator::Css(&format!("{row} th a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.shown("#state-idle", Duration::from_secs(10)).await;
    let idle = |n: usize| format!("//tr[@id='state-idle']/td[contains(., '{n} targets')]");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&idle(3)))
        .await
        .expect("3 idle targets shown");
    c.execute(
        "document.body.dataset.marker = 'live'; return true;",
        vec![],
    )
    .await
    .unwrap();
    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            common::csv(2, 15_550_200_000),
        )
        .await;
    assert!(r.status().is_success());
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&idle(5)))
        .await
        .expect("5 idle targets shown without a reload");
    let marker = c
        .execute("return document.body.dataset.marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("live"), "the live page was reloaded");

    // Pacing: a bad value is refused beside its field; a good one applies.
    let cps = c.find(Locator::Id("calls_per_second")).await.unwrap();
    cps.clear().await.unwrap();
    cps.send_keys("fast").await.unwrap();
    c.find(Locator::Css("#pacing button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let err = b
        .shown("#calls_per_second-error", Duration::from_secs(10))
        .await;
    assert!(err.text().await.unwrap().contains("calls per second"));
    let cps = c.find(Locator::Id("calls_per_second")).await.unwrap();
    cps.clear().await.unwrap();
    cps.send_keys("7").await.unwrap();
    c.find(Locator::Css("#pacing button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = b.shown(".notice", Duration::from_secs(10)).await;
    assert!(notice.text().await.unwrap().contains("7 calls/s"));
    let now = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(now["calls_per_second"], json!(7.0));
    b.screenshot("live").await;

    // From the funnel to the idle targets, and to one target's history.
    c.find(Locator::Css("#state-idle th a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.shown("table.list tbody th a", Duration::from_secs(10))
        .await
        .click()
        .await
        .unwrap();
    let state = b.shown(".badge-t-idle", Duration::from_secs(10)).await;
    assert_eq!(state.text().await.unwrap(), "idle");
    assert!(c.source().await.unwrap().contains("No attempts yet."));
    b.screenshot("target").await;

    // Logout: back to the login page; the console is closed again.
    c.find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.shown("#key", Duration::from_secs(10)).await;
    c.goto(&app.url("/ui/campaigns")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));

    b.close().await;
    app.stop().await;
}

/// The API's documentation page: the embedded RapiDoc renders herald's own
/// OpenAPI document (no CDN, nothing fetched but from herald).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_renders_in_chromium() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = &b.client;
    c.goto(&app.url("/v1/docs")).await.unwrap();
    // Waits in the page (frame by frame, 20 s at most) for the viewer to
    // have read the document and drawn its operations.
    let shown = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const started = Date.now();
               (function look() {
                 const doc = document.querySelector('rapi-doc');
                 const text = (doc && doc.shadowRoot && doc.shadowRoot.textContent) || '';
                 if (text.includes('Creates a campaign') && text.includes('X-API-Key')) return done(text);
                 if (Date.now() - started > 20000) return done('timed out: ' + text.slice(0, 500));
                 requestAnimationFrame(look);
               })();"#,
            vec![],
        )
        .await
        .unwrap();
    let text = shown.as_str().unwrap_or_default().to_string();
    assert!(!text.starts_with("timed out"), "{text}");
    for expected in [
        "Starts a draft",
        "Sends one notification",
        "Opens a conversation",
    ] {
        assert!(text.contains(expected), "{expected:?} not on the page");
    }
    b.screenshot("api-docs").await;
    b.close().await;
    app.stop().await;
}
