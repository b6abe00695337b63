//! 1,000 concurrent answered calls bridged to a Twilio Media Streams echo bot.
//!
//! herald's call control places the calls at SIPp callees that ring for
//! 500 ms, answer, and echo every RTP packet (`scenarios/uas_ring_answer_echo.xml`
//! with `-rtp_echo`, spread over several SIPps as in `sip_concurrent`); each answered call gets
//! a `media_stream` session (prepared on 180, run on 200, exactly as the
//! scheduler does) connected to a WebSocket bot that sends every `media`
//! frame straight back and, once a second, `clear` before a frame and a
//! `mark` after it (bot-audio-to-RTP latency from an empty queue). The bot runs in
//! a child process (this binary again), so the CPU measured in this process
//! is herald's: call control, RTP, and the sessions.
//!
//! The load generators (the SIPps and the bot) run at a lower scheduling
//! priority (`nice -n HERALD_PEER_NICE`, default 10): on a small machine they
//! would otherwise compete with herald for the same cores, and the
//! measurement is of herald as it runs when its peers are elsewhere. Their
//! CPU is still reported.
//!
//! Reported: herald's CPU per call (% of one core, and its user/system
//! split) and RSS per call over the measured window; datagrams the kernel
//! dropped on herald's and on the SIPps' sockets; frame gaps (RTP sequence
//! gaps seen by herald, send slots
//! herald skipped for running more than 200 ms late, `chunk` and `timestamp`
//! steps seen by the bot, frames dropped for a slow reader); silence frames
//! herald filled into the bot's stream (slots with no echoed RTP in time);
//! answer-to-`start` latency (the 200 OK's arrival to herald's writing of
//! `start`, from herald's `start sent` debug event, and to the bot's receipt
//! of it); and bot-audio-to-RTP latency (a `mark` sent right after a frame
//! comes back once that frame has gone out as RTP).
//!
//! Run: `cargo bench --bench agent_stream`. Environment: `HERALD_CALLS`
//! (default 1000), `HERALD_HOLD_SECS` (measured window, default 10),
//! `HERALD_SIPPS` (default 5), `HERALD_PEER_NICE` (default 10; 0 runs the
//! peers at herald's priority).

#[path = "../tests/sipp/mod.rs"]
mod sipp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use herald::agent::media_stream::MediaStreamAgent;
use herald::agent::{
    call_sid, stream_sid, Agent, AgentConfig, AgentKind, SessionContext, SessionControl,
};
use herald::domain::Outcome;
use herald::sip::{CallControl, CallEvent, DialDestination, OriginateRequest};
use serde_json::{json, Value};
use sipp::herald::{media_config, start, trunk};
use sipp::{SippUas, UasOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

const BOT_ROLE: &str = "HERALD_AGENT_STREAM_BOT";

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User and system CPU seconds of a process (all its threads).
fn cpu_user_sys(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) as f64 / 100.0, ticks(12) as f64 / 100.0)
}

fn cpu_seconds(pid: &str) -> f64 {
    let (user, sys) = cpu_user_sys(pid);
    user + sys
}

/// When herald's sessions wrote `start`, by attempt id (from the session's
/// `start sent` debug event).
#[derive(Clone, Default)]
struct StartsSent(Arc<std::sync::Mutex<HashMap<String, i64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StartsSent {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        #[derive(Default)]
        struct Fields {
            call: Option<String>,
            start_sent: bool,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "call" => self.call = Some(format!("{v:?}")),
                    "message" => self.start_sent = format!("{v:?}") == "start sent",
                    _ => {}
                }
            }
        }
        let at = unix_us(SystemTime::now());
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (true, Some(call)) = (fields.start_sent, fields.call) {
            self.0.lock().expect("starts").insert(call, at);
        }
    }
}

/// Datagrams dropped by the kernel for a full receive buffer, summed over
/// the UDP sockets that `pick` selects by (local port, inode).
fn udp_drops(pick: impl Fn(u16, u64) -> bool) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            pick(port, inode).then_some(drops)
        })
        .sum()
}

