//! RTP sessions talking to each other (and to plain sockets) over real UDP on
//! 127.0.0.1. Time is paused where pacing or timeouts are measured: tokio
//! advances the clock only when every task is idle, and loopback datagrams
//! are readable as soon as they are sent, so the virtual clock is exact.

use bytes::Bytes;
use herald::media::g711;
use herald::media::{Codec, MediaEvent, PortPool, RtpConfig, RtpHandle, RtpSession};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Failure guard only; tests finish long before.
const GUARD: Duration = Duration::from_secs(20);

fn pool() -> Arc<PortPool> {
    // A random base so concurrent tests mostly use different ports, and a
    // wide range: ports taken by anyone else are skipped by the pool.
    let base = 20_000 + 2 * (rand::random::<u16>() % 10_000);
    PortPool::new(base, base + 10_000)
}

fn cfg(codec: Codec) -> RtpConfig {
    RtpConfig {
        codec,
        dtmf_payload_type: Some(101),
        inactivity_timeout: Duration::from_secs(30),
        jitter_ms: 40,
        srtp: None,
    }
}

async fn bind(pool: &Arc<PortPool>) -> RtpSession {
    RtpSession::bind(pool, LOCALHOST).await.expect("bind rtp")
}

async fn pair(a: RtpConfig, b: RtpConfig) -> (RtpHandle, RtpHandle) {
    let pool = pool();
    let sa = bind(&pool).await;
    let sb = bind(&pool).await;
    let (la, lb) = (sa.local_addr(), sb.local_addr());
    (sa.start(lb, a), sb.start(la, b))
}

/// A recognisable pattern of `len` μ-law bytes that never contains silence
/// (0xFF) and survives `keep` (e.g. a μ-law → A-law → μ-law round trip).
fn pattern(len: usize, keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let alphabet: Vec<u8> = (0..=254u8).filter(|&b| keep(b)).collect();
    (0..len)
        .map(|i| alphabet[(i * 7 + i / 160) % alphabet.len()])
        .collect()
}

/// Collects received audio until `want` non-silence bytes have arrived;
/// asserts every frame is in sequence with timestamps 160 apart.
async fn receive_audio(h: &mut RtpHandle, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut last: Option<(u16, u32)> = None;
    let mut started = false;
    while got.len() < want {
        let ev = timeout(GUARD, h.next_event())
            .await
            .expect("audio arrives")
            .expect("session open");
        if let MediaEvent::Audio {
            ulaw,
            seq,
            timestamp,
        } = ev
        {
            if let Some((s, t)) = last {
                assert_eq!(seq, s.wrapping_add(1), "no sequence gap");
                assert_eq!(timestamp, t.wrapping_add(160), "timestamps advance by 160");
            }
            last = Some((seq, timestamp));
            assert_eq!(ulaw.len(), 160, "20 ms frames");
            if !started {
                match ulaw.iter().position(|&b| b != 0xFF) {
                    Some(i) => {
                        started = true;
                        got.extend_from_slice(&ulaw[i..]);
                    }
                    None => continue,
                }
            } else {
                got.extend_from_slice(&ulaw);
            }
        }
    }
    got
}

