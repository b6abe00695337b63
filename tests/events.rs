//! The campaign event stream (SSE) and /metrics against a real SIPp callee
//! population: the stream matches the database's transitions and attempts
//! one for one and in order, a reconnect with Last-Event-ID gets exactly the
//! missed events, and the Prometheus counters equal the database's counts.

mod common;
mod sipp;
#[path = "common/sse.rs"]
mod sse;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{app_for, csv, expect_json, Db, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::{SippUas, UasOptions};
use sse::{SseClient, SseMessage};

const WAIT: Duration = Duration::from_secs(60);

fn events_url(app: &TestApp, c: &str, query: &str) -> String {
    app.url(&format!("/v1/campaigns/{c}/events{query}"))
}

/// Reads events until one satisfies `stop` (included) or `n` were read.
async fn read_until(
    s: &mut SseClient,
    n: usize,
    stop: impl Fn(&SseMessage) -> bool,
) -> Vec<SseMessage> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = s.next(WAIT).await.expect("stream open");
        let done = stop(&m);
        out.push(m);
        if done {
            break;
        }
    }
    out
}

fn is_finished(m: &SseMessage) -> bool {
    m.event.as_deref() == Some("campaign.status") && m.json()["data"]["to"] == "finished"
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn the_event_stream_matches_the_database_and_resumes_without_gaps(db: Db) {
    let uas = SippUas::start_with(UasOptions {
        scenario: "uas_mixed.xml",
        calls: None,
        extra: &[],
        timeout_s: 90,
        trace: false,
    })
    .await;
    let Some(app) = app_for(
        db,
        uas.addr,
        &[
            ("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "1000"),
            ("HERALD__EVENTS__KEEP_ALIVE_MS", "200"),
        ],
    )
    .await
    else {
        return;
    };
    let plan = json!({"name": "2x", "try_count_max": 2, "dial_timeout_s": 10, "retry": {"busy_s": 0, "no_answer_s": 0, "failed_s": 0}});
    let (c, od) = app
        .campaign(
            csv(60, 4_000_000),
            plan,
            json!({"calls_per_second": 100, "max_concurrent_calls": 20}),
        )
        .await;

    // Bad starting points are named.
    let r = app
        .client
        .get(events_url(&app, &c, "?after=x"))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    let body = expect_json(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["details"]["field"], "after", "{body}");
    let r = app
        .client
        .get(events_url(&app, "nope", ""))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    expect_json(r, StatusCode::NOT_FOUND).await;

    // Subscribed before the start; disconnect after 40 events.
    let mut first =
        SseClient::connect(&app.client, &events_url(&app, &c, ""), &app.key, None).await;
    app.campaign_verb(&c, "start", json!({})).await;
    let part1 = read_until(&mut first, 40, |_| false).await;
    drop(first);
    let last = part1.last().unwrap().seq();
    // The reconnect names where it stopped; Last-Event-ID wins over ?after.
    let mut second = SseClient::connect(
        &app.client,
        &events_url(&app, &c, "?after=0"),
        &app.key,
        Some(last),
    )
    .await;
    let part2 = read_until(&mut second, usize::MAX, is_finished).await;
    let events: Vec<SseMessage> = part1.iter().chain(&part2).cloned().collect();

    // Numbers 1..=N, no gap, no duplicate, N = the campaign's last number.
    let n = app
        .scalar(&format!("SELECT event_seq FROM campaigns WHERE id = '{c}'"))
        .await;
    let seqs: Vec<i64> = events.iter().map(SseMessage::seq).collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "sequence numbers are 1..={n} exactly once"
    );
    // Idle, nothing more arrives but keep-alive comments.
    let before = second.comments;
    let more = tokio::time::timeout(Duration::from_millis(700), second.next(WAIT)).await;
    assert!(
        more.is_err(),
        "an event after the campaign finished: {more:?}"
    );
    assert!(second.comments > before, "keep-alive comments while idle");
    drop(second);

    // ?after=N gives the same suffix.
    let mid = n / 2;
    let mut third = SseClient::connect(
        &app.client,
        &events_url(&app, &c, &format!("?after={mid}")),
        &app.key,
        None,
    )
    .await;
    let tail = read_until(&mut third, (n - mid) as usize, |_| false).await;
    assert_eq!(tail, events[mid as usize..].to_vec());
    drop(third);

    let body: Vec<Value> = events
        .iter()
        .map(|m| {
            let v = m.json();
            assert_eq!(v["type"], m.event.clone().unwrap().as_str());
            assert_eq!(v["seq"], m.seq());
            assert_eq!(v["campaign_id"], c.as_str());
            v
        })
        .collect();

    // Transitions: one event per target_events row, in each target's order.
    let rows = app
        .rows(&format!(
        "SELECT target_id, from_state, to_state, attempt_id, sip_code, reason FROM target_events \
         WHERE campaign_id = '{c}' ORDER BY id"))
        .await;
    let mut db_by_target: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| v.clone().unwrap_or_else(|| "-".into()))
            .collect();
        db_by_target
            .entry(cells[0].clone())
            .or_default()
            .push(cells);
    }
    let mut stream_by_target: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for e in body.iter().filter(|e| e["type"] == "target.transition") {
        let d = &e["data"];
        stream_by_target
            .entry(s(&d["target_id"]))
            .or_default()
            .push(vec![
                s(&d["target_id"]),
                s(&d["from"]),
                s(&d["to"]),
                s(&d["attempt_id"]),
                s(&d["sip_code"]),
                s(&d["reason"]),
            ]);
    }
    assert_eq!(
        rows.len(),
        body.iter()
            .filter(|e| e["type"] == "target.transition")
            .count()
    );
    assert_eq!(
        stream_by_target, db_by_target,
        "each target's transitions, in order"
    );
    assert_eq!(db_by_target.len(), 60);

    // Attempts: started once, answered iff answered_at, ended once with the row's outcome and code.
    let calls = app.rows(&format!(
        "SELECT id, target_id, outcome, sip_code, answered_at, result FROM calls WHERE campaign_id = '{c}'")).await;
    assert!(calls.len() >= 60);
    let mut kinds: HashMap<String, Vec<(usize, &Value)>> = HashMap::new();
    for (i, e) in body.iter().enumerate() {
        if let Some(a) = e["data"]["attempt_id"].as_str() {
            if e["type"] != "target.transition" {
                kinds.entry(a.to_string()).or_default().push((i, e));
            }
        }
    }
    assert_eq!(
        kinds.len(),
        calls.len(),
        "every attempt row, and only those, has events"
    );
    let mut answered = 0;
    for row in &calls {
        let id = row[0].clone().unwrap();
        let evs = &kinds[&id];
        let types: Vec<&str> = evs
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = if row[4].is_some() {
            answered += 1;
            vec!["attempt.started", "attempt.answered", "attempt.ended"]
        } else {
            vec!["attempt.started", "attempt.ended"]
        };
        // The campaign's agent (a script that hangs up) says `completed` on answered calls.
        if row[4].is_some() {
            assert_eq!(row[5].as_deref(), Some("completed"), "attempt {id}");
        }
        if let Some(result) = &row[5] {
            want.push("agent.result");
            assert_eq!(s(&evs.last().unwrap().1["data"]["result"]), *result);
        }
        assert_eq!(types, want, "attempt {id}");
        let ended = &evs
            .iter()
            .find(|(_, e)| e["type"] == "attempt.ended")
            .unwrap()
            .1["data"];
        assert_eq!(s(&ended["outcome"]), row[2].clone().unwrap());
        assert_eq!(
            s(&ended["sip_code"]),
            row[3].clone().unwrap_or_else(|| "-".into())
        );
        assert_eq!(s(&ended["target_id"]), row[1].clone().unwrap());
    }
    assert!(
        answered > 0 && answered < calls.len(),
        "a mixed population: {answered} of {}",
        calls.len()
    );

    // Campaign status: draft → running first, … → finished last.
    let statuses: Vec<(String, String)> = body
        .iter()
        .filter(|e| e["type"] == "campaign.status")
        .map(|e| (s(&e["data"]["from"]), s(&e["data"]["to"])))
        .collect();
    assert_eq!(
        statuses.first().unwrap(),
        &("draft".to_string(), "running".to_string())
    );
    assert_eq!(
        statuses.last().unwrap(),
        &("running".to_string(), "finished".to_string())
    );

    check_metrics(&app, &c, &od, n).await;

    // Deleting the campaign ends an open stream.
    let mut open = SseClient::connect(
        &app.client,
        &events_url(&app, &c, &format!("?after={n}")),
        &app.key,
        None,
    )
    .await;
    let r = app.delete(&format!("/v1/campaigns/{c}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        open.next(Duration::from_secs(10)).await,
        None,
        "the stream ends"
    );

    uas.quit();
    uas.finish().await.assert_success();
    app.stop().await;
}
on_both_backends!(
    sse_stream,
    the_event_stream_matches_the_database_and_resumes_without_gaps
);

