//! Trunks over TCP and TLS, against SIPp.
//!
//! TCP: SIPp `-t t1` answers, streams a tone and herald hangs up (its BYE on
//! the same connection); a second SIPp hangs up itself (its BYE reaches
//! herald's dialog routing over TCP).
//!
//! TLS: Debian's SIPp is built without TLS (`-t l1` is not in its `-h`), so
//! the TLS server is socat's OpenSSL, with a certificate made here by a CA
//! made here, in front of SIPp `-t t1`. herald verifies the certificate
//! against that CA (`tls_ca_file`), sends `sips:` and the call goes through;
//! a certificate for another name is refused before any INVITE is sent; the
//! callee's BYE comes back over the TLS connection to the call. A request on
//! a TCP connection the carrier opens to herald's SIP port is answered, and
//! one on a TLS connection it opens to `[sip] tls_listen` (socat's OpenSSL as
//! the carrier's TLS client, verifying herald's certificate).

mod sipp;

use std::time::Duration;

use herald::domain::Outcome;
use herald::sip::{CallEnded, CallEvent, HangupBy};
use sipp::{herald as h, tls, SippUas, UasOptions};

const GUARD: Duration = Duration::from_secs(30);

/// Runs the call to its end; counts the audio frames herald received.
async fn to_end(mut call: herald::sip::Call) -> (CallEnded, usize) {
    let mut frames = 0usize;
    let run = async {
        while let Some(ev) = call.next_event().await {
            match ev {
                CallEvent::Answered { mut media, .. } => {
                    // Read until the callee's tone has come through, then hang up.
                    while let Some(ev) = media.next_event().await {
                        if let herald::media::MediaEvent::Audio { .. } = ev {
                            frames += 1;
                            if frames == 25 {
                                call.hangup();
                            }
                        }
                    }
                }
                CallEvent::Ended(e) => return e,
                _ => {}
            }
        }
        panic!("the call's events ended without Ended");
    };
    let e = tokio::time::timeout(GUARD, run)
        .await
        .expect("the call did not end in time");
    (e, frames)
}

/// The call's end, whatever came before it.
async fn ended(call: &mut herald::sip::Call) -> CallEnded {
    tokio::time::timeout(GUARD, async {
        loop {
            if let Some(CallEvent::Ended(e)) = call.next_event().await {
                return e;
            }
        }
    })
    .await
    .expect("the call did not end")
}

fn sipp_tcp(scenario: &str) -> UasOptions<'_> {
    UasOptions {
        scenario,
        calls: Some(1),
        extra: &["-t", "t1"],
        timeout_s: 40,
        trace: true,
    }
}

