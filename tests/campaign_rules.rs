//! The scheduler end to end with the instant-outcome telephony (a test double
//! below the call-control interface): outcomes, budgets, DNC, expiry,
//! calling windows and control verbs, asserted on database rows.

mod common;

use std::time::Duration;

use common::{assert_event_chains, csv_of, expect_error, expect_json, wait_status, Db};
use herald::domain::Outcome;
use herald::sim::InstantTelephony;
use reqwest::StatusCode;
use serde_json::json;

fn numbers(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("+1555{:07}", 1_000_000 + i))
        .collect()
}

fn quick_plan(tries: u32) -> serde_json::Value {
    json!({"name": "quick", "try_count_max": tries, "dial_timeout_s": 5,
           "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}})
}

async fn a_campaign_walks_its_list_to_the_end(db: Db) {
    let Some(app) = common::spawn_instant_app(db, &[]).await else {
        return;
    };
    let nums = numbers(300);
    let (c, od) = app
        .campaign(
            csv_of(&nums),
            quick_plan(3),
            json!({"calls_per_second": 1000, "max_concurrent_calls": 100}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "finished", Duration::from_secs(60)).await;

    // Every target ended finished or failed, as its number says.
    for n in &nums {
        let r = app.rows(&format!("SELECT state, try_count_current, reason FROM targets WHERE outdial_id = '{od}' AND dest_key = '{n}'")).await;
        let (state, tries) = (
            r[0][0].clone().unwrap(),
            r[0][1].clone().unwrap().parse::<u32>().unwrap(),
        );
        match InstantTelephony::outcome_for(n).0 {
            Outcome::Answered => assert_eq!((state.as_str(), tries), ("finished", 1), "{n}"),
            Outcome::InvalidDestination => {
                assert_eq!((state.as_str(), tries), ("failed", 1), "{n}: never retried")
            }
            _ => assert_eq!(
                (state.as_str(), tries),
                ("failed", 3),
                "{n}: retried to its budget"
            ),
        }
    }
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state NOT IN ('finished', 'failed')")).await, 0);
    // One call row per dial, none left open, one idle->dialing event each.
    let calls = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    let dials = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM target_events WHERE campaign_id = '{c}' AND to_state = 'dialing'"
        ))
        .await;
    let tries = app
        .scalar(&format!(
            "SELECT SUM(try_count_current) FROM targets WHERE outdial_id = '{od}'"
        ))
        .await;
    assert_eq!(calls, dials);
    assert_eq!(calls, tries);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .await,
        0
    );
    assert_event_chains(&app, &od).await;
    // busy is recorded as a state on the way.
    assert!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM target_events WHERE campaign_id = '{c}' AND to_state = 'busy'"
        ))
        .await
            > 0
    );

    let stats = expect_json(
        app.get(&format!("/v1/campaigns/{c}/stats")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["status"], "finished");
    assert_eq!(stats["attempts"]["total"], calls);
    assert_eq!(stats["live_calls"], 0);
    assert_eq!(stats["targets"]["by_state"]["idle"], 0);
    let answered = nums
        .iter()
        .filter(|n| InstantTelephony::outcome_for(n).0 == Outcome::Answered)
        .count();
    assert_eq!(stats["attempts"]["by_outcome"]["answered"], answered as i64);
    assert_eq!(stats["targets"]["by_state"]["finished"], answered as i64);
    // Control verbs in the wrong state answer 409 with the status.
    let r = app
        .client
        .post(app.url(&format!("/v1/campaigns/{c}/pause")))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::CONFLICT, "conflict", "finished").await;
    assert_eq!(e["error"]["details"]["status"], "finished");
    app.stop().await;
}
on_both_backends!(walks_to_the_end, a_campaign_walks_its_list_to_the_end);

/// Started again the moment it finished (before the scheduler's next look),
/// with new targets: the new run is dialed. Its previous task had ended and
/// must not be taken for the new run's.
async fn a_campaign_started_again_right_after_it_finished_dials_again(db: Db) {
    let Some(app) = common::spawn_instant_app(db, &[]).await else {
        return;
    };
    let (c, od) = app
        .campaign(
            csv_of(&numbers(3)),
            quick_plan(1),
            json!({"calls_per_second": 1000, "max_concurrent_calls": 100}),
        )
        .await;
    let mut rx = app.events().subscribe();
    for round in 1..=5 {
        app.campaign_verb(&c, "start", json!({})).await;
        wait_status(&mut rx, &c, "finished", Duration::from_secs(30)).await;
        // At once: new targets, and start.
        let more: Vec<String> = (0..2)
            .map(|i| format!("+1555{:07}", 2_000_000 + round * 10 + i))
            .collect();
        let r = app
            .post_csv(&format!("/v1/outdials/{od}/targets"), csv_of(&more))
            .await;
        assert!(r.status().is_success());
    }
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "finished", Duration::from_secs(30)).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM calls").await, 3 + 5 * 2);
    app.stop().await;
}
on_both_backends!(
    started_again_right_after_finishing,
    a_campaign_started_again_right_after_it_finished_dials_again
);

