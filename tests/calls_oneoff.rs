//! One-off calls (`POST /v1/calls`) against a real SIPp callee: retries
//! inside the call, answered calls, scheduling, rescheduling, cancelling.

mod common;
mod sipp;

use common::{app_for, expect_error, expect_json, wait_call_final, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::SippUas;

#[tokio::test]
async fn a_busy_callee_is_retried_inside_the_call_until_its_retries_are_spent() {
    let uas = SippUas::start("uas_busy_486.xml", 3, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut rx = app.events().subscribe();
    let c = app.post_ok("/v1/calls", &json!({"to": "+15557770001", "from": "+15550001111", "max_retries": 2, "retry_delay": 0}), StatusCode::CREATED).await;
    assert_eq!(c["status"], "pending");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(wait_call_final(&mut rx, &id).await, "failed");
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["status"], "failed");
    assert_eq!(c["outcome"], "busy");
    assert_eq!(c["sip_code"], 486);
    assert_eq!(c["attempt"], 3);
    let attempts = c["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{c}");
    assert!(attempts
        .iter()
        .all(|a| a["outcome"] == "busy" && a["sip_code"] == 486));
    assert_eq!(c["from"], "+15550001111");
    uas.finish().await.assert_success();
    app.stop().await;
}

#[tokio::test]
async fn an_answered_call_completes_and_scheduled_calls_wait_move_and_cancel() {
    let uas = SippUas::start("uas_cps.xml", 2, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut rx = app.events().subscribe();
    let now = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557770002", "max_retries": 3}),
            StatusCode::CREATED,
        )
        .await;
    let id = now["id"].as_str().unwrap().to_string();
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["outcome"], "answered");
    assert!(c["answered_at"].is_string());
    assert_eq!(c["attempts"].as_array().unwrap().len(), 1);

    // Scheduled an hour out: it waits.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let s = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557770003", "schedule_type": "scheduled", "scheduled_at": later}),
            StatusCode::CREATED,
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["status"], "scheduled");
    let listed = expect_json(app.get("/v1/calls?status=scheduled").await, StatusCode::OK).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // Rescheduled to now: it is dialed.
    let moved = expect_json(
        app.patch(
            &format!("/v1/calls/{sid}"),
            &json!({"scheduled_at": chrono::Utc::now().to_rfc3339()}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["status"], "scheduled");
    assert_eq!(wait_call_final(&mut rx, &sid).await, "completed");
    let r = app
        .patch(&format!("/v1/calls/{sid}"), &json!({"scheduled_at": later}))
        .await;
    let e = expect_error(r, StatusCode::CONFLICT, "conflict", "completed").await;
    assert_eq!(e["error"]["details"]["status"], "completed");

    // Another, cancelled with a reason, then deleted.
    let x = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557770004", "schedule_type": "scheduled", "scheduled_at": later}),
            StatusCode::CREATED,
        )
        .await;
    let xid = x["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/v1/calls/{xid}/cancel"),
            &json!({"reason": "patient called back"}),
        )
        .await;
    let cancelled: Value = expect_json(r, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["reason"], "patient called back");
    expect_error(
        app.post(&format!("/v1/calls/{xid}/cancel"), &json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
        "cancelled",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/calls/{xid}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        app.get(&format!("/v1/calls/{xid}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "call",
    )
    .await;

    // Bad requests name their field.
    for (body, field) in [
        (json!({"to": "555"}), "to"),
        (
            json!({"to": "+15557770005", "agent_id": "nobody"}),
            "agent_id",
        ),
        (json!({"to": "+15557770005", "trunk": "nowhere"}), "trunk"),
        (
            json!({"to": "+15557770005", "schedule_type": "scheduled"}),
            "scheduled_at",
        ),
    ] {
        expect_error(
            app.post("/v1/calls", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
        )
        .await;
    }
    expect_error(
        app.get("/v1/calls?created_after=yesterday").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "created_after",
    )
    .await;
    let done = expect_json(app.get("/v1/calls?status=completed").await, StatusCode::OK).await;
    assert_eq!(done["items"].as_array().unwrap().len(), 2);
    uas.finish().await.assert_success();
    app.stop().await;
}

#[tokio::test]
async fn a_one_off_call_to_a_number_on_the_dnc_list_is_refused_without_an_invite() {
    // SIPp takes one call: the call that is not on the list. A second INVITE
    // would find it gone and that call would not complete.
    let uas = SippUas::start("uas_cps.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut rx = app.events().subscribe();
    let blocked = "+15557654321";
    let r = app
        .post("/v1/dnc", &json!({"number": blocked, "reason": "asked"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let c = app
        .post_ok(
            "/v1/calls",
            &json!({"to": blocked, "max_retries": 2, "retry_delay": 0}),
            StatusCode::CREATED,
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(wait_call_final(&mut rx, &id).await, "failed");
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["status"], "failed", "{c}");
    assert_eq!(c["reason"], "dnc", "{c}");
    assert!(c["sip_call_id"].is_null(), "{c}");
    assert!(c["invite_sent_at"].is_null(), "{c}");
    assert!(c["answered_at"].is_null(), "{c}");
    assert_eq!(
        c["attempts"].as_array().unwrap().len(),
        0,
        "no try was made: {c}"
    );

    let ok = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557654300"}),
            StatusCode::CREATED,
        )
        .await;
    let ok_id = ok["id"].as_str().unwrap().to_string();
    assert_eq!(wait_call_final(&mut rx, &ok_id).await, "completed");
    let exit = uas.finish().await;
    exit.assert_success();
    assert_eq!(
        exit.logs.matches("INVITE sip:").count(),
        1,
        "SIPp saw one INVITE:\n{}",
        exit.logs
    );
    assert!(
        !exit.logs.contains("5557654321"),
        "the number on the DNC list reached SIPp:\n{}",
        exit.logs
    );
    app.stop().await;
}

#[tokio::test]
async fn an_opt_out_from_a_one_off_calls_agent_puts_the_number_on_the_dnc_list() {
    let uas = SippUas::start("uas_cps.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut rx = app.events().subscribe();
    let agent = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "opt-out", "kind": "script",
                    "script": {"start": "bye", "steps": {"bye": {"result": "opted_out"}}}}),
            StatusCode::CREATED,
        )
        .await;
    let to = "+15557654322";
    let c = app
        .post_ok(
            "/v1/calls",
            &json!({"to": to, "agent_id": agent["id"]}),
            StatusCode::CREATED,
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["result"], "opted_out", "{c}");
    let dnc = expect_json(
        app.get(&format!("/v1/dnc/{}", to.replace('+', "%2B")))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(dnc["reason"], "opted_out", "{dnc}");
    // Written with the call's result: same instant as the call's end.
    let rows = app
        .rows(&format!(
            "SELECT d.created_at, c.ended_at FROM dnc d, calls c WHERE d.number = '{to}' AND c.id = '{id}'"
        ))
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][0], rows[0][1],
        "the DNC row is stamped with the call's end"
    );
    uas.finish().await.assert_success();
    app.stop().await;
}
