//! CSV import edge cases: an unclosed quote is an error on its own line and
//! the lines after it are still read; the report says how many lines were
//! read; `phone_N` beyond 5 is refused. (A body that stalls is in
//! tests/http_limits.rs.)

mod common;

use common::{expect_error, expect_json, Db, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

async fn count(app: &TestApp, od: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}'");
    app.scalar(&sql).await
}

async fn import(app: &TestApp, od: &str, csv: impl Into<reqwest::Body>) -> Value {
    expect_json(
        app.post_csv(&format!("/v1/outdials/{od}/targets"), csv)
            .await,
        StatusCode::OK,
    )
    .await
}

async fn an_unclosed_quote_fails_its_line_and_the_rest_of_the_file_is_stored(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    // 1,000 rows; line 11 (the 10th row) opens a quote it never closes.
    let mut csv = String::from("phone,name\n");
    for i in 0..1000 {
        if i == 9 {
            csv.push_str(&format!("+1204{i:07},\"Smith\n"));
        } else {
            csv.push_str(&format!("+1204{i:07},Name {i}\n"));
        }
    }
    let rep = import(&app, &od, csv).await;
    assert_eq!(rep["lines_read"], 1001, "{rep}");
    assert_eq!(rep["received"], 1000, "{rep}");
    assert_eq!(rep["created"], 999, "{rep}");
    assert_eq!(rep["invalid_count"], 1, "{rep}");
    assert_eq!(rep["invalid"][0]["line"], 11, "{rep}");
    assert_eq!(rep["invalid"][0]["field"], "(row)", "{rep}");
    let reason = rep["invalid"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("unclosed quote"), "{reason}");
    assert_eq!(count(&app, &od).await, 999);
    // The row after the bad line is stored with its own name.
    let after = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND name = 'Name 10'"
        ))
        .await;
    assert_eq!(after, 1);

    // The two-row example: the open quote does not swallow the next line.
    let od2 = app.outdial().await;
    let rep = import(
        &app,
        &od2,
        "phone,name\n+15550000071,\"abc\n+15550000072,B\n",
    )
    .await;
    assert_eq!(rep["lines_read"], 3, "{rep}");
    assert_eq!(rep["created"], 1, "{rep}");
    assert_eq!(rep["invalid"][0]["line"], 2, "{rep}");
    let names = app
        .rows(&format!(
            "SELECT name FROM targets WHERE outdial_id = '{od2}'"
        ))
        .await;
    assert_eq!(names, vec![vec![Some("B".to_string())]]);
    app.stop().await;
}
on_both_backends!(
    unclosed_quote,
    an_unclosed_quote_fails_its_line_and_the_rest_of_the_file_is_stored
);

async fn quoting_within_a_line_and_crlf_line_ends_are_read(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    let csv = "phone,name,note\r\n\
               +15551230001,\"Smith, Jane\",\"said \"\"yes\"\"\"\r\n\
               \r\n\
               +15551230002,Bob,\r\n\
               +15551230003,\"Al\",";
    let rep = import(&app, &od, csv).await;
    assert_eq!(rep["lines_read"], 5, "{rep}");
    assert_eq!(rep["created"], 3, "{rep}");
    assert_eq!(rep["invalid_count"], 0, "{rep}");
    let rows = app
        .rows(&format!(
            "SELECT name FROM targets WHERE outdial_id = '{od}' ORDER BY name"
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("Al".to_string())],
            vec![Some("Bob".to_string())],
            vec![Some("Smith, Jane".to_string())],
        ]
    );
    let t = expect_json(
        app.get(&format!("/v1/outdials/{od}/targets")).await,
        StatusCode::OK,
    )
    .await;
    let jane = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Smith, Jane")
        .cloned()
        .unwrap();
    assert_eq!(jane["variables"]["note"], "said \"yes\"");
    app.stop().await;
}
on_both_backends!(quoting, quoting_within_a_line_and_crlf_line_ends_are_read);

async fn phone_columns_beyond_the_fifth_are_refused(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            "phone,phone_2,phone_6\n+15551230001,+15551230002,+15551230006\n",
        )
        .await;
    let e = expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "at most 5 destinations",
    )
    .await;
    assert!(e.to_string().contains("phone_6"), "{e}");
    assert_eq!(count(&app, &od).await, 0);
    // phone_5 is the last one accepted.
    let rep = import(&app, &od, "phone,phone_5\n+15551230001,+15551230005\n").await;
    assert_eq!(rep["created"], 1, "{rep}");
    app.stop().await;
}
on_both_backends!(phone_6, phone_columns_beyond_the_fifth_are_refused);