async fn dnc_expired_and_windows_are_checked_before_dialing(db: Db) {
    let Some(app) = common::spawn_instant_app(db, &[]).await else {
        return;
    };
    // +1555…000 is on the DNC list; one target expired already.
    let nums = numbers(3);
    let mut list = csv_of(&nums[..2]);
    list = list.replace("phone\n", "phone,expires_at\n").replace(
        &format!("{}\n", nums[1]),
        &format!("{},2020-01-01T00:00:00Z\n", nums[1]),
    );
    list = list.replace(&format!("{}\n", nums[0]), &format!("{},\n", nums[0]));
    let r = app
        .post("/v1/dnc", &json!({"number": nums[0], "reason": "asked"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    expect_json(
        app.get(&format!("/v1/dnc/{}", nums[0].replace('+', "%2B")))
            .await,
        StatusCode::OK,
    )
    .await;
    expect_error(
        app.post("/v1/dnc", &json!({"number": "555"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "number",
    )
    .await;
    let (c, od) = app
        .campaign(list, quick_plan(3), json!({"calls_per_second": 100}))
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "finished", Duration::from_secs(30)).await;
    let rows = app.rows(&format!("SELECT dest_key, state, reason FROM targets WHERE outdial_id = '{od}' ORDER BY dest_key")).await;
    assert_eq!(rows[0][1].as_deref(), Some("failed"));
    assert_eq!(rows[0][2].as_deref(), Some("dnc"));
    assert_eq!(rows[1][2].as_deref(), Some("expired"));
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await,
        0,
        "nothing was dialed"
    );
    assert_event_chains(&app, &od).await;

    // A window that is closed right now (open only on a day that is not today):
    // the campaign waits and the target is not dialed early; emergency ignores it.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%a")
        .to_string()
        .to_lowercase();
    let window = json!({"timezone": "UTC", "days": [tomorrow], "start": "00:00", "end": "23:59"});
    let (c2, od2) = app
        .campaign(
            csv_of(
                &numbers(1)[..1]
                    .iter()
                    .map(|n| n.replace("1000000", "2000001"))
                    .collect::<Vec<_>>(),
            ),
            quick_plan(1),
            json!({"calling_window": window, "calls_per_second": 100}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c2, "start", json!({})).await;
    wait_status(&mut rx, &c2, "waiting", Duration::from_secs(10)).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c2}'"
        ))
        .await,
        0
    );
    let next = app
        .scalar(&format!(
            "SELECT next_attempt_at FROM targets WHERE outdial_id = '{od2}'"
        ))
        .await;
    assert!(
        next > chrono::Utc::now().timestamp_millis() + 3_600_000,
        "deferred to the next opening"
    );
    let s = expect_json(
        app.get(&format!("/v1/campaigns/{c2}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["status_reason"], "outside the calling window");

    let (c3, _) = app
        .campaign(
            csv_of(&[String::from("+15553000001")]),
            quick_plan(1),
            json!({"calling_window": window, "priority": "emergency", "calls_per_second": 100}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c3, "start", json!({})).await;
    wait_status(&mut rx, &c3, "finished", Duration::from_secs(10)).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c3}'"
        ))
        .await,
        1
    );
    app.stop().await;
}
on_both_backends!(
    checks_before_dialing,
    dnc_expired_and_windows_are_checked_before_dialing
);

/// A zone where it is about noon now, so "earlier today" and "later today" exist.
fn noon_zone() -> String {
    use chrono::Timelike;
    let offset = 12 - chrono::Utc::now().hour() as i32;
    if offset >= 0 {
        format!("Etc/GMT-{offset}")
    } else {
        format!("Etc/GMT+{}", -offset)
    }
}

async fn daily_schedules_wait_for_their_start_and_after_the_run(db: Db) {
    let Some(app) = common::spawn_instant_app(db, &[]).await else {
        return;
    };
    let tz = noon_zone();
    // Starts later today: waits, dials nothing.
    let (late, _) = app.campaign(csv_of(&[String::from("+15554000001")]), quick_plan(1),
        json!({"schedule": {"daily_start": "15:00", "timezone": tz}, "calls_per_second": 100, "end_handle": "continue"})).await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&late, "start", json!({})).await;
    wait_status(&mut rx, &late, "waiting", Duration::from_secs(10)).await;
    let c = expect_json(
        app.get(&format!("/v1/campaigns/{late}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        c["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("waiting for the next daily start"),
        "{c}"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{late}'"
        ))
        .await,
        0
    );

    // Started earlier today: dials its list, then waits for tomorrow (end_handle continue).
    let nums: Vec<String> = (0..20).map(|i| format!("+1555401{i:04}")).collect();
    let (early, od) = app.campaign(csv_of(&nums), quick_plan(1),
        json!({"schedule": {"daily_start": "09:00", "timezone": tz}, "calls_per_second": 1000, "end_handle": "continue"})).await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&early, "start", json!({})).await;
    wait_status(&mut rx, &early, "waiting", Duration::from_secs(20)).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{early}'"
        ))
        .await,
        20
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'idle'"
        ))
        .await,
        0
    );
    app.stop().await;
}
on_both_backends!(
    daily_schedule,
    daily_schedules_wait_for_their_start_and_after_the_run
);

