//! E-mail open and click tracking, for a template that opts in: the HTML at
//! the aiosmtpd server carries the pixel and the rewritten link; opening
//! the pixel and following the link count on the message and write
//! `message.opened` / `message.clicked`; the link redirects to the original
//! and to nothing else; a template without the opt-in is left alone.

mod common;
mod peers;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{expect_json, id_of, spawn_app_with, Db};
use peers::SmtpSink;
use reqwest::StatusCode;
use serde_json::json;
use sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

/// A quoted-printable body as text (soft line breaks joined, `=XX` decoded).
fn unqp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::new();
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn opens_and_clicks_are_counted_for_templates_that_opt_in() {
    let mut sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            ("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp"),
            ("HERALD__CHANNELS__EMAIL__SMTP_URL", url.as_str()),
            (
                "HERALD__CHANNELS__EMAIL__UNSUBSCRIBE_BASE_URL",
                "https://herald.example",
            ),
        ],
        None,
    )
    .await
    .expect("sqlite");
    for (code, track) in [("news", true), ("plain", false)] {
        let t = app
            .post_ok("/v1/templates", &json!({"name": code, "code": code, "channel": "email",
                "subject_template": "Spring news", "track_opens": track, "track_clicks": track,
                "body_html_template": "<html><body><p>Book now: <a href=\"https://clinic.example/book?x=1&amp;y=2\">here</a></p></body></html>"}), StatusCode::CREATED)
            .await;
        assert_eq!(t["track_opens"].as_bool().unwrap_or(false), track, "{t}");
        app.post_ok(
            &format!("/v1/templates/{}/activate", id_of(&t)),
            &json!({}),
            StatusCode::OK,
        )
        .await;
    }
    let refused = app.post("/v1/templates", &json!({"name": "s", "code": "s", "channel": "sms", "body_template": "x", "track_opens": true})).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status,message.opened,message.clicked"),
        &app.key,
        None,
    )
    .await;
    let m = app
        .post_ok("/v1/emails", &json!({"to": [{"email": "ann@example.com"}], "template_id": "news", "category": "marketing"}), StatusCode::ACCEPTED)
        .await;
    let id = id_of(&m);
    events.wait_message(&id, "sent", WAIT).await;
    let body = unqp(&sink.next_message().await.data);
    assert!(
        body.contains(&format!("https://herald.example/t/o/{id}.gif")),
        "{body}"
    );
    assert!(
        body.contains(&format!("href=\"https://herald.example/t/c/{id}/0\"")),
        "{body}"
    );
    assert!(
        !body.contains("https://clinic.example/book"),
        "the original link is only behind the redirect: {body}"
    );

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(app.url(&format!("/t/o/{id}.gif")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(&r.bytes().await.unwrap()[..6], b"GIF89a");
    let r = no_redirects
        .get(app.url(&format!("/t/c/{id}/0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        "https://clinic.example/book?x=1&y=2"
    );
    let r = no_redirects
        .get(app.url(&format!("/t/c/{id}/7")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let m = expect_json(app.get(&format!("/v1/emails/{id}")).await, StatusCode::OK).await;
    assert_eq!(
        (m["opens"].as_i64(), m["clicks"].as_i64()),
        (Some(1), Some(1)),
        "{m}"
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = events.next(WAIT).await.expect("stream open").json();
        if e["data"]["message_id"] == id.as_str() && e["type"] != "message.status" {
            seen.push((
                e["type"].as_str().unwrap().to_string(),
                e["data"]["url"].clone(),
            ));
        }
    }
    assert_eq!(
        seen[0],
        ("message.opened".to_string(), serde_json::Value::Null)
    );
    assert_eq!(
        seen[1],
        (
            "message.clicked".to_string(),
            json!("https://clinic.example/book?x=1&y=2")
        )
    );

    // The untracked template's mail has neither.
    let p = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "bo@example.com"}], "template_id": "plain"}),
            StatusCode::ACCEPTED,
        )
        .await;
    events.wait_message(&id_of(&p), "sent", WAIT).await;
    let body = unqp(&sink.next_message().await.data);
    assert!(body.contains("https://clinic.example/book"), "{body}");
    assert!(!body.contains("/t/o/"), "{body}");
    let r = no_redirects
        .get(app.url(&format!("/t/c/{}/0", id_of(&p))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
