//! Answering-machine detection end to end: SIPp answers and plays items of
//! the generated corpus (`scenarios/tools/amd_corpus.py`: espeak-ng and
//! flite voices through sox) as RTP; herald listens after the answer and
//! says who answered. A person gets the agent; a machine's greeting gets the
//! voicemail message after its beep; a fax is hung up on. The corpus's
//! accuracy as a whole is the bench's (`benches/amd_accuracy.rs`); here each
//! item's verdict over RTP must be the detector's on the file itself.

mod common;
mod sipp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{expect_json, Db, TestApp};
use herald::media::amd::{AmdConfig, Detector, Mode};
use herald::media::g711::ulaw_to_linear;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::{crate_root, SippUas};

/// A few items of each class, made once per run.
fn corpus() -> PathBuf {
    // One generator at a time: the tests of this file run in parallel, and
    // the generator may install its tools with apt (under the one lock every
    // test's apt install takes).
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = crate_root().join("target").join("amd-corpus-e2e");
    if !dir.join("manifest.csv").exists() {
        eprintln!("amd: generating a small corpus in {}", dir.display());
        let ok = std::process::Command::new("flock")
            .args(["/tmp/herald-apt.lock", "python3"])
            .arg(crate_root().join("scenarios/tools/amd_corpus.py"))
            .arg(&dir)
            .args(["--items", "3"])
            .status()
            .expect("python3");
        assert!(ok.success(), "the corpus generator failed");
    }
    dir
}

/// The detector's verdict on a file, fed as herald is fed over RTP.
fn offline(path: &Path) -> &'static str {
    offline_in(path, Mode::DetectMessageEnd)
}

fn offline_in(path: &Path, mode: Mode) -> &'static str {
    let ulaw = std::fs::read(path).unwrap();
    let mut d = Detector::new(AmdConfig {
        mode,
        ..AmdConfig::default()
    });
    for frame in ulaw.chunks(160) {
        let pcm: Vec<i16> = frame.iter().map(|u| ulaw_to_linear(*u)).collect();
        if let Some(v) = d.push(&pcm) {
            return v.verdict.as_str();
        }
    }
    // After the file, herald hears silence until the verdict.
    let silence = [0i16; 160];
    for _ in 0..3_000 {
        if let Some(v) = d.push(&silence) {
            return v.verdict.as_str();
        }
    }
    d.finish().verdict.as_str()
}

/// The first item of `class` the detector gets right on the file.
fn item(dir: &Path, class: &str, expected: &str) -> PathBuf {
    (0..3)
        .map(|i| dir.join(format!("{class}_{i:04}.ulaw")))
        .find(|p| offline(p) == expected)
        .unwrap_or_else(|| panic!("no {class} item is {expected} on the file"))
}