async fn an_emergency_campaign_takes_the_trunk_ahead_of_a_normal_one(db: Db) {
    // The trunk allows 50 calls/s; both campaigns would take more.
    let Some(app) = common::spawn_instant_app(
        db,
        &[("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "50")],
    )
    .await
    else {
        return;
    };
    let normal_nums: Vec<String> = (0..400)
        .map(|i| format!("+1555600{:04}", i * 100 % 10_000 + i % 70))
        .collect();
    let (normal, _) = app
        .campaign(
            csv_of(&normal_nums),
            quick_plan(1),
            json!({"calls_per_second": 1000}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&normal, "start", json!({})).await;
    // Once the normal campaign is dialing, an emergency blast arrives.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(herald::events::Event::AttemptsClaimed { campaign_id, .. }) = rx.recv().await
            {
                if campaign_id == normal {
                    break;
                }
            }
        }
    })
    .await
    .expect("the normal campaign dials");
    let blast: Vec<String> = (0..40)
        .map(|i| format!("+1555700{:02}{:02}", i, i % 70))
        .collect();
    let (emergency, _) = app
        .campaign(
            csv_of(&blast),
            quick_plan(1),
            json!({"calls_per_second": 1000, "priority": "emergency"}),
        )
        .await;
    app.campaign_verb(&emergency, "start", json!({})).await;
    wait_status(&mut rx, &emergency, "finished", Duration::from_secs(20)).await;

    let (first, last) = (
        app.scalar(&format!(
            "SELECT MIN(created_at) FROM calls WHERE campaign_id = '{emergency}'"
        ))
        .await,
        app.scalar(&format!(
            "SELECT MAX(created_at) FROM calls WHERE campaign_id = '{emergency}'"
        ))
        .await,
    );
    assert!(
        last - first < 2_000,
        "40 calls at the trunk's 50/s took {} ms",
        last - first
    );
    let overlapping = app
        .scalar(&format!("SELECT COUNT(*) FROM calls WHERE campaign_id = '{normal}' AND created_at > {} AND created_at < {last}", first + 300))
        .await;
    assert_eq!(
        overlapping, 0,
        "the normal campaign kept dialing during the emergency blast"
    );
    let normal_calls = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{normal}'"
        ))
        .await;
    assert!(
        normal_calls < 400,
        "the trunk's rate held the normal campaign back"
    );
    app.stop().await;
}
on_both_backends!(
    emergency_priority,
    an_emergency_campaign_takes_the_trunk_ahead_of_a_normal_one
);

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

