//! `media_stream` agents end to end: herald places calls at a real SIPp
//! callee and bridges them to a real WebSocket bot (tokio-tungstenite on
//! port 0) speaking the Twilio Media Streams protocol.

mod common;
mod sipp;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{app_for, expect_json, wait_call_final, Db, TestApp};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipp::SippUas;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(20);

/// A WebSocket bot: every accepted socket is handed to the test.
struct Bot {
    url: String,
    conns: mpsc::UnboundedReceiver<Ws>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bot {
    async fn start() -> Bot {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/stream", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(s).await {
                    let _ = tx.send(ws);
                }
            }
        });
        Bot { url, conns, task }
    }

    async fn accept(&mut self) -> Ws {
        tokio::time::timeout(STEP, self.conns.recv())
            .await
            .expect("herald connected to the bot")
            .expect("bot listener")
    }
}

/// The next JSON message, or `None` once the socket is closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a message from herald in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("herald sends JSON"))
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn recv(ws: &mut Ws) -> Value {
    next(ws).await.expect("the socket is open")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("bot send");
}

async fn send_audio(ws: &mut Ws, sid: &str, ulaw: &[u8]) {
    send(
        ws,
        json!({"event": "media", "streamSid": sid, "media": {"payload": B64.encode(ulaw)}}),
    )
    .await;
}

fn payload(m: &Value) -> Vec<u8> {
    B64.decode(m["media"]["payload"].as_str().expect("payload"))
        .expect("base64 payload")
}

/// Checks a `MZ…`/`CA…`/`AC…` id: the prefix and 32 lowercase hex digits.
fn assert_sid(v: &Value, prefix: &str) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("{prefix} sid missing"));
    let hex = s.strip_prefix(prefix).unwrap_or_else(|| panic!("{s}"));
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{s} is not {prefix} + 32 hex"
    );
    s.to_string()
}

/// Tracks `sequenceNumber`: every message after `connected` counts.
struct Sequence(u64);

impl Sequence {
    fn check(&mut self, m: &Value) {
        self.0 += 1;
        assert_eq!(m["sequenceNumber"], self.0.to_string(), "{m}");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn chirp() -> Vec<u8> {
    std::fs::read(sipp::crate_root().join("scenarios/audio/chirp_1s.ulaw")).expect("chirp")
}

async fn agent(app: &TestApp, url: &str) -> String {
    let a = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "stream-bot", "kind": "media_stream", "url": url,
                    "parameters": {"voice": "alloy", "speed": 1.5}}),
            StatusCode::CREATED,
        )
        .await;
    common::id_of(&a)
}

/// A one-target campaign (variables `clinic`, `slot`) with `agent`; returns (campaign, target).
async fn campaign(app: &TestApp, agent: &str, phone: &str) -> (String, String) {
    let csv = format!("phone,clinic,slot\n{phone},North,15:00\n");
    let (c, od) = app
        .campaign(
            csv,
            json!({"name": "1x", "try_count_max": 1, "dial_timeout_s": 10}),
            json!({"agent_id": agent, "calls_per_second": 10, "max_concurrent_calls": 1}),
        )
        .await;
    let target = app
        .rows(&format!("SELECT id FROM targets WHERE outdial_id = '{od}'"))
        .await[0][0]
        .clone()
        .unwrap();
    (c, target)
}

