//! RTP on calls placed by herald's call control against real SIPp callees:
//! audio from SIPp arrives byte-exact and in sequence, audio herald plays
//! reaches SIPp (echoed back with `-rtp_echo`), a callee's RFC 4733 key press
//! is reported once, and a call without RTP is hung up on inactivity.

mod sipp;

use std::time::Duration;

use bytes::Bytes;
use herald::domain::Outcome;
use herald::media::MediaEvent;
use herald::sip::{Call, CallEnded, CallEvent, CallMedia, HangupBy};
use sipp::herald::{media_config, start, tel, trunk};
use sipp::SippUas;

const GUARD: Duration = Duration::from_secs(30);

/// Waits for `Answered`, returning its media.
async fn answered(call: &mut Call) -> CallMedia {
    let wait = async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Answered { media, .. }) => return media,
                Some(CallEvent::Ended(e)) => panic!("ended before answer: {e:?}"),
                Some(_) => {}
                None => panic!("no Answered event"),
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("answer in time")
}

async fn ended(call: &mut Call) -> CallEnded {
    let wait = async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(e)) => return e,
                Some(_) => {}
                None => panic!("no Ended event"),
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("end in time")
}

/// Reads media events until the session closes (the call ended).
async fn drain(media: &mut CallMedia) -> (Vec<(u16, Bytes)>, Vec<char>) {
    let mut frames = Vec::new();
    let mut digits = Vec::new();
    let wait = async {
        while let Some(ev) = media.next_event().await {
            match ev {
                MediaEvent::Audio { ulaw, seq, .. } => frames.push((seq, ulaw)),
                MediaEvent::Dtmf(d) => digits.push(d),
                _ => {}
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("media ends with the call");
    (frames, digits)
}

#[tokio::test]
async fn rtp_streamed_by_sipp_arrives_byte_exact_and_in_sequence() {
    let tone = std::fs::read(sipp::crate_root().join("scenarios/audio/tone440_1s.ulaw")).unwrap();
    let sipp = SippUas::start("uas_answer_rtp.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    let mut call = cc
        .originate(tel(
            "a-rtp",
            Duration::from_secs(10),
            Duration::from_millis(1500),
        ))
        .await
        .unwrap();
    let mut media = answered(&mut call).await;
    let (frames, _) = drain(&mut media).await;
    let e = ended(&mut call).await;
    sipp.finish().await.assert_success();
    assert_eq!(
        (e.outcome, e.hangup_by),
        (Outcome::Answered, HangupBy::Timeout)
    );

    // Audio frames: SIPp's file, 160 bytes at a time, no gaps.
    let audio: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f.iter().any(|&b| b != 0xFF))
        .collect();
    assert!(
        audio.len() >= 40,
        "only {} audio frames from SIPp",
        audio.len()
    );
    let first = &audio[0].1;
    assert_eq!(first.len(), 160);
    let offset = (0..tone.len())
        .step_by(160)
        .find(|&o| &tone[o..o + 160] == first.as_ref())
        .expect("the first frame is a slice of the streamed file");
    for (k, (_, f)) in audio.iter().enumerate() {
        let o = (offset + k * 160) % tone.len();
        assert_eq!(f.as_ref(), &tone[o..o + 160], "frame {k} differs");
    }
    for w in audio.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence gap");
    }
    let stats = e.media_stats.expect("media stats");
    assert!(stats.packets_received >= 40, "{stats:?}");
    assert_eq!((stats.lost, stats.sequence_gaps), (0, 0), "{stats:?}");
    assert!(
        stats.packets_sent >= 40,
        "herald sends a steady stream: {stats:?}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn audio_played_by_herald_reaches_sipp_and_is_echoed_back() {
    let sipp = SippUas::start("uas_answer_echo.xml", 1, &["-rtp_echo"]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    let mut call = cc
        .originate(tel(
            "a-echo",
            Duration::from_secs(10),
            Duration::from_millis(1500),
        ))
        .await
        .unwrap();
    let mut media = answered(&mut call).await;
    // 0.6 s of a pattern no silence frame can match.
    let pattern: Vec<u8> = (0..4800u32).map(|i| (i % 200) as u8 + 20).collect();
    media.play(Bytes::from(pattern.clone()));
    let (frames, _) = drain(&mut media).await;
    let e = ended(&mut call).await;
    sipp.finish().await.assert_success();
    assert_eq!(e.outcome, Outcome::Answered);
    let echoed: Vec<u8> = frames
        .iter()
        .filter(|(_, f)| f.iter().all(|&b| (20..220).contains(&b)))
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    assert_eq!(
        echoed, pattern,
        "the played audio came back byte-exact through SIPp"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_key_press_from_the_callee_is_reported_once() {
    let sipp = SippUas::start("uas_dtmf.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    let mut call = cc
        .originate(tel(
            "a-dtmf",
            Duration::from_secs(10),
            Duration::from_secs(20),
        ))
        .await
        .unwrap();
    let mut media = answered(&mut call).await;
    let mut digits = Vec::new();
    let wait = async {
        while let Some(ev) = media.next_event().await {
            if let MediaEvent::Dtmf(d) = ev {
                digits.push(d);
                break;
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("a digit in time");
    // Let the rest of the capture (end packets, retransmits) arrive, then hang up.
    call.hangup();
    let (_, more) = drain(&mut media).await;
    digits.extend(more);
    let e = ended(&mut call).await;
    sipp.finish().await.assert_success();
    assert_eq!(digits, ['1']);
    assert_eq!(
        (e.outcome, e.hangup_by),
        (Outcome::Answered, HangupBy::Herald)
    );
    assert_eq!(e.media_stats.unwrap().dtmf_received, 1);
    cancel.cancel();
}

#[tokio::test]
async fn a_call_without_rtp_is_hung_up_on_inactivity() {
    let sipp = SippUas::start("uas_answer_echo.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(1),
    )
    .await;
    let mut call = cc
        .originate(tel(
            "a-silent",
            Duration::from_secs(10),
            Duration::from_secs(20),
        ))
        .await
        .unwrap();
    let mut media = answered(&mut call).await;
    let wait = async {
        loop {
            match media.next_event().await {
                Some(MediaEvent::Inactive) => return,
                Some(_) => {}
                None => panic!("media ended without Inactive"),
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("Inactive in time");
    let e = ended(&mut call).await;
    sipp.finish().await.assert_success();
    assert_eq!(
        (e.outcome, e.hangup_by),
        (Outcome::Answered, HangupBy::Timeout),
        "{e:?}"
    );
    assert!(e.reason.contains("inactivity"), "{e:?}");
    assert_eq!(e.media_stats.unwrap().packets_received, 0);
    cancel.cancel();
}

#[tokio::test]
async fn early_media_on_183_starts_rtp_before_the_answer() {
    let sipp = SippUas::start("uas_early_media_183.xml", 1, &[]).await;
    let (cc, cancel) = start(
        trunk(&format!("sip:{}", sipp.addr), "", "", 10),
        media_config(30),
    )
    .await;
    let mut call = cc
        .originate(tel(
            "a-early",
            Duration::from_secs(10),
            Duration::from_millis(800),
        ))
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut media = loop {
        match tokio::time::timeout(GUARD, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Ringing { early_media, .. }) => names.push(early_media),
            Some(CallEvent::Answered { media, .. }) => break media,
            Some(CallEvent::Ended(e)) => panic!("ended early: {e:?}"),
            Some(_) => {}
            None => panic!("no events"),
        }
    };
    assert_eq!(names, [true], "one Ringing, with early media");
    let (frames, _) = drain(&mut media).await;
    let e = ended(&mut call).await;
    sipp.finish().await.assert_success();
    assert_eq!((e.outcome, e.sip_code), (Outcome::Answered, Some(200)));
    let stats = e.media_stats.unwrap();
    // 400 ms of early media plus 800 ms answered: more than the answered part alone.
    assert!(stats.packets_received >= 50, "{stats:?}");
    assert!(frames.iter().any(|(_, f)| f.iter().any(|&b| b != 0xFF)));
    cancel.cancel();
}