/// The inodes of this process's sockets.
fn own_socket_inodes() -> std::collections::HashSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let s = link.to_str()?;
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// ---------------------------------------------------------------- the bot

/// What the bot saw on one socket.
#[derive(Default)]
struct BotCall {
    call_sid: String,
    start_us: i64,
    frames: u64,
    chunk_gaps: u64,
    ts_gaps: u64,
    marks_ms: Vec<f64>,
    stopped: bool,
}

/// The fields of one of herald's `media` messages, read without a full parse.
struct MediaFrame<'a> {
    chunk: u64,
    timestamp: u64,
    payload: &'a str,
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

fn media_frame(text: &str) -> Option<MediaFrame<'_>> {
    if !text.starts_with(r#"{"event":"media""#) {
        return None;
    }
    Some(MediaFrame {
        chunk: field(text, r#""chunk":""#)?.parse().ok()?,
        timestamp: field(text, r#""timestamp":""#)?.parse().ok()?,
        payload: field(text, r#""payload":""#)?,
    })
}

async fn bot_socket(s: tokio::net::TcpStream) -> BotCall {
    let mut r = BotCall::default();
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return r;
    };
    let mut sid = String::new();
    let mut last_chunk = 0u64;
    let mut last_ts: Option<u64> = None;
    let mut pending: HashMap<String, Instant> = HashMap::new();
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        let text = t.as_str();
        // Media frames are most of the traffic: echo them without a full parse.
        if let Some(frame) = media_frame(text) {
            r.frames += 1;
            if frame.chunk != last_chunk + 1 {
                r.chunk_gaps += 1;
            }
            last_chunk = frame.chunk;
            if last_ts.is_some_and(|l| frame.timestamp != l + 20) {
                r.ts_gaps += 1;
            }
            last_ts = Some(frame.timestamp);
            if r.frames % 50 == 0 {
                // Every frame herald sends comes back (SIPp, then this echo),
                // so each stall adds frames that circulate for ever: drop
                // what is queued, so the mark measures the playout of this frame.
                let clear = format!(r#"{{"event":"clear","streamSid":"{sid}"}}"#);
                if ws.send(Message::Text(clear.into())).await.is_err() {
                    break;
                }
            }
            let echo_sent = Instant::now();
            let echo = format!(
                r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{}"}}}}"#,
                frame.payload
            );
            if ws.send(Message::Text(echo.into())).await.is_err() {
                break;
            }
            if r.frames % 50 == 0 {
                let name = format!("m{}", r.frames);
                pending.insert(name.clone(), echo_sent);
                let mark = json!({"event": "mark", "streamSid": sid, "mark": {"name": name}});
                if ws
                    .send(Message::Text(mark.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match v["event"].as_str() {
            Some("start") => {
                r.start_us = unix_us(SystemTime::now());
                r.call_sid = v["start"]["callSid"].as_str().unwrap_or_default().into();
                sid = v["streamSid"].as_str().unwrap_or_default().into();
            }
            Some("mark") => {
                if let Some(t0) = v["mark"]["name"].as_str().and_then(|n| pending.remove(n)) {
                    r.marks_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Some("stop") => {
                r.stopped = true;
                let _ = ws.close(None).await;
            }
            _ => {}
        }
    }
    r
}

/// The bot process: listens, prints its URL, serves `HERALD_CALLS` sockets,
/// then prints one JSON line with what it saw.
async fn bot_main() {
    let n: usize = env_num("HERALD_CALLS", 1000);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bot bind");
    println!("ws://{}/stream", listener.local_addr().expect("addr"));
    let mut socks = JoinSet::new();
    for _ in 0..n {
        let Ok((s, _)) = listener.accept().await else {
            break;
        };
        let _ = s.set_nodelay(true);
        socks.spawn(bot_socket(s));
    }
    let mut calls = Vec::new();
    while let Some(r) = socks.join_next().await {
        if let Ok(r) = r {
            calls.push(r);
        }
    }
    let mut marks: Vec<f64> = calls.iter().flat_map(|c| c.marks_ms.clone()).collect();
    marks.sort_by(f64::total_cmp);
    let out = json!({
        "sockets": calls.len(),
        "frames": calls.iter().map(|c| c.frames).sum::<u64>(),
        "chunk_gaps": calls.iter().map(|c| c.chunk_gaps).sum::<u64>(),
        "ts_gaps": calls.iter().map(|c| c.ts_gaps).sum::<u64>(),
        "stopped": calls.iter().filter(|c| c.stopped).count(),
        "marks": marks.len(),
        "mark_ms": [percentile(&marks, 0.5), percentile(&marks, 0.99), marks.last().copied().unwrap_or(f64::NAN)],
        "starts": calls.iter().map(|c| (c.call_sid.clone(), json!(c.start_us))).collect::<serde_json::Map<_, _>>(),
        "cpu_s": cpu_seconds("self"),
    });
    println!("{out}");
}

// ---------------------------------------------------------------- herald's side

#[derive(Default)]
struct CallResult {
    answered: bool,
    attempt: String,
    call_sid: String,
    answered_us: i64,
    sent: u64,
    received: u64,
    gaps: u64,
    skipped: u64,
    filled: u64,
    dropped: u64,
}

async fn call(
    cc: CallControl,
    agent: Arc<dyn Agent>,
    i: usize,
    uri: String,
    hold: Duration,
) -> CallResult {
    let attempt = uuid::Uuid::now_v7().to_string();
    let ctx = SessionContext {
        attempt_id: attempt.clone(),
        call_sid: call_sid(&attempt),
        stream_sid: stream_sid(),
        account_sid: format!("AC{}", "0".repeat(32)),
        campaign_id: None,
        target_id: Some(format!("bench-{i}")),
        to: uri.clone(),
        from: None,
        variables: serde_json::Map::new(),
    };
    let req = OriginateRequest {
        attempt_id: attempt,
        destination: DialDestination::Sip { uri },
        caller_id: None,
        ring_timeout: Duration::from_secs(20),
        max_duration: hold,
        headers: Vec::new(),
    };
    let mut r = CallResult {
        attempt: ctx.attempt_id.clone(),
        call_sid: ctx.call_sid.clone(),
        ..CallResult::default()
    };
    let Ok(mut c) = cc.originate(req).await else {
        return r;
    };
    let ctl = Arc::new(SessionControl::default());
    let prepare = |agent: &Arc<dyn Agent>| {
        let (agent, ctx) = (agent.clone(), ctx.clone());
        tokio::spawn(async move { agent.prepare(&ctx).await })
    };
    let mut prepared = None;
    let mut session = None;
    while let Some(ev) = c.next_event().await {
        match ev {
            CallEvent::Ringing { .. } if prepared.is_none() => prepared = Some(prepare(&agent)),
            CallEvent::Answered { at, media } => {
                r.answered_us = at.timestamp_micros();
                let ready = prepared.take().unwrap_or_else(|| prepare(&agent));
                match ready.await {
                    Ok(Ok(s)) => session = Some(tokio::spawn(s.run(media, ctl.clone()))),
                    _ => c.hangup(),
                }
            }
            CallEvent::Ended(e) => {
                r.answered = e.outcome == Outcome::Answered;
                if let Some(s) = e.media_stats {
                    r.sent = s.packets_sent;
                    r.received = s.packets_received;
                    r.gaps = s.sequence_gaps;
                    r.skipped = s.skipped_slots;
                    r.filled = s.silence_frames_filled;
                    r.dropped = s.audio_frames_dropped;
                }
            }
            _ => {}
        }
    }
    if let Some(s) = session {
        let _ = tokio::time::timeout(herald::agent::SESSION_END_GRACE, s).await;
    }
    r
}

#[tokio::main]
async fn main() {
    if std::env::var_os(BOT_ROLE).is_some() {
        return bot_main().await;
    }
    let starts_sent = StartsSent::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let only_start = tracing_subscriber::filter::Targets::new()
            .with_target("herald::agent::media_stream", tracing::Level::DEBUG);
        let subscriber =
            tracing_subscriber::registry().with(starts_sent.clone().with_filter(only_start));
        tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    }
    let n: usize = env_num("HERALD_CALLS", 1000);
    let hold_secs: u64 = env_num("HERALD_HOLD_SECS", 10);
    let sipps: usize = env_num("HERALD_SIPPS", 5usize).max(1);
    let nice: i32 = env_num("HERALD_PEER_NICE", 10);

    // `nice` execs the bot in place: the child's pid is the bot's.
    let mut bot = tokio::process::Command::new("nice")
        .arg("-n")
        .arg(nice.to_string())
        .arg(std::env::current_exe().expect("exe"))
        .env(BOT_ROLE, "1")
        .env("HERALD_CALLS", n.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bot process");
    let bot_pid = bot.id().expect("bot pid").to_string();
    let mut bot_out = BufReader::new(bot.stdout.take().expect("bot stdout")).lines();
    let url = bot_out
        .next_line()
        .await
        .expect("bot output")
        .expect("bot url");

    let mut uases = Vec::new();
    for k in 0..sipps {
        let calls = (n / sipps + usize::from(k < n % sipps)) as u32;
        uases.push(
            SippUas::start_niced(
                UasOptions {
                    scenario: "uas_ring_answer_echo.xml",
                    calls: Some(calls),
                    // Calls last longer than the runner's default 15 s receive timeout.
                    extra: &[
                        "-rtp_echo",
                        "-max_recv_loops",
                        "10000",
                        "-recv_timeout",
                        "90s",
                    ],
                    timeout_s: 120,
                    trace: false,
                },
                nice,
            )
            .await,
        );
    }
    let uris: Vec<String> = uases.iter().map(|u| u.uri()).collect();
    let mut media = media_config(30);
    media.rtp_port_min = 20000;
    media.rtp_port_max = 60000;
    let (cc, cancel) = start(trunk("sip:127.0.0.1:9", "", "", 1), media).await;
    let config = AgentConfig {
        id: "bench".into(),
        name: "echo-bot".into(),
        // As measured before sockets opened at the answer by default.
        kind: AgentKind::MediaStream {
            url: url.clone(),
            at_ringing: true,
        },
        parameters: serde_json::Map::new(),
        max_concurrent_sessions: n as u32,
    };
    let agent: Arc<dyn Agent> = Arc::new(MediaStreamAgent::new(url, config));
    let rss0 = rss_kb();
    // Ramp up at 200 calls/s; every call lasts the ramp + the window + 2 s.
    let rate = 200.0;
    let ramp = Duration::from_secs_f64(n as f64 / rate);
    let hold = ramp + Duration::from_secs(hold_secs + 2);
    let mut calls = JoinSet::new();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut launched = 0;
    while launched < n {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * rate).ceil() as usize).min(n);
        while launched < due {
            let uri = uris[launched % uris.len()].clone();
            calls.spawn(call(cc.clone(), agent.clone(), launched, uri, hold));
            launched += 1;
        }
    }
    // The measured window, once every call is up (a measurement, not a wait).
    tokio::time::sleep_until((t0 + ramp + Duration::from_secs(1)).into()).await;
    let live = cc.live_calls();
    let sipp_pids: Vec<String> = uases.iter().filter_map(|u| u.sipp_pid()).collect();
    let sipp_cpu = || sipp_pids.iter().map(|p| cpu_seconds(p)).sum::<f64>();
    let (user0, sys0) = cpu_user_sys("self");
    let (bot_cpu0, sipp_cpu0) = (cpu_seconds(&bot_pid), sipp_cpu());
    let load0 = load_average();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let (user1, sys1) = cpu_user_sys("self");
    let (user, sys) = (user1 - user0, sys1 - sys0);
    let cpu = user + sys;
    let bot_cpu = cpu_seconds(&bot_pid) - bot_cpu0;
    let sipps_cpu = sipp_cpu() - sipp_cpu0;
    let inodes = own_socket_inodes();
    let herald_drops = udp_drops(|_, inode| inodes.contains(&inode));
    let sipp_ports: Vec<u16> = uases.iter().map(|u| u.media_port).collect();
    let sipp_drops = udp_drops(|port, _| sipp_ports.contains(&port));
    let window = w0.elapsed().as_secs_f64();
    let rss1 = rss_kb();

    let mut results = Vec::new();
    while let Some(r) = calls.join_next().await {
        if let Ok(r) = r {
            results.push(r);
        }
    }
    cancel.cancel();
    let report: Value = match bot_out.next_line().await {
        Ok(Some(line)) => serde_json::from_str(&line).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let _ = bot.wait().await;
    let mut sipp_exits = Vec::new();
    for u in uases {
        sipp_exits.push(u.finish().await.code);
    }

    let answered = results.iter().filter(|r| r.answered).count();
    let starts = report["starts"].as_object().cloned().unwrap_or_default();
    let mut start_ms: Vec<f64> = results
        .iter()
        .filter_map(|r| {
            let s = starts.get(&r.call_sid)?.as_i64()?;
            Some((s - r.answered_us) as f64 / 1000.0)
        })
        .collect();
    start_ms.sort_by(f64::total_cmp);
    let sent = starts_sent.0.lock().expect("starts").clone();
    let mut sent_ms: Vec<f64> = results
        .iter()
        .filter_map(|r| Some((sent.get(&r.attempt)? - r.answered_us) as f64 / 1000.0))
        .collect();
    sent_ms.sort_by(f64::total_cmp);
    let sum = |f: fn(&CallResult) -> u64| results.iter().map(f).sum::<u64>();
    let per = |x: f64| x / live.max(1) as f64;
    println!("load average at the window's start: {load0}");
    println!(
        "UDP receive-buffer drops until the window's end: herald's sockets {herald_drops}, the SIPps' echo sockets {sipp_drops}"
    );
    println!("| calls | live in window | answered | herald CPU (% of one core) | user / sys | per call | RSS per call | bot CPU | SIPps CPU | RTP sent | RTP received | RTP gaps | skipped send slots | silence filled | frames dropped | bot frames | chunk gaps | timestamp gaps | stops | answer→start sent p50 / p99 / max | answer→start at the bot p50 / p99 / max | bot audio→RTP (mark) p50 / p99 / max | SIPp exits |");
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"
    );
    let m = &report["mark_ms"];
    println!(
        "| {n} | {live} | {answered} | {:.1}% | {:.1}% / {:.1}% | {:.4}% | {:.1} KB | {:.1}% | {:.1}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} / {:.1} ms ({} marks) | {:?} |",
        100.0 * cpu / window,
        100.0 * user / window,
        100.0 * sys / window,
        per(100.0 * cpu / window),
        per(rss1.saturating_sub(rss0) as f64),
        100.0 * bot_cpu / window,
        100.0 * sipps_cpu / window,
        sum(|r| r.sent),
        sum(|r| r.received),
        sum(|r| r.gaps),
        sum(|r| r.skipped),
        sum(|r| r.filled),
        sum(|r| r.dropped),
        report["frames"],
        report["chunk_gaps"],
        report["ts_gaps"],
        report["stopped"],
        percentile(&sent_ms, 0.5),
        percentile(&sent_ms, 0.99),
        sent_ms.last().copied().unwrap_or(f64::NAN),
        percentile(&start_ms, 0.5),
        percentile(&start_ms, 0.99),
        start_ms.last().copied().unwrap_or(f64::NAN),
        m[0].as_f64().unwrap_or(f64::NAN),
        m[1].as_f64().unwrap_or(f64::NAN),
        m[2].as_f64().unwrap_or(f64::NAN),
        report["marks"],
        sipp_exits,
    );
}