#[tokio::test]
async fn the_bot_gets_start_the_callees_audio_byte_exact_and_one_key_press_and_its_close_hangs_up()
{
    let uas = SippUas::start("uas_stream_audio.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let (c, target) = campaign(&app, &ag, "+15557650001").await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;

    let mut ws = bot.accept().await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    );
    let start = recv(&mut ws).await;
    let mut seq = Sequence(0);
    seq.check(&start);
    assert_eq!(start["event"], "start");
    let sid = assert_sid(&start["streamSid"], "MZ");
    let s = &start["start"];
    assert_eq!(s["streamSid"], sid);
    let call_sid = assert_sid(&s["callSid"], "CA");
    assert_sid(&s["accountSid"], "AC");
    assert_eq!(s["tracks"], json!(["inbound"]));
    assert_eq!(
        s["mediaFormat"],
        json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
    );
    assert_eq!(
        s["customParameters"],
        json!({"clinic": "North", "slot": "15:00", "voice": "alloy", "speed": "1.5",
               "campaign_id": c, "target_id": target}),
    );
    let attempt = herald::agent::attempt_of_call_sid(&call_sid).expect("call sid of an attempt");

    // The callee's audio, then its key press.
    let mut audio = Vec::new();
    let mut stamps = Vec::new();
    let mut chunk = 0u64;
    let dtmf = loop {
        let m = recv(&mut ws).await;
        seq.check(&m);
        assert_eq!(m["streamSid"], sid, "{m}");
        match m["event"].as_str() {
            Some("media") => {
                chunk += 1;
                assert_eq!(m["media"]["track"], "inbound");
                assert_eq!(m["media"]["chunk"], chunk.to_string());
                let p = payload(&m);
                assert_eq!(p.len(), 160);
                audio.extend_from_slice(&p);
                stamps.push(
                    m["media"]["timestamp"]
                        .as_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
            Some("dtmf") => break m,
            other => panic!("unexpected {other:?}: {m}"),
        }
    };
    assert_eq!(
        dtmf["dtmf"],
        json!({"track": "inbound_track", "digit": "1"})
    );
    let known = chirp();
    let at = find(&audio, &known[..160]).expect("the chirp's first frame arrived");
    assert_eq!(
        &audio[at..(at + known.len()).min(audio.len())],
        &known[..],
        "the chirp arrived byte-exact"
    );
    assert_eq!(at % 160, 0);
    assert!(
        stamps.windows(2).all(|w| w[1] - w[0] == 20) && stamps[0] == 0,
        "media timestamps from 0, 20 ms apart: {stamps:?}"
    );
    // Between the chirp's end and the key press the callee sends no audio:
    // the stream goes on with silence.
    let after = &audio[at + known.len()..];
    assert!(
        after.len() >= 160 * 5 && after.iter().all(|&b| b == 0xFF),
        "{} bytes after the chirp",
        after.len()
    );

    // Half a second of silence and a mark: the key press's trailing packets
    // (140 ms of RFC 4733 retransmissions) are over when it is echoed.
    send_audio(&mut ws, &sid, &[0xFF; 4000]).await;
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "settled"}}),
    )
    .await;
    loop {
        let m = recv(&mut ws).await;
        seq.check(&m);
        match m["event"].as_str() {
            Some("media") => {}
            Some("mark") => {
                assert_eq!(m["mark"]["name"], "settled");
                break;
            }
            other => panic!("a second key press or {other:?}: {m}"),
        }
    }

    // The bot hangs up by closing its socket: herald sends BYE.
    ws.close(None).await.expect("close");
    while next(&mut ws).await.is_some() {}
    common::wait_status(&mut rx, &c, "finished", Duration::from_secs(20)).await;
    uas.finish().await.assert_success();
    let row = app
        .rows(&format!(
            "SELECT outcome, hangup_by, result FROM calls WHERE id = '{attempt}'"
        ))
        .await;
    assert_eq!(
        row,
        vec![vec![Some("answered".into()), Some("herald".into()), None]],
        "the attempt"
    );
    app.stop().await;
}