const ALL_DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Polls (bounded) until `sql` counts at least `n`.
async fn wait_count(app: &common::TestApp, sql: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = app.scalar(sql).await;
        if got >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {got} < {n} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_waiting_campaign_dials_at_its_window_opening_across_spring_forward_and_stops_at_the_close(
    db: Db,
) {
    // Sunday 2027-03-14, 01:00 EST; clocks in New York jump from 02:00 EST
    // to 03:00 EDT at 07:00Z, so 09:00 that morning is 13:00Z, not 14:00Z.
    let Some((app, clock)) = common::spawn_instant_app_at(db, utc("2027-03-14T06:00:00Z")).await
    else {
        return;
    };
    let nums: Vec<String> = (0..40)
        .map(|i| format!("+1212555{:04}", 1000 + i))
        .collect();
    let window =
        json!({"timezone": "America/New_York", "days": ALL_DAYS, "start": "09:00", "end": "17:00"});
    // Two calls a second (by the wall clock), so the close finds the list half done.
    let (c, od) = app
        .campaign(
            csv_of(&nums),
            quick_plan(1),
            json!({"calling_window": window, "calls_per_second": 2}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "waiting", Duration::from_secs(10)).await;
    let calls = format!("SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'");
    assert_eq!(app.scalar(&calls).await, 0);
    let opening = utc("2027-03-14T13:00:00Z").timestamp_millis();
    let deferred_to = format!(
        "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'idle' AND next_attempt_at = {opening}"
    );
    assert!(
        app.scalar(&deferred_to).await >= 1,
        "the first target is deferred to 09:00 EDT"
    );

    // A second before the opening: still nothing.
    clock.set(utc("2027-03-14T12:59:59Z"));
    common::wait_clock_reads(&clock, 40).await;
    assert_eq!(app.scalar(&calls).await, 0, "dialed before the opening");

    // At the opening it dials.
    clock.set(utc("2027-03-14T13:00:00Z"));
    wait_status(&mut rx, &c, "running", Duration::from_secs(10)).await;
    wait_count(&app, &calls, 3).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT MIN(created_at) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await,
        opening
    );

    // 17:00 EDT: the window closes; the rest waits for Monday 09:00 EDT.
    let close = utc("2027-03-14T21:00:00Z");
    clock.set(close);
    wait_status(&mut rx, &c, "waiting", Duration::from_secs(10)).await;
    let dialed = app.scalar(&calls).await;
    assert!(dialed < nums.len() as i64, "the whole list was dialed");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}' AND created_at >= {}",
            close.timestamp_millis()
        ))
        .await,
        0,
        "dialed after the close"
    );
    let monday = utc("2027-03-15T13:00:00Z").timestamp_millis();
    let waiting_for_monday = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'idle' AND next_attempt_at = {monday}"
        ))
        .await;
    assert!(
        waiting_for_monday >= 1,
        "a target is deferred to Monday's opening"
    );
    common::wait_clock_reads(&clock, 40).await;
    assert_eq!(app.scalar(&calls).await, dialed, "dialed while closed");
    app.stop().await;
}
on_both_backends!(
    window_opening_and_close,
    a_waiting_campaign_dials_at_its_window_opening_across_spring_forward_and_stops_at_the_close
);

async fn a_daily_schedule_wakes_at_its_start(db: Db) {
    // Sunday 2027-03-14, 08:00 EDT.
    let Some((app, clock)) = common::spawn_instant_app_at(db, utc("2027-03-14T12:00:00Z")).await
    else {
        return;
    };
    let nums: Vec<String> = (0..5).map(|i| format!("+1212556{:04}", 1000 + i)).collect();
    let (c, od) = app
        .campaign(
            csv_of(&nums),
            quick_plan(1),
            json!({"schedule": {"daily_start": "09:00", "timezone": "America/New_York"}, "calls_per_second": 1000, "end_handle": "continue"}),
        )
        .await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    wait_status(&mut rx, &c, "waiting", Duration::from_secs(10)).await;
    let shown = expect_json(app.get(&format!("/v1/campaigns/{c}")).await, StatusCode::OK).await;
    assert_eq!(
        shown["status_reason"],
        "waiting for the next daily start (2027-03-14T13:00:00+00:00)"
    );
    let calls = format!("SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'");
    clock.set(utc("2027-03-14T12:59:59Z"));
    common::wait_clock_reads(&clock, 40).await;
    assert_eq!(app.scalar(&calls).await, 0, "dialed before the daily start");

    clock.set(utc("2027-03-14T13:00:00Z"));
    wait_status(&mut rx, &c, "running", Duration::from_secs(10)).await;
    // Today's run drains its list, then waits for tomorrow's start.
    wait_status(&mut rx, &c, "waiting", Duration::from_secs(20)).await;
    assert_eq!(app.scalar(&calls).await, 5);
    assert_eq!(
        app.scalar(&format!(
            "SELECT MIN(created_at) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await,
        utc("2027-03-14T13:00:00Z").timestamp_millis()
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM targets WHERE outdial_id = '{od}' AND state = 'idle'"
        ))
        .await,
        0
    );
    app.stop().await;
}
on_both_backends!(daily_start_wakes, a_daily_schedule_wakes_at_its_start);