#[tokio::test]
async fn a_call_over_tcp_is_answered_carries_audio_and_is_hung_up_on_the_connection() {
    let uas = SippUas::start_with(sipp_tcp("uas_answer_rtp.xml")).await;
    let mut trunk = h::trunk(&format!("sip:{}", uas.addr), "", "", 5);
    trunk.transport = "tcp".into();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let call = cc
        .originate(h::tel("a-tcp", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let (e, frames) = to_end(call).await;
    let exit = uas.finish().await;
    exit.assert_success();
    let log = exit.logs;
    assert_eq!(e.outcome, Outcome::Answered, "{e:?}");
    assert_eq!(e.hangup_by, HangupBy::Herald, "{e:?}");
    assert!(frames >= 25, "{frames} audio frames");
    assert!(
        log.contains("INVITE sip:+15557654321@127.0.0.1") && log.contains(";transport=TCP SIP/2.0"),
        "{log}"
    );
    assert!(log.contains("Via: SIP/2.0/TCP"), "{log}");
    assert_eq!(cc.sip_dialogs(), 0);
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_callee_bye_over_tcp_reaches_the_call() {
    let uas = SippUas::start_with(sipp_tcp("uas_answer_then_bye.xml")).await;
    let mut trunk = h::trunk(&format!("sip:{}", uas.addr), "", "", 5);
    trunk.transport = "tcp".into();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let mut call = cc
        .originate(h::tel("a-tcp-bye", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let e = ended(&mut call).await;
    uas.finish().await.assert_success();
    assert_eq!(e.outcome, Outcome::Answered, "{e:?}");
    assert_eq!(e.hangup_by, HangupBy::Callee, "{e:?}");
    assert_eq!(e.q850_cause, Some(16), "{e:?}");
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_call_over_tls_verifies_the_certificate_and_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path(), &["127.0.0.1", "sip.test"]);
    let (uas, _front, tls_port) =
        tls::sipp_behind_tls(dir.path(), "uas_answer_rtp.xml", &[], Some(1), 40, true).await;
    let mut trunk = h::trunk(&format!("sips:127.0.0.1:{tls_port}"), "", "", 5);
    trunk.transport = "tls".into();
    trunk.tls_ca_file = dir.path().join("ca.pem").display().to_string();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let call = cc
        .originate(h::tel("a-tls", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let (e, frames) = to_end(call).await;
    let exit = uas.finish().await;
    exit.assert_success();
    let log = exit.logs;
    assert_eq!(e.outcome, Outcome::Answered, "{e:?}");
    assert_eq!(e.hangup_by, HangupBy::Herald, "{e:?}");
    assert!(frames >= 25, "{frames} audio frames");
    assert!(
        log.contains(&format!("INVITE sips:+15557654321@127.0.0.1:{tls_port}")),
        "{log}"
    );
    assert!(log.contains("Via: SIP/2.0/TLS"), "{log}");
    assert!(log.contains("BYE sip"), "herald's BYE came through: {log}");
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_before_any_invite() {
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path(), &["wrong.example"]);
    let (uas, _front, tls_port) =
        tls::sipp_behind_tls(dir.path(), "uas_answer_rtp.xml", &[], Some(1), 40, true).await;
    let mut trunk = h::trunk(&format!("sips:127.0.0.1:{tls_port}"), "", "", 5);
    trunk.transport = "tls".into();
    trunk.tls_ca_file = dir.path().join("ca.pem").display().to_string();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let call = cc
        .originate(h::tel("a-tls-wrong", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let (e, _) = to_end(call).await;
    assert_eq!(e.outcome, Outcome::TrunkError, "{e:?}");
    assert!(
        e.reason.starts_with("tls_certificate:") && e.reason.contains("not valid for name"),
        "{e:?}"
    );
    assert!(e.invite_sent_at.is_none(), "{e:?}");
    uas.quit();
    let exit = uas.finish().await;
    assert!(
        !exit.logs.contains("INVITE"),
        "SIPp saw an INVITE: {}",
        exit.logs
    );
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_callee_bye_over_tls_reaches_the_call() {
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path(), &["127.0.0.1"]);
    let (uas, _front, tls_port) = tls::sipp_behind_tls(
        dir.path(),
        "uas_answer_then_bye.xml",
        &[],
        Some(1),
        40,
        true,
    )
    .await;
    let mut trunk = h::trunk(&format!("sips:127.0.0.1:{tls_port}"), "", "", 5);
    trunk.transport = "tls".into();
    trunk.tls_ca_file = dir.path().join("ca.pem").display().to_string();
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    let mut call = cc
        .originate(h::tel("a-tls-bye", GUARD, Duration::from_secs(20)))
        .await
        .unwrap();
    let e = ended(&mut call).await;
    uas.finish().await.assert_success();
    assert_eq!(e.outcome, Outcome::Answered, "{e:?}");
    assert_eq!(e.hangup_by, HangupBy::Callee, "{e:?}");
    assert_eq!(e.q850_cause, Some(16), "{e:?}");
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_request_on_a_connection_the_carrier_opens_is_answered() {
    // herald listens on TCP on its SIP port too.
    let (cc, cancel) = h::start(h::trunk("sip:127.0.0.1:9", "", "", 1), h::media_config(30)).await;
    sipp::ensure_sipp();
    let out = tokio::process::Command::new("timeout")
        .args(["30", "sipp", "-sf", "scenarios/uac_options.xml"])
        .arg(cc.local_addr().to_string())
        .args(["-t", "t1", "-i", "127.0.0.1", "-m", "1", "-nostdin", "-p"])
        .arg(sipp::free_udp_port().to_string())
        .args(["-timeout", "20s", "-recv_timeout", "10s"])
        .current_dir(sipp::crate_root())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running sipp");
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIPp's OPTIONS over TCP: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    cancel.cancel();
    cc.stopped().await;
}

#[tokio::test]
async fn a_tls_trunk_registers_refreshes_and_unregisters_over_its_connection() {
    use herald::sip::register::RegState;
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path(), &["127.0.0.1"]);
    let (uas, _front, tls_port) = tls::sipp_behind_tls(
        dir.path(),
        "uas_registrar.xml",
        &["-recv_timeout", "30s"],
        Some(1),
        40,
        true,
    )
    .await;
    let mut trunk = h::trunk(
        &format!("sips:127.0.0.1:{tls_port}"),
        "herald-user",
        "s3cret",
        5,
    );
    trunk.transport = "tls".into();
    trunk.tls_ca_file = dir.path().join("ca.pem").display().to_string();
    trunk.from_user = "herald-user".into();
    trunk.register = true;
    let (cc, cancel) = h::start(trunk, h::media_config(30)).await;
    // Registered, refreshed into the 503, then registered for the hour.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tokio::time::timeout(GUARD, async {
        loop {
            tick.tick().await;
            let r = cc.trunk_stats("sipp").and_then(|s| s.registration);
            if let Some(r) = r {
                if r.state == RegState::Registered
                    && r.expires_at
                        .is_some_and(|e| e > chrono::Utc::now() + chrono::Duration::minutes(59))
                {
                    break;
                }
            }
        }
    })
    .await
    .expect("registered for the hour");
    // Shutdown unregisters (Expires: 0), on the same connection.
    cancel.cancel();
    cc.stopped().await;
    let exit = uas.finish().await;
    exit.assert_success();
    assert!(
        exit.logs
            .contains(&format!("REGISTER sips:127.0.0.1:{tls_port} SIP/2.0")),
        "{}",
        exit.logs
    );
    assert!(exit.logs.contains("Via: SIP/2.0/TLS"), "{}", exit.logs);
    assert!(!exit.logs.contains("Via: SIP/2.0/UDP"), "{}", exit.logs);
    assert!(
        exit.logs.contains("Contact: <sips:herald-user@127.0.0.1:")
            && exit.logs.contains(";transport=tls>"),
        "{}",
        exit.logs
    );
}

#[tokio::test]
async fn a_carrier_opening_its_own_tls_connection_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path(), &["127.0.0.1"]);
    let tls_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sip = herald::config::SipConfig {
        tls_listen: format!("127.0.0.1:{tls_port}"),
        tls_cert_file: dir.path().join("server.pem").display().to_string(),
        tls_key_file: dir.path().join("server.key").display().to_string(),
        ..Default::default()
    };
    let mut trunks = std::collections::BTreeMap::new();
    trunks.insert("sipp".to_string(), h::trunk("sip:127.0.0.1:9", "", "", 1));
    let cancel = tokio_util::sync::CancellationToken::new();
    let cc = herald::sip::CallControl::start(&sip, &h::media_config(30), &trunks, cancel.clone())
        .await
        .expect("call control starts");
    sipp::wait_listening(tls_port, true).await;
    // The carrier: SIPp over TCP into socat, which opens a TLS connection to
    // herald and verifies herald's certificate against the test CA.
    sipp::ensure_debian_tool("socat", "socat");
    let plain = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut client = tokio::process::Command::new("socat")
        .arg(format!(
            "TCP-LISTEN:{plain},bind=127.0.0.1,reuseaddr,nodelay"
        ))
        .arg(format!(
            "OPENSSL:127.0.0.1:{tls_port},cafile={},nodelay",
            dir.path().join("ca.pem").display()
        ))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("socat runs");
    sipp::wait_listening(plain, true).await;
    let out = tokio::process::Command::new("timeout")
        .args(["30", "sipp", "-sf", "scenarios/uac_options.xml"])
        .arg(format!("127.0.0.1:{plain}"))
        .args(["-t", "t1", "-i", "127.0.0.1", "-m", "1", "-nostdin", "-p"])
        .arg(sipp::free_udp_port().to_string())
        .args(["-timeout", "20s", "-recv_timeout", "10s"])
        .current_dir(sipp::crate_root())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running sipp");
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIPp's OPTIONS over TLS: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    client.kill().await.ok();
    cancel.cancel();
    cc.stopped().await;
}