#[tokio::test]
async fn bot_audio_reaches_the_callee_marks_wait_for_playout_clear_drops_and_twilios_hang_up_ends_the_call(
) {
    let uas = SippUas::start("uas_answer_echo.xml", 1, &["-rtp_echo"]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let mut rx = app.events().subscribe();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557650002", "agent_id": ag}),
            StatusCode::CREATED,
        )
        .await;
    let id = common::id_of(&call);

    let mut ws = bot.accept().await;
    assert_eq!(recv(&mut ws).await["event"], "connected");
    let start = recv(&mut ws).await;
    assert_eq!(start["event"], "start");
    let sid = start["streamSid"].as_str().unwrap().to_string();
    let call_sid = start["start"]["callSid"].as_str().unwrap().to_string();
    let account = start["start"]["accountSid"].as_str().unwrap().to_string();
    assert_eq!(herald::agent::call_sid(&id), call_sid);
    // A one-off call has no campaign or target.
    assert_eq!(
        start["start"]["customParameters"],
        json!({"voice": "alloy", "speed": "1.5"})
    );

    // Twilio's REST call resource while the call is live.
    let twilio = |sid: &str| app.url(&format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"));
    let r = app
        .client
        .get(twilio(&call_sid))
        .basic_auth(&account, Some(&app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_json(r, StatusCode::OK).await["status"],
        "in-progress"
    );

    // The chirp, sent faster than real time in uneven pieces, then a mark.
    let known = chirp();
    let sent = Instant::now();
    for piece in [&known[..3000], &known[3000..3001], &known[3001..]] {
        send_audio(&mut ws, &sid, piece).await;
    }
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "chirp"}}),
    )
    .await;
    let mut echoed = Vec::new();
    let mut mark_after = None;
    // The callee (SIPp echoing RTP) sends it back: wait for the mark and the whole chirp.
    while mark_after.is_none() || find(&echoed, &known).is_none() {
        let m = recv(&mut ws).await;
        match m["event"].as_str() {
            Some("media") => echoed.extend_from_slice(&payload(&m)),
            Some("mark") => {
                assert_eq!(m["mark"]["name"], "chirp");
                mark_after = Some(sent.elapsed());
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
        assert!(
            echoed.len() < 8000 * 10,
            "the chirp never came back from SIPp"
        );
    }
    let mark_after = mark_after.unwrap();
    // 50 frames: the mark plays with the last, sent 49 × 20 ms after the first.
    assert!(
        mark_after >= Duration::from_millis(980),
        "the mark was echoed {mark_after:?} after 1 s of audio was sent"
    );

    // A 10 s clip, cleared once it is heard: its mark comes back at once and
    // the callee hears far less than the clip.
    const CLIP: u8 = 0x5A;
    const TAIL: u8 = 0x2A;
    send_audio(&mut ws, &sid, &[CLIP; 80_000]).await;
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "clip"}}),
    )
    .await;
    let clip_sent = Instant::now();
    let mut heard = Vec::new();
    while !heard.contains(&CLIP) {
        let m = recv(&mut ws).await;
        assert_eq!(m["event"], "media", "{m}");
        heard.extend_from_slice(&payload(&m));
    }
    send(&mut ws, json!({"event": "clear", "streamSid": sid})).await;
    send_audio(&mut ws, &sid, &[TAIL; 800]).await;
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "tail"}}),
    )
    .await;
    let mut marks = Vec::new();
    // Wait for the tail's bytes to come back: everything played before them has too.
    while heard.iter().filter(|&&b| b == TAIL).count() < 800 {
        let m = recv(&mut ws).await;
        match m["event"].as_str() {
            Some("media") => heard.extend_from_slice(&payload(&m)),
            Some("mark") => marks.push((m["mark"]["name"].clone(), clip_sent.elapsed())),
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert_eq!(marks[0].0, "clip", "{marks:?}");
    assert!(marks[0].1 < Duration::from_secs(3), "{marks:?}");
    let clip_heard = heard.iter().filter(|&&b| b == CLIP).count();
    assert!(
        clip_heard < 16_000,
        "{clip_heard} bytes of the 80,000-byte clip reached the callee after clear"
    );

    // Twilio's call update: wrong credentials, an unknown call, then the hang-up.
    let r = app
        .client
        .post(twilio(&call_sid))
        .basic_auth(&account, Some("not-a-key"))
        .form(&[("Status", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let unknown = herald::agent::call_sid(&uuid::Uuid::new_v4().to_string());
    let r = app
        .client
        .post(twilio(&unknown))
        .basic_auth(&account, Some(&app.key))
        .form(&[("Status", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(r, StatusCode::NOT_FOUND).await["code"], 20404);
    let r = app
        .client
        .post(twilio(&call_sid))
        .basic_auth(&account, Some(&app.key))
        .form(&[("Status", "completed")])
        .send()
        .await
        .unwrap();
    expect_json(r, StatusCode::OK).await;
    // The bot is told: `stop`, then the socket closes.
    let stop = loop {
        let m = recv(&mut ws).await;
        if m["event"] != "media" && m["event"] != "mark" {
            break m;
        }
    };
    assert_eq!(
        stop,
        json!({"event": "stop", "sequenceNumber": stop["sequenceNumber"], "streamSid": sid,
               "stop": {"accountSid": account, "callSid": call_sid}})
    );
    assert!(next(&mut ws).await.is_none(), "closed after stop");
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    uas.finish().await.assert_success();
    let r = app
        .client
        .get(twilio(&call_sid))
        .basic_auth(&account, Some(&app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(r, StatusCode::OK).await["status"], "completed");
    app.stop().await;
}

async fn a_result_mark_opts_out_and_the_callees_bye_sends_stop(db: Db) {
    let uas = SippUas::start("uas_answer_then_bye.xml", 1, &[]).await;
    let Some(app) = app_for(db, uas.addr, &[]).await else {
        return;
    };
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let (c, _) = campaign(&app, &ag, "+15557650003").await;
    let mut rx = app.events().subscribe();
    app.campaign_verb(&c, "start", json!({})).await;
    let mut ws = bot.accept().await;
    assert_eq!(recv(&mut ws).await["event"], "connected");
    let start = recv(&mut ws).await;
    let sid = start["streamSid"].as_str().unwrap().to_string();
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "herald.result:opted_out"}}),
    )
    .await;
    // Garbage and unknown events are ignored.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    send(
        &mut ws,
        json!({"event": "media", "media": {"payload": "@@@"}}),
    )
    .await;
    send(&mut ws, json!({"event": "something-new"})).await;
    let mut seen = Vec::new();
    let stop = loop {
        let m = recv(&mut ws).await;
        match m["event"].as_str() {
            Some("media") => {}
            Some("stop") => break m,
            _ => seen.push(m),
        }
    };
    assert_eq!(
        seen.iter().map(|m| m["event"].clone()).collect::<Vec<_>>(),
        vec![json!("mark")],
        "{seen:?}"
    );
    assert_eq!(seen[0]["mark"]["name"], "herald.result:opted_out");
    assert_eq!(stop["stop"]["callSid"], start["start"]["callSid"]);
    assert!(next(&mut ws).await.is_none(), "closed after stop");
    common::wait_status(&mut rx, &c, "finished", Duration::from_secs(20)).await;
    uas.finish().await.assert_success();
    let row = app
        .rows(&format!(
            "SELECT outcome, hangup_by, result FROM calls WHERE campaign_id = '{c}'"
        ))
        .await;
    assert_eq!(
        row,
        vec![vec![
            Some("answered".into()),
            Some("callee".into()),
            Some("opted_out".into())
        ]]
    );
    let r = app.get("/v1/dnc/%2B15557650003").await;
    expect_json(r, StatusCode::OK).await;
    app.stop().await;
}

on_both_backends!(
    a_result_mark_opts_out_and_the_callees_bye_sends_stop,
    a_result_mark_opts_out_and_the_callees_bye_sends_stop
);

#[tokio::test]
async fn a_person_answered_with_an_unreachable_bot_hears_the_abandon_prompt_and_the_attempt_is_abandoned(
) {
    let uas = SippUas::start("uas_cps.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ag = agent(&app, &format!("ws://127.0.0.1:{port}/stream")).await;
    let mut rx = app.events().subscribe();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557650004", "agent_id": ag, "abandon_prompt": "appointment-ask.wav"}),
            StatusCode::CREATED,
        )
        .await;
    let id = common::id_of(&call);
    wait_call_final(&mut rx, &id).await;
    uas.finish().await.assert_success();
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["outcome"], "abandoned", "{c}");
    // The prompt was played to its end before herald hung up (SIPp waits
    // for herald's BYE).
    let prompt_ms = herald::media::prompts::Prompts::shipped_only()
        .load("appointment-ask.wav")
        .unwrap()
        .len() as i64
        / 8;
    let lasted = app
        .scalar(&format!("SELECT duration_ms FROM calls WHERE id = '{id}'"))
        .await;
    assert!(
        lasted >= prompt_ms - 100 && lasted < prompt_ms + 1_500,
        "the call lasted {lasted} ms for a {prompt_ms} ms prompt"
    );
    let reason = app
        .rows(&format!("SELECT reason FROM calls WHERE id = '{id}'"))
        .await[0][0]
        .clone()
        .unwrap();
    assert!(
        reason.contains("stream-bot") && reason.contains("cannot connect"),
        "{reason}"
    );
    app.stop().await;
}

/// A bot that accepts the connection and never answers the handshake: with
/// an abandon prompt the person waits 2 s for it (the TCPA's and Ofcom's
/// limit, though `prepare_timeout_ms` is 5 s), then hears the prompt: its
/// audio reaches the callee's RTP port byte for byte.
#[tokio::test]
async fn a_bot_not_ready_within_2_s_leaves_the_person_the_abandon_prompt_on_the_wire() {
    let uas = SippUas::start("uas_cps.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/stream", listener.local_addr().unwrap());
    let mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let ag = agent(&app, &url).await;
    let capture = common::capture::Capture::start();
    let mut rx = app.events().subscribe();
    let call = app
        .post_ok(
            "/v1/calls",
            &json!({"to": "+15557650005", "agent_id": ag, "abandon_prompt": "appointment-ask.wav"}),
            StatusCode::CREATED,
        )
        .await;
    let id = common::id_of(&call);
    wait_call_final(&mut rx, &id).await;
    uas.finish().await.assert_success();
    let seen = capture.finish();
    mute.abort();
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["outcome"], "abandoned", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("not ready within 2000 ms"),
        "{c}"
    );
    let prompt = herald::media::prompts::Prompts::shipped_only()
        .load("appointment-ask.wav")
        .unwrap();
    let prompt_ms = prompt.len() as i64 / 8;
    let lasted = app
        .scalar(&format!("SELECT duration_ms FROM calls WHERE id = '{id}'"))
        .await;
    assert!(
        lasted >= 2_000 + prompt_ms - 100 && lasted < 2_000 + prompt_ms + 1_000,
        "the call lasted {lasted} ms: 2 s for the bot, then a {prompt_ms} ms prompt"
    );
    // 60 ms from well inside the prompt, sent from herald's RTP port.
    let media = common::test_config("sqlite::memory:", &[]).media;
    let herald = |port: &u16| (media.rtp_port_min..=media.rtp_port_max).contains(port);
    let flows = common::capture::flows_carrying(&seen, &prompt[8_000..8_480]);
    assert!(
        flows.iter().any(|(src, dst)| herald(src) && !herald(dst)),
        "the prompt's audio did not reach the callee: {flows:?}"
    );
    app.stop().await;
}