/// A SIPp callee that answers and plays `file` once as RTP, then waits for BYE.
async fn callee_playing(file: &Path, scratch: &Path) -> SippUas {
    let template =
        std::fs::read_to_string(crate_root().join("scenarios/uas_stream_voice.xml")).unwrap();
    let scenario = template.replace(
        "scenarios/audio/voice_2s.ulaw,-1,0",
        &format!("{},1,0", file.display()),
    );
    assert_ne!(scenario, template);
    let path = scratch.join(format!(
        "{}.xml",
        file.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, scenario).unwrap();
    // A machine's greeting, its beep and the message run past SIPp's
    // default 15 s wait for the BYE.
    SippUas::start(path.to_str().unwrap(), 1, &["-recv_timeout", "40s"]).await
}

async fn wait_final(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
        if c["status"] == "completed" || c["status"] == "failed" {
            return c;
        }
        assert!(tokio::time::Instant::now() < deadline, "call {id}: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn who_answered_is_heard_over_rtp_and_acted_on() {
    let dir = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let human = item(&dir, "human_short", "human");
    let machine = item(&dir, "machine_beep", "machine_end_beep");
    let fax = item(&dir, "fax", "fax");
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let bot = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "bot", "kind": "script", "script": common::hang_up_script()}),
            StatusCode::CREATED,
        )
        .await;
    // Twilio's AsyncAmd status callbacks land here.
    let (hook_tx, mut hooks) = tokio::sync::mpsc::unbounded_channel::<String>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/amd", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/amd",
        axum::routing::post(move |body: String| {
            let tx = hook_tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let amd = json!({"mode": "detect_message_end", "on_machine": "voicemail_drop",
                     "voicemail_prompt": "appointment-ask.wav", "callback_url": hook_url});
    let mut peers = Vec::new();
    let mut calls = Vec::new();
    for file in [&human, &machine, &fax] {
        let uas = callee_playing(file, scratch.path()).await;
        let call = app
            .post_ok(
                "/v1/calls",
                &json!({"to": uas.uri(), "agent_id": bot["id"], "amd": amd}),
                StatusCode::CREATED,
            )
            .await;
        calls.push(common::id_of(&call));
        peers.push(uas);
    }
    // A campaign's attempt says who answered in its event log too.
    let fax_uas = callee_playing(&fax, scratch.path()).await;
    let od = common::id_of(
        &app.post_ok("/v1/outdials", &json!({"name": "l"}), StatusCode::CREATED)
            .await,
    );
    app.post_ok(
        &format!("/v1/outdials/{od}/targets"),
        &json!({"destinations": [{"type": "sip", "target": fax_uas.uri()}]}),
        StatusCode::CREATED,
    )
    .await;
    let op = common::id_of(
        &app.post_ok(
            "/v1/outplans",
            &json!({"name": "p", "try_count_max": 1}),
            StatusCode::CREATED,
        )
        .await,
    );
    let campaign = common::id_of(
        &app.post_ok(
            "/v1/campaigns",
            &json!({"name": "c", "outdial_id": od, "outplan_id": op, "agent_id": bot["id"], "amd": amd}),
            StatusCode::CREATED,
        )
        .await,
    );
    let mut rx = app.events().subscribe();
    app.campaign_verb(&campaign, "start", json!({})).await;
    common::wait_status(&mut rx, &campaign, "finished", Duration::from_secs(30)).await;
    fax_uas.finish().await.assert_success();
    let pages = app
        .rows(&format!(
            "SELECT events FROM event_pages WHERE campaign_id = '{campaign}'"
        ))
        .await;
    let logged: Vec<Value> = pages
        .iter()
        .flat_map(|p| serde_json::from_str::<Vec<Value>>(p[0].as_deref().unwrap()).unwrap())
        .filter(|e| e[0] == "M")
        .collect();
    assert_eq!(logged.len(), 1, "one attempt.amd event: {pages:?}");
    assert_eq!(logged[0][4], "fax", "{logged:?}");
    assert!(
        logged[0][6].as_str().unwrap().starts_with("fax_"),
        "{logged:?}"
    );

    let mut ended = Vec::new();
    for id in &calls {
        ended.push(wait_final(&app, id).await);
    }
    for uas in peers {
        uas.finish().await.assert_success();
    }
    let [human, machine, fax] = [&ended[0], &ended[1], &ended[2]];

    // Each verdict was posted as Twilio's AsyncAmd callback (the three
    // one-off calls and the campaign's).
    let mut posted = Vec::new();
    while posted.len() < 4 {
        let body = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
            .await
            .expect("an amd callback")
            .unwrap();
        posted.push(
            form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect::<std::collections::HashMap<String, String>>(),
        );
    }
    let human_sid = format!("CA{}", calls[0].replace('-', ""));
    let hook = posted
        .iter()
        .find(|p| p["CallSid"] == human_sid)
        .unwrap_or_else(|| panic!("no callback for the person's call: {posted:?}"));
    assert_eq!(hook["AnsweredBy"], "human");
    assert_eq!(
        hook["MachineDetectionDuration"],
        human["amd_ms"].as_i64().unwrap().to_string()
    );

    // The person got the agent, whose script ended the call.
    assert_eq!(human["answered_by"], "human", "{human}");
    assert_eq!(human["result"], "completed", "{human}");
    assert!(human["amd_ms"].as_i64().unwrap() < 5_000, "{human}");

    // The machine got the message after its beep, then herald hung up.
    assert_eq!(machine["answered_by"], "machine_end_beep", "{machine}");
    assert_eq!(machine["result"], "voicemail_left", "{machine}");
    let prompt_ms = herald::media::prompts::Prompts::shipped_only()
        .load("appointment-ask.wav")
        .unwrap()
        .len() as i64
        / 8;
    let (amd_ms, lasted) = (
        machine["amd_ms"].as_i64().unwrap(),
        app.scalar(&format!(
            "SELECT duration_ms FROM calls WHERE id = '{}'",
            calls[1]
        ))
        .await,
    );
    assert!(
        lasted >= amd_ms + prompt_ms - 200,
        "the call lasted {lasted} ms: the verdict at {amd_ms} ms and a {prompt_ms} ms message"
    );

    // The fax was hung up on, nobody connected.
    assert_eq!(fax["answered_by"], "fax", "{fax}");
    assert_eq!(fax["result"], "machine", "{fax}");
    assert!(fax["amd_ms"].as_i64().unwrap() < 2_000, "{fax}");
    app.stop().await;
}

/// What a media_stream bot saw of one call: the events in order (marks by
/// name), and whether media came before the verdict's mark.
async fn bot_call(listener: &tokio::net::TcpListener, hang_up_on_mark: bool) -> Vec<String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (s, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("herald connected to the bot at the answer")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message from herald in time");
        let Some(Ok(Message::Text(t))) = m else {
            if matches!(m, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
                continue;
            }
            return seen;
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        let event = v["event"].as_str().unwrap_or_default().to_string();
        if event == "mark" {
            let name = v["mark"]["name"].as_str().unwrap().to_string();
            seen.push(format!("mark {name}"));
            if hang_up_on_mark {
                let _ = ws.send(Message::Close(None)).await;
                return seen;
            }
        } else if seen.last() != Some(&event) {
            // Consecutive media frames counted once.
            seen.push(event);
        }
    }
}

#[tokio::test]
async fn detect_connects_the_bot_at_once_and_tells_it_the_verdict_as_a_mark() {
    let dir = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let pick = |class: &str, expected: &str| {
        (0..3)
            .map(|i| dir.join(format!("{class}_{i:04}.ulaw")))
            .find(|p| offline_in(p, Mode::Detect) == expected)
            .unwrap_or_else(|| panic!("no {class} item is {expected} in detect mode"))
    };
    let human = pick("human_short", "human");
    let machine = pick("machine_beep", "machine_start");
    let Some(app) = common::spawn_app(Db::Sqlite).await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/stream", listener.local_addr().unwrap());
    let bot = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "ws", "kind": "media_stream", "url": url}),
            StatusCode::CREATED,
        )
        .await;
    let mut ended = Vec::new();
    for (file, hang_up_on_mark) in [(&human, true), (&machine, false)] {
        let uas = callee_playing(file, scratch.path()).await;
        let call = app
            .post_ok(
                "/v1/calls",
                &json!({"to": uas.uri(), "agent_id": bot["id"], "amd": {"mode": "detect"}}),
                StatusCode::CREATED,
            )
            .await;
        let seen = bot_call(&listener, hang_up_on_mark).await;
        let call = wait_final(&app, &common::id_of(&call)).await;
        uas.finish().await.assert_success();
        ended.push((seen, call));
    }
    let (seen, call) = &ended[0];
    // The bot was talking before the verdict came, and heard it as a mark.
    assert_eq!(
        seen[..4],
        ["connected", "start", "media", "mark herald.amd:human"],
        "{seen:?}"
    );
    assert_eq!(call["answered_by"], "human", "{call}");
    assert_eq!(call["outcome"], "answered", "{call}");
    // A machine: told, then hung up on (on_machine's default), the bot's
    // socket closed by herald.
    let (seen, call) = &ended[1];
    assert_eq!(
        seen[..4],
        [
            "connected",
            "start",
            "media",
            "mark herald.amd:machine_start"
        ],
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), "stop", "{seen:?}");
    assert_eq!(call["answered_by"], "machine_start", "{call}");
    assert_eq!(call["result"], "machine", "{call}");
    app.stop().await;
}
