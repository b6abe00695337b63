//! The console's whole path in a real Chromium, against a herald on a fresh
//! database dialing its built-in simulator over SIP: log in; import a list
//! from a CSV file with bad lines (their report shown); create a campaign
//! through the form, a new retry plan with it, picking a script agent (a bad
//! time zone shown beside its field first); start it; watch the counters
//! move without a reload; change its call rate; pause (no new attempts);
//! resume; let it finish; open a target's history. Screenshots of each page
//! go to `target/ui-scenario-*.png`.

mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use common::Db;
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::json;

/// The campaign's attempts over REST.
async fn attempts(app: &common::TestApp, id: &str) -> i64 {
    let s = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}/stats")).await,
        StatusCode::OK,
    )
    .await;
    s["attempts"]["total"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_runs_a_campaign_from_the_console_alone() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = &b.client;
    // The agent is picked in the form: a script agent that ends each call.
    app.post_ok(
        "/v1/agents",
        &json!({"name": "reminder script", "kind": "script", "script": common::hang_up_script(),
                "max_concurrent_sessions": 100}),
        StatusCode::CREATED,
    )
    .await;
    let (_, key) = app
        .store()
        .create_api_key("clinic manager", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();

    c.goto(&app.url("/ui/login")).await.unwrap();
    b.assert_accessible("login").await;
    b.fill("key", &key).await;
    b.click("button[type=submit]").await;
    b.shown("a[href='/ui/campaigns/new']", Duration::from_secs(10))
        .await;
    b.assert_accessible("campaigns").await;

    // A list from a CSV file: 40 people, a bad number and a short line.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("patients.csv");
    let mut body = String::from("phone,name,clinic\n");
    for i in 0..40 {
        body.push_str(&format!("+1555710{i:04},Patient {i},North\n"));
    }
    body.push_str("not-a-number,Bad Phone,North\n");
    body.push_str("+15557209999,Short\n");
    std::fs::write(&csv, body).unwrap();
    c.goto(&app.url("/ui/lists")).await.unwrap();
    b.fill("name", "Flu shots").await;
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(csv.to_str().unwrap())
        .await
        .unwrap();
    b.click("#import button[type=submit]").await;
    b.shown("#report", Duration::from_secs(10)).await;
    assert_eq!(b.text("#created").await, "40 targets");
    assert_eq!(b.text("#rejected").await, "2 rows");
    let rejected = b.text("#invalid tbody").await;
    assert!(
        rejected.contains("42"),
        "line 42 (the bad number): {rejected}"
    );
    assert!(
        rejected.contains("43"),
        "line 43 (the short line): {rejected}"
    );
    assert!(rejected.contains("fields"), "{rejected}");
    let href = c
        .find(Locator::Id("rejected-download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.starts_with("data:text/csv"), "{href}");
    b.screenshot("scenario-import").await;
    b.assert_accessible("scenario-import").await;

    // The campaign, through the form: a bad time zone first.
    b.click("a[href^='/ui/campaigns/new?outdial_id=']").await;
    b.shown("#new-campaign", Duration::from_secs(10)).await;
    b.fill("name", "Flu shot reminders").await;
    let agent = c
        .find(Locator::XPath(
            "//select[@id='agent_id']/option[text()='reminder script']",
        ))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    b.choose("agent_id", &agent).await;
    b.fill("plan_tries", "1").await;
    b.fill("plan_dial_timeout_s", "5").await;
    b.fill("timezone", "Mars/Olympus_Mons").await;
    b.fill("calls_per_second", "4").await;
    b.fill("max_concurrent_calls", "10").await;
    b.choose("priority", "emergency").await;
    b.click("#new-campaign button[type=submit]").await;
    let err = b.shown("#timezone-error", Duration::from_secs(10)).await;
    assert!(
        err.text().await.unwrap().contains("Mars/Olympus_Mons"),
        "{}",
        err.text().await.unwrap()
    );
    assert_eq!(
        c.find(Locator::Id("timezone"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    let made = common::expect_json(app.get("/v1/campaigns").await, StatusCode::OK).await;
    assert_eq!(
        made["items"].as_array().unwrap().len(),
        0,
        "nothing made from a bad form"
    );
    b.screenshot("scenario-form-error").await;
    b.assert_accessible("scenario-form-error").await;
    b.fill("timezone", "America/Chicago").await;
    b.click("#new-campaign button[type=submit]").await;
    b.shown("#live", Duration::from_secs(10)).await;
    let made = common::expect_json(app.get("/v1/campaigns").await, StatusCode::OK).await;
    let campaign = made["items"][0].clone();
    let id = campaign["id"].as_str().unwrap().to_string();
    assert_eq!(campaign["calling_window"]["timezone"], "America/Chicago");
    assert_eq!(campaign["calls_per_second"], json!(4.0));
    let plan = common::expect_json(
        app.get(&format!(
            "/v1/outplans/{}",
            campaign["outplan_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(plan["try_count_max"], 1);
    assert_eq!(plan["dial_timeout_s"], 5);

    // Start; the counters move while the page stays.
    c.execute(
        "document.body.dataset.marker = 'kept'; return true;",
        vec![],
    )
    .await
    .unwrap();
    b.click("#controls form[action$='/start'] button").await;
    b.shown("#live .badge-running", Duration::from_secs(10))
        .await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//span[@id='attempts'][not(text()='0')]"))
        .await
        .expect("attempts counted on the page");
    // The chart draws the ended attempts from the stream.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(
            "//div[@id='chart'][@data-total][not(@data-total='0')]//canvas",
        ))
        .await
        .expect("the chart drawn with ended attempts");
    b.screenshot("scenario-live").await;
    b.assert_accessible("scenario-live").await;

    // A new rate, shown as the setting within a second or two.
    b.fill("calls_per_second", "20").await;
    b.click("#pacing button").await;
    b.shown(".notice", Duration::from_secs(10)).await;
    c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::XPath("//dd[contains(., 'setting 20 calls/s')]"))
        .await
        .expect("the new rate shown");

    // Pause: no new attempts once the calls in flight have ended.
    b.click("#controls form[action$='/pause'] button").await;
    b.shown("#live .badge-paused", Duration::from_secs(10))
        .await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//span[@id='live-calls'][text()='0']"))
        .await
        .expect("no call in flight while paused");
    let paused_at = attempts(&app, &id).await;
    // Two more updates of the page's clock, and still no new attempt.
    for _ in 0..2 {
        let at = b.text("#clock time").await;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&format!(
                "//p[@id='clock']/time[not(text()='{at}')]"
            )))
            .await
            .expect("the page kept updating");
    }
    assert_eq!(
        attempts(&app, &id).await,
        paused_at,
        "an attempt while paused"
    );

    // Resume and let it finish.
    b.click("#controls form[action$='/resume'] button").await;
    b.shown("#live .badge-finished", Duration::from_secs(90))
        .await;
    let marker = c
        .execute("return document.body.dataset.marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("kept"), "the live page was reloaded");
    assert_eq!(attempts(&app, &id).await, 40);
    // Every attempt on the chart, updated in place (several draws, no reload).
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath("//div[@id='chart'][@data-total='40']"))
        .await
        .expect("the chart counts the 40 attempts");
    let draws: u64 = c
        .execute(
            "return Number(document.getElementById('chart').dataset.updates);",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(draws >= 2, "the chart was drawn {draws} times");
    // The status log: the console's moves by its key, the finish by the scheduler.
    let log = b.text("#status-log").await;
    for said in [
        "key “clinic manager”, in the console",
        "herald's scheduler",
        "finished",
        "paused",
    ] {
        assert!(log.contains(said), "{said} in {log}");
    }
    b.screenshot("scenario-finished").await;
    c.execute(
        "document.querySelector('figure.chart').scrollIntoView(); return true;",
        vec![],
    )
    .await
    .unwrap();
    b.screenshot("scenario-chart").await;
    b.assert_accessible("scenario-finished").await;

    // A finished target's history.
    b.click("#state-finished th a").await;
    b.shown("table.list tbody th a", Duration::from_secs(10))
        .await
        .click()
        .await
        .unwrap();
    b.shown("#transitions", Duration::from_secs(10)).await;
    let transitions = b.text("#transitions tbody").await;
    assert!(transitions.contains("dialing"), "{transitions}");
    let attempts_table = b.text("#attempts tbody").await;
    assert!(attempts_table.contains("answered"), "{attempts_table}");
    b.screenshot("scenario-target").await;
    b.assert_accessible("scenario-target").await;

    // Calls: the campaign's 40 attempts.
    b.click("nav a[href='/ui/calls']").await;
    b.shown("#call-list", Duration::from_secs(10)).await;
    let rows = c
        .find_all(Locator::Css("#call-list tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 40);
    b.assert_accessible("scenario-calls").await;

    // Settings: the page of keys, webhooks and the do-not-call list.
    b.click("nav a[href='/ui/settings']").await;
    b.shown("#key-list", Duration::from_secs(10)).await;
    assert!(b.text("#key-list").await.contains("clinic manager"));
    b.screenshot("scenario-settings").await;
    b.assert_accessible("scenario-settings").await;

    b.close().await;
    app.stop().await;
}
