//! Data retention: a finished message's bodies and template variables are
//! purged once it is older than `[retention] message_body_days`; its status,
//! times, attempts and events stay, and younger messages keep everything.

mod common;
#[path = "common/sse.rs"]
mod sse;

use std::time::Duration;

use common::{expect_json, id_of, spawn_app_with, Db};
use reqwest::StatusCode;
use serde_json::json;
use sse::SseClient;

#[tokio::test]
async fn old_bodies_go_and_nothing_else_does() {
    let app = spawn_app_with(
        Db::Sqlite,
        &[("HERALD__RETENTION__MESSAGE_BODY_DAYS", "30")],
        None,
    )
    .await
    .expect("sqlite");
    let t = app
        .post_ok("/v1/templates", &json!({"name": "Result", "code": "result", "channel": "email",
            "variables": [{"key": "name", "required": true}, {"key": "result", "required": true}],
            "subject_template": "Your result, {{name}}", "body_text_template": "It is {{result}}."}), StatusCode::CREATED)
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", id_of(&t)),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    let mut events = SseClient::connect(
        &app.client,
        &app.url("/v1/events?types=message.status"),
        &app.key,
        None,
    )
    .await;
    let old = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "ann@example.com"}], "template_id": "result",
            "template_variables": {"name": "Ann", "result": "negative"}}),
            StatusCode::ACCEPTED,
        )
        .await;
    let young = app
        .post_ok(
            "/v1/emails",
            &json!({"to": [{"email": "bo@example.com"}], "subject": "Hi", "body_text": "Keep me"}),
            StatusCode::ACCEPTED,
        )
        .await;
    events
        .wait_message(&id_of(&old), "sent", Duration::from_secs(30))
        .await;
    events
        .wait_message(&id_of(&young), "sent", Duration::from_secs(30))
        .await;
    let before = expect_json(
        app.get(&format!("/v1/emails/{}", id_of(&old))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(before["subject"], "Your result, Ann");

    // 31 days on: only the first is older than the retention.
    let sent_at = chrono::DateTime::parse_from_rfc3339(before["sent_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let now = sent_at + 31 * 86_400_000;
    app.scalar(&format!(
        "UPDATE messages SET sent_at = sent_at + 172800000 WHERE id = '{}' RETURNING 1",
        id_of(&young)
    ))
    .await;
    let cutoff = now - 30 * 86_400_000;
    let young_sent = sent_at + 2 * 86_400_000;
    assert!(young_sent > cutoff);
    let events_before = app
        .scalar("SELECT MAX(last_seq) FROM global_event_pages")
        .await;
    let n = app
        .store()
        .purge_message_bodies(cutoff, 500, now)
        .await
        .unwrap();
    assert_eq!(n, 1);

    let after = expect_json(
        app.get(&format!("/v1/emails/{}", id_of(&old))).await,
        StatusCode::OK,
    )
    .await;
    for gone in ["subject", "template_variables", "body", "body_text"] {
        assert!(after.get(gone).is_none(), "{gone} stayed: {after}");
    }
    for kept in [
        "id",
        "status",
        "to",
        "from",
        "template_id",
        "template_version",
        "tries",
        "created_at",
        "sent_at",
        "attempts",
    ] {
        assert_eq!(after[kept], before[kept], "{kept}");
    }
    let stored = app
        .rows(&format!(
            "SELECT request, rendered FROM messages WHERE id = '{}'",
            id_of(&old)
        ))
        .await;
    let text = format!("{stored:?}");
    assert!(
        !text.contains("negative") && !text.contains("Ann\""),
        "{text}"
    );
    let young_after = expect_json(
        app.get(&format!("/v1/emails/{}", id_of(&young))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(young_after["subject"], "Hi");
    assert_eq!(
        app.scalar("SELECT MAX(last_seq) FROM global_event_pages")
            .await,
        events_before,
        "the audit trail stays"
    );
    // Once only.
    assert_eq!(
        app.store()
            .purge_message_bodies(cutoff, 500, now)
            .await
            .unwrap(),
        0
    );
    app.stop().await;
}
