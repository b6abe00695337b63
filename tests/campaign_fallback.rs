//! A campaign's fallback message: targets that end `failed` against SIPp
//! callees that answer 486 Busy get the campaign's SMS, rendered with each
//! target's variables, at the npm `smpp` SMSC; a DNC target gets none.

mod common;
mod sipp;
#[path = "peers/smsc.rs"]
mod smsc;

use std::time::Duration;

use common::{app_for, expect_error, expect_json, id_of, wait_status, Db};
use reqwest::StatusCode;
use serde_json::json;
use sipp::SippUas;
use smsc::Smsc;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn failed_targets_get_the_campaigns_sms_with_their_variables() {
    let uas = SippUas::start("uas_busy_486.xml", 2, &[]).await;
    let mut smsc = Smsc::start(&[]).await;
    let smpp = format!("smpp://herald@127.0.0.1:{}", smsc.port);
    let app = app_for(
        Db::Sqlite,
        uas.addr,
        &[
            ("HERALD__CHANNELS__SMS__TRANSPORT", "smpp"),
            ("HERALD__CHANNELS__SMS__SMPP_URL", smpp.as_str()),
            ("HERALD__CHANNELS__SMS__PASSWORD", "secret"),
        ],
    )
    .await
    .expect("sqlite app");
    let t = app
        .post_ok(
            "/v1/templates",
            &json!({"name": "Missed", "code": "missed-call", "channel": "sms",
            "variables": [{"key": "name", "required": true}, {"key": "clinic", "required": true}],
            "body_template": "{{name}}, {{clinic}} tried to call you about your visit."}),
            StatusCode::CREATED,
        )
        .await;
    app.post_ok(
        &format!("/v1/templates/{}/activate", id_of(&t)),
        &json!({}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        "/v1/dnc",
        &json!({"number": "+15557770003"}),
        StatusCode::CREATED,
    )
    .await;

    let csv =
        "phone,name,clinic\n+15557770001,Ann,North\n+15557770002,Bo,South\n+15557770003,Cy,East\n"
            .to_string();
    let (c, od) = app
        .campaign(
            csv,
            json!({"name": "1x", "try_count_max": 1, "dial_timeout_s": 10}),
            json!({"calls_per_second": 10, "max_concurrent_calls": 2,
                   "fallback": {"channel": "sms", "template_id": "missed-call"}}),
        )
        .await;
    let mut rx = app.events().subscribe();
    // A fallback naming a template of another channel is refused.
    let e = expect_error(
        app.patch(
            &format!("/v1/campaigns/{c}"),
            &json!({"fallback": {"channel": "email", "template_id": "missed-call"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "is for sms, not email",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "fallback.template_id");
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "finished", WAIT).await;

    let submits = smsc.wait_kind("submit_sm", 2, WAIT).await;
    let mut got: Vec<(String, String)> = submits
        .iter()
        .map(|s| {
            let text =
                String::from_utf8(hex::decode(s["short_message_hex"].as_str().unwrap()).unwrap())
                    .unwrap();
            (s["destination_addr"].as_str().unwrap().to_string(), text)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "15557770001".to_string(),
                "Ann, North tried to call you about your visit.".to_string()
            ),
            (
                "15557770002".to_string(),
                "Bo, South tried to call you about your visit.".to_string()
            ),
        ]
    );
    // In the campaign's events (the DNC target's says why there is none), and on the targets.
    let r = app
        .client
        .get(app.url(&format!("/v1/campaigns/{c}/events?after=0")))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    let mut stream = r.bytes_stream();
    use futures::StreamExt;
    let found = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if body.matches("event: target.fallback").count() >= 3 {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "{body}");
    let rows = app
        .rows(&format!(
            "SELECT reason, fallback_message_id FROM targets WHERE outdial_id = '{od}' ORDER BY id"
        ))
        .await;
    let with_message = rows
        .iter()
        .filter(|r| r[1].as_deref().is_some_and(|m| !m.is_empty()))
        .count();
    assert_eq!(with_message, 2, "{rows:?}");
    let dnc = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("dnc"))
        .expect("the DNC target");
    assert_eq!(dnc[1].as_deref(), Some(""), "{rows:?}");
    let target = rows
        .iter()
        .find(|r| r[1].as_deref().is_some_and(|m| !m.is_empty()))
        .unwrap();
    let m = expect_json(
        app.get(&format!("/v1/sms/{}", target[1].as_deref().unwrap()))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["template_id"], id_of(&t).as_str());
    uas.finish().await.assert_success();
    app.stop().await;
    smsc.stop().await;
}
