//! SDES-SRTP (RFC 4568, AES_CM_128_HMAC_SHA1_80) on a trunk.
//!
//! baresip is the callee, with `mediaenc=srtp-mand` (it accepts no call
//! without SRTP): it answers, plays a 440 Hz tone from a WAV file and dumps
//! the audio it decoded (its sndfile module). herald plays a 1 kHz tone.
//! Each end must hear the other's tone, which only happens if both encrypt
//! and decrypt with the keys in the SDP; herald rejects no packet.
//!
//! `required` against a plain SIPp callee: the call ends `trunk_error`
//! (`srtp_required`) and herald hangs up at once.

mod sipp;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald::domain::Outcome;
use herald::media::g711;
use herald::media::MediaEvent;
use herald::sip::{CallEnded, CallEvent, HangupBy};
use sipp::{herald as h, SippUas};
use tokio::process::Command;

const GUARD: Duration = Duration::from_secs(30);

/// The dominant frequency of 8 kHz samples, by zero crossings.
fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 8000.0)
}

fn tone(hz: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
    (0..(8000.0 * seconds) as usize)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// A 16-bit mono 8 kHz WAV.
fn write_wav(path: &Path, samples: &[i16]) {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// baresip answering `+15557654321` on a free UDP port with SRTP mandatory.
async fn baresip(dir: &Path) -> (tokio::process::Child, u16) {
    sipp::ensure_debian_tool("baresip", "baresip-core");
    write_wav(&dir.join("in.wav"), &tone(440.0, 10.0, 8000.0));
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    for _ in 0..3 {
        let port = sipp::free_udp_port();
        let rtp = sipp::free_rtp_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method\tepoll\n\
                 sip_listen\t127.0.0.1:{port}\n\
                 audio_player\taubridge,herald\n\
                 audio_source\taufile,{in_wav}\n\
                 audio_alert\taubridge,herald\n\
                 rtp_ports\t{rtp}-{}\n\
                 module_path\t/usr/lib/baresip/modules\n\
                 module\tg711.so\n\
                 module\taufile.so\n\
                 module\taubridge.so\n\
                 module\tsndfile.so\n\
                 module\tsrtp.so\n\
                 module_app\taccount.so\n\
                 snd_path\t{dumps}\n",
                rtp + 10,
                in_wav = dir.join("in.wav").display(),
                dumps = dumps.display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            "<sip:+15557654321@127.0.0.1>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=PCMU\n",
        )
        .unwrap();
        let mut child = Command::new("timeout")
            .args(["60", "baresip", "-f"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip runs");
        tokio::select! {
            _ = sipp::wait_listening(port, false) => return (child, port),
            _ = child.wait() => continue,
        }
    }
    panic!("baresip did not listen three times");
}

/// The first dump of what baresip decoded, once written out.
async fn decoded_dump(dir: &Path) -> Vec<i16> {
    let wait = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.contains("-dec") {
                    continue;
                }
                if let Ok(ulaw) = herald::media::wav::read_wav(&e.path()) {
                    if ulaw.len() >= 8000 {
                        let mut pcm = Vec::new();
                        g711::decode_ulaw(&ulaw, &mut pcm);
                        return pcm;
                    }
                }
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .expect("baresip wrote no decoded audio")
}

#[tokio::test]
async fn an_sdes_call_to_baresip_carries_audio_both_ways_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let (_baresip, port) = baresip(dir.path()).await;
    let mut trunk = h::trunk(&format!("sip:127.0.0.1:{port}"), "", "", 5);
    trunk.media_encryption = "required".into();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let mut call = cc
        .originate(h::tel("a-srtp", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let mut heard = Vec::<i16>::new();
    let mut stats = None;
    let ended: CallEnded = tokio::time::timeout(GUARD, async {
        while let Some(ev) = call.next_event().await {
            match ev {
                CallEvent::Answered { mut media, .. } => {
                    let mut ulaw = Vec::new();
                    g711::encode_ulaw(&tone(1000.0, 3.0, 8000.0), &mut ulaw);
                    media.play(ulaw.into());
                    while let Some(ev) = media.next_event().await {
                        if let MediaEvent::Audio { ulaw, .. } = ev {
                            g711::decode_ulaw(&ulaw, &mut heard);
                            // 2 s of the callee, while herald's tone plays.
                            if heard.len() >= 16000 {
                                stats = Some(media.stats());
                                call.hangup();
                                break;
                            }
                        }
                    }
                }
                CallEvent::Ended(e) => return e,
                _ => {}
            }
        }
        panic!("no Ended");
    })
    .await
    .expect("the call did not end");
    assert_eq!(ended.outcome, Outcome::Answered, "{ended:?}");
    assert_eq!(ended.hangup_by, HangupBy::Herald, "{ended:?}");
    let stats = stats.expect("stats");
    assert_eq!(stats.srtp_rejected, 0, "{stats:?}");
    assert!(stats.packets_received >= 100, "{stats:?}");
    // The last second herald heard is baresip's 440 Hz tone.
    let f = frequency(&heard[heard.len() - 8000..]);
    assert!((f - 440.0).abs() < 20.0, "herald heard {f} Hz");
    // baresip heard herald's 1 kHz tone.
    let dumped = decoded_dump(&dir.path().join("dumps")).await;
    let loud: Vec<i16> = dumped
        .iter()
        .copied()
        .skip_while(|s| s.unsigned_abs() < 2000)
        .take(8000)
        .collect();
    assert!(loud.len() >= 4000, "baresip decoded no tone");
    let f = frequency(&loud);
    assert!((f - 1000.0).abs() < 40.0, "baresip heard {f} Hz");
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn required_srtp_refuses_a_plain_answer_as_a_trunk_error() {
    let uas = SippUas::start("uas_answer_rtp.xml", 1, &[]).await;
    let mut trunk = h::trunk(&format!("sip:{}", uas.addr), "", "", 5);
    trunk.media_encryption = "required".into();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let mut call = cc
        .originate(h::tel("a-plain", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let e = tokio::time::timeout(GUARD, async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(e)) => return e,
                Some(CallEvent::Answered { .. }) => panic!("a plain answer was taken"),
                Some(_) => {}
                None => panic!("no Ended"),
            }
        }
    })
    .await
    .expect("the call did not end");
    let exit = uas.finish().await;
    exit.assert_success();
    assert_eq!(e.outcome, Outcome::TrunkError, "{e:?}");
    assert!(e.reason.starts_with("srtp_required"), "{e:?}");
    assert!(
        exit.logs.contains("m=audio") && exit.logs.contains(" RTP/SAVP 0 8 101"),
        "{}",
        exit.logs
    );
    assert!(
        exit.logs
            .contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{}",
        exit.logs
    );
    cancel.cancel();
    cc.stopped().await;
}