#[tokio::test(start_paused = true)]
async fn audio_played_on_one_session_arrives_byte_exact_in_order_at_the_other() {
    let (a, mut b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let audio = pattern(8000, |_| true);
    // Uneven chunks, as an agent would send them.
    for chunk in audio.chunks(333) {
        a.play(Bytes::copy_from_slice(chunk));
    }
    let got = receive_audio(&mut b, audio.len()).await;
    assert_eq!(&got[..audio.len()], &audio[..]);
    let sa = a.stop().await;
    let sb = b.stop().await;
    assert!(sa.packets_sent >= 50, "{sa:?}");
    assert_eq!(sb.lost, 0, "{sb:?}");
    assert_eq!(sb.sequence_gaps, 0);
    assert_eq!(sb.invalid_packets, 0);
    assert!(sb.packets_received >= 50);
    assert_eq!(sb.bytes_received, sb.packets_received * 160);
}

#[tokio::test(start_paused = true)]
async fn pcma_calls_are_transcoded_so_users_still_speak_ulaw() {
    let (a, mut b) = pair(cfg(Codec::Pcma), cfg(Codec::Pcmu)).await;
    let audio = pattern(3200, |u| g711::alaw_to_ulaw(g711::ulaw_to_alaw(u)) == u);
    a.play(Bytes::from(audio.clone()));
    let got = receive_audio(&mut b, audio.len()).await;
    assert_eq!(&got[..audio.len()], &audio[..]);
    drop(a);
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn packets_go_out_every_20_ms_with_silence_when_nothing_is_queued() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind peer");
    let a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut last: Option<(u16, u32)> = None;
    while start.elapsed() < Duration::from_secs(2) {
        let (n, _) = timeout(GUARD, peer.recv_from(&mut buf))
            .await
            .expect("a packet")
            .expect("recv");
        let pkt = rtp_rs::RtpReader::new(&buf[..n]).expect("valid rtp");
        assert_eq!(pkt.payload_type(), 0);
        assert!(pkt.payload().iter().all(|&x| x == 0xFF), "μ-law silence");
        let (seq, ts) = (u16::from(pkt.sequence_number()), pkt.timestamp());
        if let Some((s, t)) = last {
            assert_eq!(seq, s.wrapping_add(1));
            assert_eq!(ts, t.wrapping_add(160));
        } else {
            assert!(pkt.mark(), "first packet carries the marker");
        }
        last = Some((seq, ts));
        arrivals.push(start.elapsed());
    }
    // 2 s of stream at 50 packets/s, on the 20 ms grid without drift.
    let in_window = arrivals
        .iter()
        .filter(|t| **t < Duration::from_secs(2))
        .count();
    assert!(
        (100..=101).contains(&in_window),
        "{in_window} packets in 2 s"
    );
    for (i, t) in arrivals.iter().enumerate().take(100) {
        let due = Duration::from_millis(20 * i as u64);
        assert!(
            t.abs_diff(due) < Duration::from_millis(5),
            "packet {i} at {t:?}"
        );
    }
    let stats = a.stop().await;
    assert!(stats.silence_frames_sent >= 100);
    assert_eq!(stats.skipped_slots, 0);
}

#[tokio::test(start_paused = true)]
async fn pcma_silence_is_alaw_silence() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind peer");
    let a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcma));
    let mut buf = [0u8; 1500];
    let (n, _) = timeout(GUARD, peer.recv_from(&mut buf))
        .await
        .expect("a packet")
        .expect("recv");
    let pkt = rtp_rs::RtpReader::new(&buf[..n]).expect("valid rtp");
    assert_eq!(pkt.payload_type(), 8);
    assert_eq!(pkt.payload(), &[0xD5u8; 160][..]);
    drop(a);
}

