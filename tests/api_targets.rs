//! Target import over REST: bulk JSON with bad rows, the single-destination
//! form, idempotent client_token, duplicates, CSV with bad lines, paging.

mod common;

use std::collections::HashSet;

use common::{expect_error, expect_json, id_of, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Counts rows in a table straight from the database.
async fn count(app: &TestApp, sql: &str) -> i64 {
    match &app.store().pool {
        herald::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        herald::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

async fn bulk_json_stores_good_rows_and_reports_bad_ones(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    let body = json!({"targets": [
        {"name": "Jane", "destinations": [{"type": "tel", "target": "+15551234567"}, {"type": "sip", "target": "sip:jane@pbx.example.com"}],
         "variables": {"clinic": "North"}, "timezone": "America/New_York", "client_token": "booking-1"},
        {"destination": {"type": "tel", "target": "+15551230000"}, "try_count_max": 3},
        {"destinations": [{"type": "tel", "target": "555-1234"}]},
        {"destinations": [{"type": "tel", "target": "+15551234567"}]},
        {"destination": {"type": "sip", "target": "jane@nowhere"}},
        {"destinations": [{"type": "tel", "target": "+15551239999"}], "timezone": "Mars/Base"},
        {"destinations": [{"type": "tel", "target": "+15551239998"}], "try_count_max": 0},
        {"destinations": [{"type": "tel", "target": "+15551239997"}], "expires_at": "soon"}
    ]});
    let rep = app
        .post_ok(&format!("/v1/outdials/{od}/targets"), &body, StatusCode::OK)
        .await;
    assert_eq!(rep["received"], 8);
    assert_eq!(rep["created"], 2);
    assert_eq!(rep["duplicate_count"], 1);
    assert_eq!(rep["invalid_count"], 5);
    let invalid: Vec<(u64, String)> = rep["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        invalid,
        vec![
            (2, "targets[2].destinations[0].target".to_string()),
            (4, "targets[4].destination.target".to_string()),
            (5, "targets[5].timezone".to_string()),
            (6, "targets[6].try_count_max".to_string()),
            (7, "targets[7].expires_at".to_string()),
        ]
    );
    assert!(rep["invalid"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("E.164"));
    assert_eq!(rep["duplicates"][0]["index"], 3);
    assert_eq!(rep["duplicates"][0]["existing_id"], rep["items"][0]["id"]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM targets").await, 2);

    let jane = expect_json(
        app.get(&format!(
            "/v1/targets/{}",
            rep["items"][0]["id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(jane["state"], "idle");
    assert_eq!(jane["variables"]["clinic"], "North");
    assert_eq!(jane["destinations"][1]["type"], "sip");
    assert_eq!(jane["timezone"], "America/New_York");

    // The same client_token again returns the same target, stores nothing new.
    let again = json!({"destinations": [{"type": "tel", "target": "+15550000001"}], "client_token": "booking-1"});
    let r = app
        .post_ok(
            &format!("/v1/outdials/{od}/targets"),
            &again,
            StatusCode::OK,
        )
        .await;
    assert_eq!(r["id"], jane["id"]);
    let rep2 = app
        .post_ok(
            &format!("/v1/outdials/{od}/targets"),
            &json!([again]),
            StatusCode::OK,
        )
        .await;
    assert_eq!(rep2["existing"], 1);
    assert_eq!(rep2["items"][0]["id"], jane["id"]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM targets").await, 2);

    // Single-target form: 201, then 409 for the same first destination.
    let one = json!({"destination": {"type": "tel", "target": "+442079460000"}});
    let t = app
        .post_ok(
            &format!("/v1/outdials/{od}/targets"),
            &one,
            StatusCode::CREATED,
        )
        .await;
    let e = expect_error(
        app.post(&format!("/v1/outdials/{od}/targets"), &one).await,
        StatusCode::CONFLICT,
        "conflict",
        "+442079460000",
    )
    .await;
    assert_eq!(e["error"]["details"]["existing_id"], t["id"]);
    let e = expect_error(
        app.post(
            &format!("/v1/outdials/{od}/targets"),
            &json!({"destination": {"type": "tel", "target": "+1"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "destination.target",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "destination.target");
    let too_many = json!({"destinations": (0..6).map(|i| json!({"type": "tel", "target": format!("+1555000000{i}")})).collect::<Vec<_>>()});
    expect_error(
        app.post(&format!("/v1/outdials/{od}/targets"), &too_many)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "at most 5",
    )
    .await;
    expect_error(
        app.post("/v1/outdials/missing/targets", &one).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "outdial",
    )
    .await;

    // Delete, then it is gone; events of a fresh target are empty.
    let tid = id_of(&t);
    let ev = expect_json(
        app.get(&format!("/v1/targets/{tid}/events")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ev["items"], json!([]));
    assert_eq!(
        app.delete(&format!("/v1/targets/{tid}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        app.get(&format!("/v1/targets/{tid}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "target",
    )
    .await;
    app.stop().await;
}
on_both_backends!(bulk_json, bulk_json_stores_good_rows_and_reports_bad_ones);

async fn csv_import_reports_bad_lines_by_number(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    let csv = "phone,name,phone_2,clinic,client_token\n\
               +15551234567,Jane,sip:jane@pbx.example.com,North,tok-1\n\
               5551234567,Bob,,South,\n\
               +15557654321,Al,+15557654322,East\n\
               +15551234567,Dup,,West,\n\
               +15550001111,Eve,12,West,\n\
               +15550002222,\"Quoted, Name\",,\"North, \"\"East\"\"\",\n\
               ,NoPhone,,X,\n";
    let rep = expect_json(
        app.post_csv(&format!("/v1/outdials/{od}/targets"), csv)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rep["received"], 7, "{rep}");
    assert_eq!(rep["created"], 2, "{rep}");
    assert_eq!(rep["duplicate_count"], 1);
    assert_eq!(rep["duplicates"][0]["line"], 5);
    let invalid: Vec<(u64, String)> = rep["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        invalid,
        vec![
            (3, "phone".to_string()),
            (4, "(row)".to_string()),
            (6, "phone_2".to_string()),
            (8, "phone".to_string()),
        ],
        "{rep}"
    );
    let targets = expect_json(
        app.get(&format!("/v1/outdials/{od}/targets")).await,
        StatusCode::OK,
    )
    .await;
    let items = targets["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["destinations"][1]["target"],
        "sip:jane@pbx.example.com"
    );
    assert_eq!(items[0]["client_token"], "tok-1");
    assert_eq!(items[1]["name"], "Quoted, Name");
    assert_eq!(items[1]["variables"]["clinic"], "North, \"East\"");

    let r = app
        .post_csv(
            &format!("/v1/outdials/{od}/targets"),
            "name,clinic\nJane,North\n",
        )
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "phone",
    )
    .await;
    app.stop().await;
}
on_both_backends!(csv_import, csv_import_reports_bad_lines_by_number);

async fn paging_walks_2500_targets_exactly_once(db: Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    let od = app.outdial().await;
    let mut csv = String::from("phone,seq\n");
    for i in 0..2500 {
        csv.push_str(&format!("+1555{i:07},{i}\n"));
    }
    let rep = expect_json(
        app.post_csv(&format!("/v1/outdials/{od}/targets"), csv)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rep["created"], 2500, "{rep}");
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/outdials/{od}/targets?page_size=1000&state=idle");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let page: Value = expect_json(app.get(&path).await, StatusCode::OK).await;
        pages += 1;
        for t in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(t["id"].as_str().unwrap().to_string()),
                "target listed twice"
            );
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 2500);
    let none = expect_json(
        app.get(&format!("/v1/outdials/{od}/targets?state=finished"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none["items"], json!([]));
    expect_error(
        app.get(&format!("/v1/outdials/{od}/targets?state=ringing"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "state",
    )
    .await;
    expect_error(
        app.get(&format!("/v1/outdials/{od}/targets?page_token=%25%25"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_page_token",
        "page_token",
    )
    .await;
    let od_json = expect_json(app.get(&format!("/v1/outdials/{od}")).await, StatusCode::OK).await;
    assert_eq!(od_json["target_counts"]["idle"], 2500);
    // Deleting the outdial removes its targets.
    assert_eq!(
        app.delete(&format!("/v1/outdials/{od}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM targets").await, 0);
    app.stop().await;
}
on_both_backends!(paging, paging_walks_2500_targets_exactly_once);

async fn csv_over_the_size_limit_is_refused_and_reports_what_was_stored(db: Db) {
    let Some(app) =
        common::spawn_app_with(db, &[("HERALD__API__CSV_BODY_LIMIT_BYTES", "40000")], None).await
    else {
        return;
    };
    let od = app.outdial().await;
    // 10 chunks of 500 rows (~6.5 kB each): the limit falls inside the stream.
    let chunks = (0..10).map(|c| {
        let mut s = if c == 0 {
            String::from("phone\n")
        } else {
            String::new()
        };
        for i in c * 500..(c + 1) * 500 {
            s.push_str(&format!("+1555{i:07}\n"));
        }
        Ok::<_, std::io::Error>(s)
    });
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks.collect::<Vec<_>>()));
    let r = app
        .post_csv(&format!("/v1/outdials/{od}/targets"), body)
        .await;
    let e = expect_error(
        r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "csv_body_limit_bytes",
    )
    .await;
    let stored = e["error"]["details"]["created"]
        .as_i64()
        .expect("details say how many were stored");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM targets").await, stored);
    app.stop().await;
}
on_both_backends!(
    csv_limit,
    csv_over_the_size_limit_is_refused_and_reports_what_was_stored
);