/// A one-off call to `to` with `agent` (or none); returns its id.
async fn one_off(app: &TestApp, to: &str, agent: Option<&str>) -> String {
    let mut body = json!({"to": to});
    if let Some(a) = agent {
        body["agent_id"] = json!(a);
    }
    let call = app.post_ok("/v1/calls", &body, StatusCode::CREATED).await;
    common::id_of(&call)
}

/// Reads `connected` and `start`; returns the stream sid.
async fn started(ws: &mut Ws) -> String {
    assert_eq!(recv(ws).await["event"], "connected");
    let start = recv(ws).await;
    assert_eq!(start["event"], "start");
    start["streamSid"].as_str().unwrap().to_string()
}

/// The name of the next `mark` echo (media frames are skipped).
async fn next_mark(ws: &mut Ws) -> Value {
    loop {
        let m = recv(ws).await;
        match m["event"].as_str() {
            Some("media") => {}
            Some("mark") => return m["mark"]["name"].clone(),
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
}

/// One sample of the Prometheus text (`name` with its labels, exactly).
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_bot_gets_a_media_frame_every_20_ms_when_the_callee_sends_no_rtp() {
    // No -rtp_echo: SIPp answers and sends no RTP at all.
    let uas = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let mut rx = app.events().subscribe();
    let id = one_off(&app, "+15557650005", Some(&ag)).await;
    let mut ws = bot.accept().await;
    assert_eq!(recv(&mut ws).await["event"], "connected");
    let mut seq = Sequence(0);
    seq.check(&recv(&mut ws).await);
    let mut first = None;
    for n in 1..=100u64 {
        let m = recv(&mut ws).await;
        seq.check(&m);
        assert_eq!(m["event"], "media", "{m}");
        assert_eq!(m["media"]["chunk"], n.to_string());
        assert_eq!(m["media"]["timestamp"], ((n - 1) * 20).to_string());
        assert_eq!(payload(&m), vec![0xFF; 160], "μ-law silence");
        first.get_or_insert_with(Instant::now);
    }
    // Paced in real time, not a burst: 99 steps of 20 ms (some slack for
    // a late first frame).
    let span = first.unwrap().elapsed();
    assert!(
        span >= Duration::from_millis(1500),
        "100 frames in {span:?}"
    );
    ws.close(None).await.expect("close");
    while next(&mut ws).await.is_some() {}
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    uas.finish().await.assert_success();
    app.stop().await;
}

#[tokio::test]
async fn a_result_mark_dropped_by_clear_is_echoed_but_sets_no_result() {
    let uas = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let mut rx = app.events().subscribe();
    let id = one_off(&app, "+15557650006", Some(&ag)).await;
    let mut ws = bot.accept().await;
    let sid = started(&mut ws).await;
    let mark = |name: &str| json!({"event": "mark", "streamSid": sid, "mark": {"name": name}});
    // Played (nothing queued before it): sets the result.
    send(&mut ws, mark("herald.result:confirmed")).await;
    assert_eq!(next_mark(&mut ws).await, "herald.result:confirmed");
    // Queued behind 10 s of audio, then cleared: echoed, sets nothing.
    send_audio(&mut ws, &sid, &[0x5A; 80_000]).await;
    send(&mut ws, mark("herald.result:retry")).await;
    send(&mut ws, json!({"event": "clear", "streamSid": sid})).await;
    assert_eq!(next_mark(&mut ws).await, "herald.result:retry");
    ws.close(None).await.expect("close");
    while next(&mut ws).await.is_some() {}
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    uas.finish().await.assert_success();
    let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
    assert_eq!(c["result"], "confirmed", "{c}");
    app.stop().await;
}

#[tokio::test]
async fn a_bot_cannot_queue_more_than_five_minutes_of_audio() {
    let uas = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let ag = agent(&app, &bot.url).await;
    let mut rx = app.events().subscribe();
    let id = one_off(&app, "+15557650007", Some(&ag)).await;
    let mut ws = bot.accept().await;
    let sid = started(&mut ws).await;
    // 6 minutes and 15 s in three messages (each under the 2 MiB message
    // limit): 75 s more than the queue holds.
    let piece = vec![0x5Au8; 1_000_000];
    for _ in 0..3 {
        send_audio(&mut ws, &sid, &piece).await;
    }
    // The clear's mark echo: every message before it has been handled.
    send(
        &mut ws,
        json!({"event": "mark", "streamSid": sid, "mark": {"name": "end"}}),
    )
    .await;
    send(&mut ws, json!({"event": "clear", "streamSid": sid})).await;
    loop {
        let m = recv(&mut ws).await;
        if m["event"] == "mark" {
            assert_eq!(m["mark"]["name"], "end");
            break;
        }
    }
    ws.close(None).await.expect("close");
    while next(&mut ws).await.is_some() {}
    assert_eq!(wait_call_final(&mut rx, &id).await, "completed");
    uas.finish().await.assert_success();
    // 600,000 bytes (75 s) over the limit, less what played while the
    // pieces arrived (the metric is counted when the call ends).
    let dropped = metric(&app, "herald_playout_dropped_bytes_total")
        .await
        .expect("the metric");
    assert!(
        dropped <= 600_000.0 && dropped > 600_000.0 - 8_000.0 * 5.0,
        "{dropped} bytes dropped"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_off_calls_hold_the_agents_sessions_and_wait_for_a_free_one() {
    let uas = SippUas::start("uas_answer_echo.xml", 3, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let mut bot = Bot::start().await;
    let a = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "one-at-a-time", "kind": "media_stream", "url": bot.url,
                    "max_concurrent_sessions": 1}),
            StatusCode::CREATED,
        )
        .await;
    let ag = common::id_of(&a);
    let mut rx = app.events().subscribe();
    let first = one_off(&app, "+15557650008", Some(&ag)).await;
    let mut ws1 = bot.accept().await;
    started(&mut ws1).await;
    // The call holds the agent's one session, the one campaigns count too.
    let in_use = format!("herald_agent_sessions_in_use{{agent=\"{ag}\"}}");
    assert_eq!(metric(&app, &in_use).await, Some(1.0));

    // A second call to the agent waits; a call without an agent, made after
    // it, is dialed (so the second was seen due and left waiting).
    let second = one_off(&app, "+15557650009", Some(&ag)).await;
    let probe = one_off(&app, "+15557650010", None).await;
    assert_eq!(wait_call_final(&mut rx, &probe).await, "completed");
    let c = expect_json(
        app.get(&format!("/v1/calls/{second}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(c["status"], "pending", "{c}");
    assert!(bot.conns.try_recv().is_err(), "the bot got a second call");

    // The first call ends: the second is dialed and reaches the bot.
    ws1.close(None).await.expect("close");
    while next(&mut ws1).await.is_some() {}
    assert_eq!(wait_call_final(&mut rx, &first).await, "completed");
    let mut ws2 = bot.accept().await;
    started(&mut ws2).await;
    ws2.close(None).await.expect("close");
    while next(&mut ws2).await.is_some() {}
    assert_eq!(wait_call_final(&mut rx, &second).await, "completed");
    uas.finish().await.assert_success();
    app.stop().await;
}

/// A bot's socket opens at the answer by default, as Twilio's does: a call
/// nobody answered never reaches it. `connect: "ringing"` opens it while the
/// phone rings instead (ready the moment the callee answers).
#[tokio::test]
async fn a_bot_sees_no_socket_for_a_call_nobody_answered_unless_it_connects_at_ringing() {
    let uas = SippUas::start("uas_ring_no_answer.xml", 2, &[]).await;
    let app = app_for(Db::Sqlite, uas.addr, &[])
        .await
        .expect("sqlite app");
    let (mut at_answer, mut at_ringing) = (Bot::start().await, Bot::start().await);
    let a = agent(&app, &at_answer.url).await;
    let r = app
        .post_ok(
            "/v1/agents",
            &json!({"name": "warm", "kind": "media_stream", "url": at_ringing.url, "connect": "ringing"}),
            StatusCode::CREATED,
        )
        .await;
    let mut rx = app.events().subscribe();
    let mut ids = Vec::new();
    for (to, ag) in [
        ("+15557650010", json!(a)),
        ("+15557650011", r["id"].clone()),
    ] {
        let call = app
            .post_ok(
                "/v1/calls",
                &json!({"to": to, "agent_id": ag, "ring_timeout": 5}),
                StatusCode::CREATED,
            )
            .await;
        ids.push(common::id_of(&call));
    }
    let mut finals = std::collections::HashMap::new();
    while finals.len() < 2 {
        let st = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("both calls end")
            .expect("events");
        if let herald::events::Event::CallFinished { call_id, status } = st {
            if ids.contains(&call_id) && status != "scheduled" && status != "pending" {
                finals.insert(call_id, status);
            }
        }
    }
    uas.finish().await.assert_success();
    for id in &ids {
        let c = expect_json(app.get(&format!("/v1/calls/{id}")).await, StatusCode::OK).await;
        assert_eq!(c["outcome"], "no_answer", "{c}");
    }
    // Both calls are over: a socket opened during them is in the channel.
    assert!(
        at_answer.conns.try_recv().is_err(),
        "a socket was opened for a call nobody answered"
    );
    let _warm = at_ringing.accept().await;
    app.stop().await;
}
