//! The console over HTTP, on SQLite and PostgreSQL: login with an API key
//! (a wrong one refused), the session cookie's attributes, pages without a
//! session sent to login, the campaigns list with its status filter and
//! control buttons, CSRF on every mutation (403 without the token, and
//! nothing changed), logout, and a revoked key's session closed at once.
//! The assets are served under hashed names.

mod common;

use common::{id_of, Db};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::json;

fn browser() -> reqwest::Client {
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

/// The `herald_session=…` pair a login set, and the whole header.
fn session_cookie(r: &Response) -> (String, String) {
    let header = r
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap()
        .to_string();
    let pair = header.split(';').next().unwrap().trim().to_string();
    (pair, header)
}

/// The value of the first `name="csrf"` field on a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

async fn login(c: &reqwest::Client, base: &str, key: &str) -> Response {
    c.post(format!("{base}/ui/login"))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap()
}

async fn page(c: &reqwest::Client, base: &str, path: &str, cookie: &str) -> Response {
    c.get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn console(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let c = browser();
    let base = app.base.clone();

    // No session: every page goes to the login page.
    let r = c.get(format!("{base}/ui/campaigns")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login");
    let r = c.get(format!("{base}/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"key\""), "{html}");

    // The page's files are served under the names it links, for a year.
    for prefix in ["/ui/assets/console.", "/ui/assets/htmx-2.0.11."] {
        let at = html
            .find(prefix)
            .unwrap_or_else(|| panic!("{prefix} in {html}"));
        let href = html[at..].split('"').next().unwrap();
        let r = c.get(format!("{base}{href}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{href}");
        assert!(r.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let kind = r.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        let body = r.bytes().await.unwrap();
        assert!(body.len() > 1_000, "{href}: {} bytes", body.len());
        assert!(kind.starts_with(if href.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        }));
    }
    let r = c
        .get(format!("{base}/ui/assets/htmx.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A wrong key is refused on the page, with no cookie.
    let r = login(&c, &base, "hk_not-a-key").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("not valid"));

    // A stored key opens a session: an HttpOnly, SameSite=Strict cookie.
    let (key_id, key) = app
        .store()
        .create_api_key("night manager", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let r = login(&c, &base, &key).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/campaigns");
    let (cookie, header) = session_cookie(&r);
    assert!(
        cookie.starts_with("herald_session=") && cookie.len() > 40,
        "{header}"
    );
    assert!(
        !header.contains(&key),
        "the key itself is not in the cookie"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP: {header}");

    // A campaign made over REST, in the list with its status and buttons.
    let (od, op, ag) = app.fixtures().await;
    let made = app
        .post_ok(
            "/v1/campaigns",
            &json!({"name": "Flu <shot> reminders", "outdial_id": od, "outplan_id": op, "agent_id": ag,
                    "end_handle": "continue"}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&made);
    let r = page(&c, &base, "/ui/campaigns", &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Key: night manager"), "{html}");
    assert!(
        html.contains("Flu &#60;shot&#62; reminders")
            || html.contains("Flu &lt;shot&gt; reminders"),
        "escaped: {html}"
    );
    assert!(html.contains("badge-draft"));
    assert!(html.contains(&format!("/ui/campaigns/{id}/start")));
    assert!(
        !html.contains(&format!("/ui/campaigns/{id}/pause")),
        "a draft cannot pause"
    );
    let csrf = csrf_of(&html);

    // A mutation without the CSRF token, or with another, is refused and changes nothing.
    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let r = c
            .post(format!("{base}/ui/campaigns/{id}/start"))
            .header(COOKIE, &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    let now = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(now["status"], "draft");

    // With it, the campaign starts, as over REST.
    let r = c
        .post(format!("{base}/ui/campaigns/{id}/start"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).starts_with("/ui/campaigns?notice="),
        "{}",
        location(&r)
    );
    let now = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_ne!(now["status"], "draft");
    let started = now["status"].as_str().unwrap().to_string();

    // The filter: by the status it has, and not by another; a bad one is said.
    let html = page(
        &c,
        &base,
        &format!("/ui/campaigns?status={started}"),
        &cookie,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(html.contains(&format!("campaign-{id}")));
    let html = page(&c, &base, "/ui/campaigns?status=draft", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&format!("campaign-{id}")));
    assert!(html.contains("No campaigns that are draft"));
    let html = page(&c, &base, "/ui/campaigns?status=bogus", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("No status &#34;bogus&#34;: showing every campaign"),
        "{html}"
    );

    // A move that does not apply comes back as the REST conflict's words.
    let r = c
        .post(format!("{base}/ui/campaigns/{id}/resume"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let to = location(&r);
    assert!(to.starts_with("/ui/campaigns?error="), "{to}");
    let html = page(&c, &base, &to, &cookie).await.text().await.unwrap();
    assert!(html.contains("cannot resume a campaign that is"), "{html}");

    // The live page, its stream (only with a session) and its pacing form.
    let live = format!("/ui/campaigns/{id}");
    let html = page(&c, &base, &live, &cookie).await.text().await.unwrap();
    assert!(
        html.contains(&format!("sse-connect=\"{live}/stream?status=")),
        "{html}"
    );
    assert!(html.contains("id=\"state-idle\""), "{html}");
    let r = c.get(format!("{base}{live}/stream")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut r = page(&c, &base, &format!("{live}/stream"), &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), r.chunk())
        .await
        .expect("a first event")
        .unwrap()
        .expect("a chunk");
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.starts_with("event: stats\n"), "{first}");
    assert!(first.contains("Calls in flight"), "{first}");
    drop(r);
    let r = c
        .post(format!("{base}{live}/pacing"))
        .header(COOKIE, &cookie)
        .form(&[("calls_per_second", "9"), ("max_concurrent_calls", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{base}{live}/pacing"))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("calls_per_second", "-2"),
            ("max_concurrent_calls", "4"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"calls_per_second-error\""), "{html}");
    let now = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_ne!(now["calls_per_second"], serde_json::json!(-2.0));
    let r = c
        .post(format!("{base}{live}/pacing"))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("calls_per_second", "9"),
            ("max_concurrent_calls", "4"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let now = common::expect_json(
        app.get(&format!("/v1/campaigns/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(now["calls_per_second"], serde_json::json!(9.0));
    assert_eq!(now["max_concurrent_calls"], 4);

    // The status log says who made each change: the console's start, and a
    // pause over the API, named by their keys; the trunk's and the agent's
    // caps are beside the campaign's.
    app.post_ok(
        &format!("/v1/campaigns/{id}/pause"),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    let html = page(&c, &base, &live, &cookie).await.text().await.unwrap();
    let log = &html[html.find("id=\"status-log\"").expect("a status log")..];
    let paused = log.find("paused by request").expect("the pause in the log");
    let started = log
        .find("key “night manager”, in the console")
        .expect("the start, by the console's key");
    assert!(paused < started, "newest first: {log}");
    assert!(log[paused..started].contains("over the API"), "{log}");
    assert!(
        html.contains("Trunk “default” (every campaign on it)"),
        "{html}"
    );
    assert!(html.contains("sessions</dd>"), "the agent's cap: {html}");
    let stored = app.store().campaign_status_log(&id, 10).await.unwrap();
    assert_eq!(stored[0].to, "paused");
    assert!(stored[0].by.starts_with("api:"), "{stored:?}");
    assert_eq!(stored.last().unwrap().by, "console:night manager");

    // The cookie opens the API's event streams (a browser's EventSource
    // sends no header), and nothing else of the API.
    let r = page(&c, &base, &format!("/v1/campaigns/{id}/events"), &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);
    let r = page(&c, &base, "/v1/events", &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    for path in ["/v1/campaigns", &format!("/v1/campaigns/{id}/stats")] {
        let r = page(&c, &base, path, &cookie).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = c
        .get(format!("{base}/v1/events"))
        .header(COOKIE, "herald_session=hk_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logout ends the session: the old cookie opens nothing.
    let r = c
        .post(format!("{base}/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(session_cookie(&r).1.contains("Max-Age=0"));
    let r = page(&c, &base, "/ui/campaigns", &cookie).await;
    assert_eq!(location(&r), "/ui/login");
    let r = page(&c, &base, "/v1/events", &cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Revoking the key ends its other sessions at once.
    let (cookie, _) = session_cookie(&login(&c, &base, &key).await);
    assert_eq!(
        page(&c, &base, "/ui/campaigns", &cookie).await.status(),
        StatusCode::OK
    );
    assert!(app
        .store()
        .revoke_api_key(&key_id, chrono::Utc::now().timestamp_millis())
        .await
        .unwrap());
    let r = page(&c, &base, "/ui/campaigns", &cookie).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login");
    assert_eq!(
        login(&c, &base, &key).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

on_both_backends!(console_over_http, console);

/// A campaign dialed to its end over SIP (the built-in simulator): its
/// targets listed by state, and a target's page with its attempt (SIP
/// code, outcome) and its transitions.
async fn target_history(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let c = browser();
    let base = app.base.clone();
    let mut rx = app.events().subscribe();
    let (campaign, _) = app
        .campaign(
            common::csv_of(&["+15553000001".to_string()]),
            json!({"name": "once", "try_count_max": 1, "dial_timeout_s": 5,
                   "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}}),
            json!({"name": "One call"}),
        )
        .await;
    app.campaign_verb(&campaign, "start", json!({})).await;
    common::wait_status(
        &mut rx,
        &campaign,
        "finished",
        std::time::Duration::from_secs(60),
    )
    .await;

    let (_, key) = app
        .store()
        .create_api_key("viewer", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let (cookie, _) = session_cookie(&login(&c, &base, &key).await);
    // The one target is finished or failed, whatever the simulator answered.
    let mut link = None;
    for state in ["finished", "failed"] {
        let html = page(
            &c,
            &base,
            &format!("/ui/campaigns/{campaign}/targets?state={state}"),
            &cookie,
        )
        .await
        .text()
        .await
        .unwrap();
        assert!(
            html.contains(&format!("Targets that are {state}")),
            "{html}"
        );
        if let Some(at) = html.find("href=\"/ui/targets/") {
            link = Some(html[at + 6..].split('"').next().unwrap().to_string());
        }
    }
    let link = link.expect("the target listed under its final state");
    let r = page(&c, &base, &link, &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let tid = link.rsplit('/').next().unwrap();
    let call = common::expect_json(
        app.get(&format!("/v1/calls?target_id={tid}")).await,
        StatusCode::OK,
    )
    .await;
    let call = &call["items"][0];
    assert!(html.contains("id=\"attempts\""), "{html}");
    assert!(html.contains(call["outcome"].as_str().unwrap()), "{html}");
    if let Some(code) = call["sip_code"].as_i64() {
        assert!(html.contains(&format!("<td>{code}</td>")), "{html}");
    }
    assert!(html.contains("id=\"transitions\""), "{html}");
    assert!(html.contains("<td>idle</td><td>dialing</td>"), "{html}");
    assert!(html.contains("none: the target is done"), "{html}");
    // Without a session, the history is not shown.
    let r = c.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(location(&r), "/ui/login");
    app.stop().await;
}

on_both_backends!(history_over_http, target_history);

/// Settings: a key created on the page is shown once and works; revoked
/// there, it stops; webhooks listed with their state; the do-not-call list
/// added to, looked up and removed from, a bad number refused beside its
/// field; CSRF on each form.
async fn settings(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let c = browser();
    let base = app.base.clone();
    let (_, key) = app
        .store()
        .create_api_key("admin", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    app.post_ok(
        "/v1/webhooks",
        &json!({"url": "http://127.0.0.1:9/hook", "event_types": ["campaign.status"], "secret": "whsec-console-test-0123456789"}),
        StatusCode::CREATED,
    )
    .await;
    let (cookie, _) = session_cookie(&login(&c, &base, &key).await);
    let html = page(&c, &base, "/ui/settings", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("http://127.0.0.1:9/hook"), "{html}");
    assert!(html.contains(">admin<"), "{html}");
    assert!(!html.contains(&key), "a key is never shown again");
    assert!(
        !html.contains("whsec-console-test"),
        "a webhook's secret is never shown"
    );
    let csrf = csrf_of(&html);
    let post = |path: &str, form: Vec<(&str, &str)>| {
        let c = c.clone();
        let url = format!("{base}{path}");
        let cookie = cookie.clone();
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        async move {
            c.post(url)
                .header(COOKIE, cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };

    // A new key, shown once; it opens the console; revoked, it opens nothing.
    let r = post("/ui/settings/keys", vec![("name", "ops")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let r = post("/ui/settings/keys", vec![("csrf", &csrf), ("name", "ops")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let marker = "id=\"new-key-value\">";
    let at = html.find(marker).expect("the new key shown") + marker.len();
    let ops_key = html[at..].split('<').next().unwrap().to_string();
    assert!(ops_key.starts_with("hk_"), "{ops_key}");
    assert_eq!(
        login(&c, &base, &ops_key).await.status(),
        StatusCode::SEE_OTHER
    );
    let ops_id = app.rows("SELECT id FROM api_keys WHERE name = 'ops'").await[0][0]
        .clone()
        .unwrap();
    let r = post(
        &format!("/ui/settings/keys/{ops_id}/revoke"),
        vec![("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c
        .get(format!("{base}/v1/campaigns"))
        .header("x-api-key", &ops_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a revoked key");
    let html = page(&c, &base, "/ui/settings", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("id=\"key-{ops_id}\"")) && html.contains("revoked "),
        "{html}"
    );

    // The do-not-call list.
    let r = post(
        "/ui/settings/dnc",
        vec![("csrf", &csrf), ("number", "555-CALL-ME"), ("op", "add")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"number-error\""));
    let r = post(
        "/ui/settings/dnc",
        vec![
            ("csrf", &csrf),
            ("number", "+15550001111"),
            ("reason", "asked"),
            ("op", "add"),
        ],
    )
    .await;
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("+15550001111 is on the do-not-call list."));
    assert_eq!(
        app.get("/v1/dnc/+15550001111").await.status(),
        StatusCode::OK
    );
    let r = post(
        "/ui/settings/dnc",
        vec![
            ("csrf", &csrf),
            ("number", "+15550001111"),
            ("op", "lookup"),
        ],
    )
    .await;
    assert!(r.text().await.unwrap().contains("(asked)"));
    let r = post(
        "/ui/settings/dnc",
        vec![
            ("csrf", &csrf),
            ("number", "+15550001111"),
            ("op", "remove"),
        ],
    )
    .await;
    assert!(r.text().await.unwrap().contains("was removed"));
    assert_eq!(
        app.get("/v1/dnc/+15550001111").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

on_both_backends!(settings_over_http, settings);

/// Calls: a one-off call scheduled for later is listed, rescheduled (a bad
/// time refused with the reason) and cancelled from the page; the status
/// filter finds it.
async fn calls_page(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let c = browser();
    let base = app.base.clone();
    let (_, key) = app
        .store()
        .create_api_key("desk", chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557770003", "schedule_type": "scheduled", "scheduled_at": later}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&call);
    let (cookie, _) = session_cookie(&login(&c, &base, &key).await);
    let html = page(&c, &base, "/ui/calls", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("id=\"call-{id}\"")), "{html}");
    assert!(html.contains(&format!("/ui/calls/{id}/cancel")), "{html}");
    let csrf = csrf_of(&html);
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let c = c.clone();
        let cookie = cookie.clone();
        let url = format!("{base}{path}");
        async move {
            c.post(url)
                .header(COOKIE, cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(
        format!("/ui/calls/{id}/reschedule"),
        vec![("csrf", csrf.clone()), ("scheduled_at", "tomorrow".into())],
    )
    .await;
    assert!(
        location(&r).starts_with("/ui/calls?error="),
        "{}",
        location(&r)
    );
    let r = post(
        format!("/ui/calls/{id}/reschedule"),
        vec![
            ("csrf", csrf.clone()),
            ("scheduled_at", "2031-01-02T03:04:05Z".into()),
        ],
    )
    .await;
    assert!(
        location(&r).starts_with("/ui/calls?notice="),
        "{}",
        location(&r)
    );
    let now = common::expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert!(
        now["scheduled_at"]
            .as_str()
            .unwrap()
            .starts_with("2031-01-02T03:04:05"),
        "{now}"
    );
    let r = post(format!("/ui/calls/{id}/cancel"), vec![]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(
        format!("/ui/calls/{id}/cancel"),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert!(
        location(&r).starts_with("/ui/calls?notice="),
        "{}",
        location(&r)
    );
    let now = common::expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(now["status"], "cancelled");
    let html = page(&c, &base, "/ui/calls?status=cancelled", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("id=\"call-{id}\"")), "{html}");
    assert!(
        !html.contains(&format!("/ui/calls/{id}/cancel")),
        "a cancelled call has no buttons"
    );
    let html = page(&c, &base, "/ui/calls?status=completed", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&format!("id=\"call-{id}\"")));
    app.stop().await;
}

on_both_backends!(calls_over_http, calls_page);