async fn next_non_audio(h: &mut RtpHandle) -> MediaEvent {
    loop {
        let ev = timeout(GUARD, h.next_event())
            .await
            .expect("an event")
            .expect("session open");
        if !matches!(ev, MediaEvent::Audio { .. }) {
            return ev;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_dtmf_key_sent_once_is_detected_once() {
    let (a, mut b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    a.send_dtmf('5');
    a.send_dtmf('#');
    assert_eq!(next_non_audio(&mut b).await, MediaEvent::Dtmf('5'));
    assert_eq!(next_non_audio(&mut b).await, MediaEvent::Dtmf('#'));
    // Let every update and end packet arrive, then look for repeats.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sa = a.stop().await;
    assert_eq!(sa.dtmf_packets_sent, 2 * 8, "5 updates + 3 ends per key");
    let sb = b.stop().await;
    assert_eq!(sb.dtmf_received, 2, "{sb:?}");
}

#[tokio::test(start_paused = true)]
async fn dtmf_is_not_sent_without_a_negotiated_payload_type() {
    let no_dtmf = RtpConfig {
        dtmf_payload_type: None,
        ..cfg(Codec::Pcmu)
    };
    let (a, _b) = pair(no_dtmf, cfg(Codec::Pcmu)).await;
    a.send_dtmf('1');
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = a.stop().await;
    assert_eq!(s.dtmf_packets_sent, 0);
    assert!(s.packets_sent >= 10);
}

#[tokio::test(start_paused = true)]
async fn marks_are_reported_after_their_audio_and_clear_reports_pending_marks() {
    let (mut a, _b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let t0 = Instant::now();
    a.play(Bytes::from(vec![0x10u8; 480]));
    a.mark("three-frames".into());
    assert_eq!(
        next_non_audio(&mut a).await,
        MediaEvent::MarkPlayed("three-frames".into())
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(40) && waited < Duration::from_millis(100),
        "mark after the third frame, at {waited:?}"
    );
    a.play(Bytes::from(vec![0x10u8; 160 * 500]));
    a.mark("ten-seconds-later".into());
    a.clear();
    let t1 = Instant::now();
    assert_eq!(
        next_non_audio(&mut a).await,
        MediaEvent::MarkCleared("ten-seconds-later".into())
    );
    assert!(t1.elapsed() < Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn audio_beyond_five_minutes_queued_is_dropped_and_counted() {
    let (mut a, _b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let max = herald::media::playout::MAX_QUEUED_BYTES;
    a.play(Bytes::from(vec![0x10u8; max - 1000]));
    a.play(Bytes::from(vec![0x11u8; 3000]));
    a.play(Bytes::from(vec![0x12u8; 500]));
    a.mark("after".into());
    a.clear();
    assert_eq!(
        next_non_audio(&mut a).await,
        MediaEvent::MarkCleared("after".into())
    );
    // All three were taken at one tick, before the first frame went out.
    let s = a.stop().await;
    assert_eq!(s.playout_bytes_dropped, 2000 + 500, "{s:?}");
}

/// The next audio frame's payload and when it came.
async fn next_frame(h: &mut RtpHandle) -> (Bytes, Instant) {
    let (_, ulaw) = next_audio(h).await;
    (ulaw, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_continuous_feed_gives_silence_every_20_ms_when_nothing_is_received() {
    let pool = pool();
    // A peer that never sends.
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let t0 = Instant::now();
    a.continuous_audio();
    let mut at = Vec::new();
    for _ in 0..50 {
        let (ulaw, t) = next_frame(&mut a).await;
        assert_eq!(&ulaw[..], &[0xFF; 160][..]);
        at.push(t - t0);
    }
    // Silence once the slack has passed, then one frame per 20 ms.
    assert!(at[0] <= Duration::from_millis(100), "{:?}", at[0]);
    for w in at.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_millis(20), "{at:?}");
    }
    let s = a.stop().await;
    assert_eq!(s.silence_frames_filled, 50, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_continuous_feed_fills_silent_spells_and_gaps_without_repeating_or_reordering_audio() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let to = a.local_addr();
    a.continuous_audio();
    // 10 frames, 500 ms of silence suppression, 10 frames with seq 25 lost,
    // then nothing. Payloads are their sequence numbers.
    let sends: Vec<(u64, u16)> = (0..10u16)
        .map(|i| (u64::from(i) * 20, 10 + i))
        .chain(
            (0..10u16)
                .filter(|&i| i != 5)
                .map(|i| (700 + u64::from(i) * 20, 20 + i)),
        )
        .collect();
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        for (ms, seq) in sends {
            tokio::time::sleep_until(t0 + Duration::from_millis(ms)).await;
            let ts = u32::from(seq) * 160 + if seq >= 20 { 8000 } else { 0 };
            let pkt = rtp(0, seq, ts, 9, &[seq as u8; 160]);
            peer.send_to(&pkt, to).await.expect("send");
        }
        peer
    });
    let mut got = Vec::new();
    while got.len() < 100 {
        let (ulaw, t) = next_frame(&mut a).await;
        assert_eq!(ulaw.len(), 160);
        assert!(ulaw.iter().all(|&b| b == ulaw[0]), "one value per frame");
        got.push((ulaw[0], t - t0));
    }
    let _peer = sender.await.expect("sender");
    let audio: Vec<u8> = got.iter().map(|g| g.0).filter(|&b| b != 0xFF).collect();
    let expect: Vec<u8> = (10..20).chain((20..30).filter(|&s| s != 25)).collect();
    assert_eq!(audio, expect, "every frame once, in order");
    let pos = |v: u8| got.iter().position(|g| g.0 == v).expect("frame");
    // The first spurt is contiguous; the spell between the spurts is filled
    // (about 500 ms of silence, give or take the slack).
    assert_eq!(pos(19) - pos(10), 9);
    let spell = pos(20) - pos(19) - 1;
    assert!(
        (20..=28).contains(&spell),
        "{spell} frames of silence: {got:?}"
    );
    // The lost frame is filled in place.
    assert_eq!(pos(26) - pos(24), 2);
    assert_eq!(got[pos(24) + 1].0, 0xFF);
    // After the last frame, silence every 20 ms.
    let tail = &got[pos(29) + 1..];
    assert!(tail.len() > 20 && tail.iter().all(|g| g.0 == 0xFF));
    for w in tail[1..].windows(2) {
        assert_eq!(w[1].1 - w[0].1, Duration::from_millis(20), "{got:?}");
    }
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn sending_follows_the_real_source_of_received_rtp() {
    let pool = pool();
    // A is told about a decoy address; B really sends from its own socket.
    let decoy = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind decoy");
    let sa = bind(&pool).await;
    let sb = bind(&pool).await;
    let (la, lb) = (sa.local_addr(), sb.local_addr());
    let decoy_addr = decoy.local_addr().expect("addr");
    assert_ne!(decoy_addr, lb);
    let mut a = sa.start(decoy_addr, cfg(Codec::Pcmu));
    let mut b = sb.start(la, cfg(Codec::Pcmu));
    // A starts out sending to the decoy.
    let mut buf = [0u8; 1500];
    let (_, from) = timeout(GUARD, decoy.recv_from(&mut buf))
        .await
        .expect("decoy gets the first packets")
        .expect("recv");
    assert_eq!(from, la);
    // Once A has heard B, its audio goes to B's real source.
    let first = timeout(GUARD, a.next_event())
        .await
        .expect("event")
        .expect("open");
    assert!(matches!(first, MediaEvent::Audio { .. }), "{first:?}");
    let audio = pattern(1600, |_| true);
    a.play(Bytes::from(audio.clone()));
    let got = receive_audio(&mut b, audio.len()).await;
    assert_eq!(&got[..audio.len()], &audio[..]);
    let s = a.stats();
    assert_eq!(s.remote, Some(lb));
    assert!(s.latched);
    drop(a);
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn inactivity_is_reported_once_after_the_timeout() {
    let pool = pool();
    let silent_peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool).await.start(
        silent_peer.local_addr().expect("addr"),
        RtpConfig {
            inactivity_timeout: Duration::from_secs(5),
            ..cfg(Codec::Pcmu)
        },
    );
    let t0 = Instant::now();
    assert_eq!(next_non_audio(&mut a).await, MediaEvent::Inactive);
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_secs(5) && at <= Duration::from_millis(5040),
        "inactive at {at:?}"
    );
    // Not repeated while the silence goes on.
    let again = timeout(Duration::from_secs(20), a.next_event()).await;
    assert!(again.is_err(), "{again:?}");
}

#[tokio::test(start_paused = true)]
async fn a_flowing_stream_is_never_inactive() {
    let short = RtpConfig {
        inactivity_timeout: Duration::from_secs(1),
        ..cfg(Codec::Pcmu)
    };
    let (mut a, b) = pair(short.clone(), short).await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let ev = timeout(GUARD, a.next_event())
            .await
            .expect("event")
            .expect("open");
        assert!(matches!(ev, MediaEvent::Audio { .. }), "{ev:?}");
    }
    let stopped = Instant::now();
    b.stop().await;
    assert_eq!(next_non_audio(&mut a).await, MediaEvent::Inactive);
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(960) && after <= Duration::from_millis(1100),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn garbage_datagrams_are_counted_and_do_not_break_the_session() {
    let (mut a, b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let attacker = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let target = a.local_addr();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80; 11],
        vec![0x00; 12], // version 0
        vec![0xC0; 12], // version 3
        {
            let mut v = vec![0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]; // 15 CSRCs, none present
            v.extend_from_slice(&[0; 8]);
            v
        },
        {
            let mut v = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]; // extension, length 0xFFFF
            v.extend_from_slice(&[0xBE, 0xDE, 0xFF, 0xFF]);
            v
        },
        vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 7, 0], // padding count 0
        vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 200],  // padding beyond the packet
    ];
    garbage.push(
        (0..1400u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 0x40)
            .collect(),
    );
    let invalid = garbage.len() as u64;
    for g in &garbage {
        attacker.send_to(g, target).await.expect("send");
    }
    // Valid RTP with a payload type nobody negotiated.
    let foreign = rtp_rs::RtpPacketBuilder::new()
        .payload_type(96)
        .ssrc(7)
        .payload(&[1, 2, 3])
        .build()
        .expect("build");
    attacker.send_to(&foreign, target).await.expect("send");
    // A short DTMF payload is RTP but not a valid event: no digit, no panic.
    let short_dtmf = rtp_rs::RtpPacketBuilder::new()
        .payload_type(101)
        .ssrc(7)
        .payload(&[1])
        .build()
        .expect("build");
    attacker.send_to(&short_dtmf, target).await.expect("send");

    b.play(Bytes::from(vec![0x42u8; 800]));
    let got = receive_audio(&mut a, 800).await;
    assert!(got[..800].iter().all(|&x| x == 0x42));
    let s = a.stats();
    assert_eq!(s.invalid_packets, invalid, "{s:?}");
    assert_eq!(s.dtmf_received, 0);
    assert!(s.foreign_packets >= 1, "{s:?}");
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_loses_audio_frames_but_never_dtmf() {
    let (a, mut b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    // B's user reads nothing for 5 s while A streams and presses a key late.
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.send_dtmf('9');
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = b.stats();
    assert!(s.audio_frames_dropped > 100, "{s:?}");
    assert_eq!(s.dtmf_received, 1);
    assert_eq!(next_non_audio(&mut b).await, MediaEvent::Dtmf('9'));
    drop(a);
}

#[tokio::test]
async fn stopping_a_session_frees_its_port() {
    let base = 20_000 + 2 * (rand::random::<u16>() % 10_000);
    let pool = PortPool::new(base, base + 2);
    let s = match RtpSession::bind(&pool, LOCALHOST).await {
        Ok(s) => s,
        Err(_) => return, // someone else holds that one port right now
    };
    let port = s.local_addr().port();
    assert!(
        RtpSession::bind(&pool, LOCALHOST).await.is_err(),
        "pool of one is taken"
    );
    let h = s.start(SocketAddr::new(LOCALHOST, 9), cfg(Codec::Pcmu));
    h.stop().await;
    let again = RtpSession::bind(&pool, LOCALHOST)
        .await
        .expect("port is back");
    assert_eq!(again.local_addr().port(), port);
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(pt)
        .sequence(rtp_rs::Seq::from(seq))
        .timestamp(ts)
        .ssrc(ssrc)
        .payload(payload)
        .build()
        .expect("build rtp")
}

async fn next_audio(h: &mut RtpHandle) -> (u16, Bytes) {
    loop {
        let ev = timeout(GUARD, h.next_event())
            .await
            .expect("an event")
            .expect("session open");
        if let MediaEvent::Audio { ulaw, seq, .. } = ev {
            return (seq, ulaw);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn reordered_packets_are_played_in_order_and_losses_counted() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool).await.start(
        peer.local_addr().expect("addr"),
        RtpConfig {
            jitter_ms: 60,
            ..cfg(Codec::Pcmu)
        },
    );
    let to = a.local_addr();
    // 100, 102, 101, 104 (103 never comes), 105, with a duplicate of 102.
    for seq in [100u16, 102, 101, 102, 104, 105] {
        let body = [seq as u8; 160];
        let pkt = rtp(0, seq, u32::from(seq) * 160, 0xABCD, &body);
        peer.send_to(&pkt, to).await.expect("send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let (seq, ulaw) = next_audio(&mut a).await;
        assert!(ulaw.iter().all(|&b| b == seq as u8));
        got.push(seq);
    }
    assert_eq!(got, [100, 101, 102, 104, 105]);
    let s = a.stop().await;
    assert_eq!((s.lost, s.sequence_gaps, s.duplicates), (1, 1, 1), "{s:?}");
    assert_eq!(s.packets_received, 6);
}

#[tokio::test(start_paused = true)]
async fn a_stranger_cannot_take_over_a_latched_stream() {
    let (mut a, b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let b_addr = b.local_addr();
    // A hears B first and latches to it.
    next_audio(&mut a).await;
    let stranger = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    for i in 0..10u16 {
        let pkt = rtp(0, i, u32::from(i) * 160, 0x5757, &[0x11; 160]);
        stranger.send_to(&pkt, a.local_addr()).await.expect("send");
    }
    // Keep reading A's audio for a while: none of it is the stranger's.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        let (_, ulaw) = next_audio(&mut a).await;
        assert!(
            ulaw.iter().all(|&x| x == 0xFF),
            "only B's silence is played"
        );
    }
    let s = a.stats();
    assert_eq!(s.foreign_packets, 10, "{s:?}");
    assert_eq!(s.remote, Some(b_addr));
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn a_new_stream_from_the_same_source_is_followed() {
    // A peer that switches SSRC and sequence space (e.g. a new prompt) keeps
    // being heard, without counting the jump as loss.
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let to = a.local_addr();
    for (seq, ssrc) in [(10u16, 1u32), (11, 1), (50_000, 2), (50_001, 2)] {
        let pkt = rtp(0, seq, u32::from(seq) * 160, ssrc, &[seq as u8; 160]);
        peer.send_to(&pkt, to).await.expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_audio(&mut a).await.0);
    }
    assert_eq!(got, [10, 11, 50_000, 50_001]);
    let s = a.stop().await;
    assert_eq!(s.lost, 0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn set_remote_moves_the_stream_to_the_new_address() {
    let pool = pool();
    let first = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let second = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let a = bind(&pool)
        .await
        .start(first.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let mut buf = [0u8; 1500];
    timeout(GUARD, first.recv_from(&mut buf))
        .await
        .expect("first address gets packets")
        .expect("recv");
    a.set_remote(second.local_addr().expect("addr"));
    let (n, from) = timeout(GUARD, second.recv_from(&mut buf))
        .await
        .expect("second address gets packets")
        .expect("recv");
    assert_eq!(from, a.local_addr());
    assert!(rtp_rs::RtpReader::new(&buf[..n]).is_ok());
    assert_eq!(a.stats().remote, second.local_addr().ok());
}

#[tokio::test(start_paused = true)]
async fn received_dtmf_from_a_raw_peer_with_retransmits_is_reported_once() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let to = a.local_addr();
    let packets = herald::media::dtmf::digit_packets('3', 60, 10).expect("digit");
    let mut seq = 500u16;
    for round in 0..2 {
        for p in &packets {
            // The second round is a blind retransmission of the whole event.
            let mut pkt = rtp(101, seq, 8000, 77, &p.payload);
            if p.marker && round == 0 {
                pkt[1] |= 0x80;
            }
            peer.send_to(&pkt, to).await.expect("send");
            seq = seq.wrapping_add(1);
        }
    }
    assert_eq!(next_non_audio(&mut a).await, MediaEvent::Dtmf('3'));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = a.stop().await;
    assert_eq!(s.dtmf_received, 1, "{s:?}");
    assert_eq!(s.packets_received, 2 * packets.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_control_clone_feeds_audio_while_the_handle_reads_events() {
    let (a, mut b) = pair(cfg(Codec::Pcmu), cfg(Codec::Pcmu)).await;
    let control = a.control();
    let audio = pattern(1600, |_| true);
    let feeder = {
        let audio = audio.clone();
        tokio::spawn(async move {
            for chunk in audio.chunks(160) {
                control.play(Bytes::copy_from_slice(chunk));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            control.mark("fed".into());
        })
    };
    let got = receive_audio(&mut b, audio.len()).await;
    assert_eq!(&got[..audio.len()], &audio[..]);
    timeout(GUARD, feeder)
        .await
        .expect("feeder ends")
        .expect("feeder task");
    let mut a = a;
    assert_eq!(
        next_non_audio(&mut a).await,
        MediaEvent::MarkPlayed("fed".into())
    );
}

#[tokio::test(start_paused = true)]
async fn interarrival_jitter_follows_rfc_3550() {
    let pool = pool();
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut a = bind(&pool)
        .await
        .start(peer.local_addr().expect("addr"), cfg(Codec::Pcmu));
    let to = a.local_addr();
    // Packets 20 ms apart in RTP time arrive alternately 10 and 30 ms apart:
    // |D| is 80 timestamp units every time, so J converges to 80 (10 ms).
    for i in 0..100u16 {
        let pkt = rtp(0, i, u32::from(i) * 160, 9, &[0x55; 160]);
        peer.send_to(&pkt, to).await.expect("send");
        let gap = if i % 2 == 0 { 10 } else { 30 };
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    next_audio(&mut a).await;
    let s = a.stop().await;
    assert_eq!(s.packets_received, 100);
    assert!(
        (75..=80).contains(&s.jitter),
        "jitter {} ({:.2} ms)",
        s.jitter,
        s.jitter_ms()
    );
    assert_eq!(s.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_on_the_real_clock_and_a_multi_thread_runtime() {
    let (a, mut b) = pair(cfg(Codec::Pcma), cfg(Codec::Pcmu)).await;
    let audio = pattern(1600, |u| g711::alaw_to_ulaw(g711::ulaw_to_alaw(u)) == u);
    a.play(Bytes::from(audio.clone()));
    let got = receive_audio(&mut b, audio.len()).await;
    assert_eq!(&got[..audio.len()], &audio[..]);
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert!(
        sa.packets_sent >= 10 && sb.packets_received >= 10,
        "{sa:?} {sb:?}"
    );
    assert_eq!(sb.lost, 0);
}