/// Parses Prometheus text exposition, checking every line's syntax and that
/// each sample belongs to a family declared with HELP and TYPE.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, ch)| {
                ch.is_ascii_alphabetic() || ch == '_' || ch == ':' || (i > 0 && ch.is_ascii_digit())
            })
    };
    assert!(text.ends_with('\n'), "exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(name_ok(name), "bad metric name in {line}");
            assert!(
                helps.insert(name.to_string(), help.to_string()).is_none(),
                "HELP twice: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("TYPE without kind: {line}"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helps.contains_key(name), "TYPE before HELP: {line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        // name{label="value",...} value
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad sample name in {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line}"));
            // key="value" pairs, values with \\ \" \n escapes.
            let mut chars = inner.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert!(name_ok(&key), "bad label name {key:?} in {line}");
                assert_eq!(chars.next(), Some('"'), "label value not quoted in {line}");
                loop {
                    match chars.next() {
                        Some('\\') => assert!(
                            matches!(chars.next(), Some('\\' | '"' | 'n')),
                            "bad escape in {line}"
                        ),
                        Some('"') => break,
                        Some(_) => {}
                        None => panic!("unterminated label value in {line}"),
                    }
                }
                match chars.next() {
                    Some(',') | None => {}
                    other => panic!("unexpected {other:?} after a label in {line}"),
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                name.strip_suffix(suf)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample of an undeclared family: {line}"
        );
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "series twice: {line}"
        );
    }
    samples
}

async fn check_metrics(app: &TestApp, c: &str, od: &str, events: i64) {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = parse_prometheus(&r.text().await.unwrap());
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0) as i64;
    for row in app
        .rows(&format!(
            "SELECT outcome, COUNT(*) FROM calls WHERE campaign_id = '{c}' GROUP BY outcome"
        ))
        .await
    {
        let (o, n) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        assert_eq!(
            get(&format!("herald_attempts_total{{outcome=\"{o}\"}}")).to_string(),
            n,
            "outcome {o}"
        );
    }
    let attempts = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert_eq!(get("herald_attempts_started_total"), attempts);
    let ended: i64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("herald_attempts_total{"))
        .map(|(_, v)| *v as i64)
        .sum();
    assert_eq!(ended, attempts);
    for row in app.rows(&format!("SELECT sip_code, COUNT(*) FROM calls WHERE campaign_id = '{c}' AND sip_code IS NOT NULL GROUP BY sip_code")).await {
        let (code, n) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        assert_eq!(get(&format!("herald_sip_final_responses_total{{code=\"{code}\"}}")).to_string(), n, "code {code}");
    }
    for row in app
        .rows(&format!(
            "SELECT state, COUNT(*) FROM targets WHERE outdial_id = '{od}' GROUP BY state"
        ))
        .await
    {
        let (st, n) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        assert_eq!(
            get(&format!(
                "herald_campaign_targets{{campaign=\"{c}\",state=\"{st}\"}}"
            ))
            .to_string(),
            n,
            "state {st}"
        );
    }
    assert_eq!(get("herald_events_logged_total"), events);
    assert_eq!(get("herald_calls_in_flight"), 0);
    assert_eq!(get("herald_scheduler_lag_seconds_count"), attempts);
    assert!(get("herald_store_query_seconds_count{op=\"record\"}") > 0);
}

#[test]
fn the_prometheus_parser_rejects_bad_lines() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    assert_eq!(parse_prometheus(ok)["a_total{k=\"v\\\"\"}"], 1.0);
    for bad in [
        "a_total 1\n",
        "# HELP a x\n# TYPE a counter\na{k=v} 1\n",
        "# HELP a x\n# TYPE a counter\na one\n",
        "# HELP a x\n# TYPE a gauge\na 1\na 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}
