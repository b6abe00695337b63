//! SIPp as a real callee for herald's call-control tests.
//!
//! Installs SIPp when missing (once per process, and once across processes
//! under a `flock`), picks free ports by binding port 0, runs every SIPp under
//! coreutils `timeout` with `-timeout`/`-recv_timeout`, and waits for it to
//! listen by watching /proc/net/udp (no sleeps).
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use tokio::process::{Child, Command};

pub mod tls;

static INSTALL: Once = Once::new();

/// Makes sure `sipp` is on PATH, installing Debian's `sip-tester` if needed.
pub fn ensure_sipp() {
    INSTALL.call_once(|| {
        let script = "command -v sipp >/dev/null 2>&1 || \
                      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester)";
        let status = std::process::Command::new("flock")
            .args(["/tmp/herald-apt.lock", "sh", "-c", script])
            .stdin(Stdio::null())
            .status()
            .expect("running flock/sh to install SIPp");
        assert!(status.success(), "installing SIPp (sip-tester) failed");
    });
}

/// Makes sure `bin` is on PATH, installing Debian's `package` if needed
/// (under the same lock as SIPp's install), and says so.
pub fn ensure_debian_tool(bin: &str, package: &str) {
    let script = format!(
        "command -v {bin} >/dev/null 2>&1 || (echo 'installing {package} for the tests' >&2; \
         apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package})"
    );
    let status = std::process::Command::new("flock")
        .args(["/tmp/herald-apt.lock", "sh", "-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("running flock/sh to install a test tool");
    assert!(status.success(), "installing {package} failed");
}

/// A UDP port that was free a moment ago (bound to port 0, then released).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.local_addr().expect("local addr").port()
}

/// An even free UDP port whose odd neighbour is free too (RTP/RTCP).
pub fn free_rtp_port() -> u16 {
    for _ in 0..200 {
        let port = free_udp_port() & !1;
        if port < 1024 {
            continue;
        }
        let a = UdpSocket::bind(("127.0.0.1", port));
        let b = UdpSocket::bind(("127.0.0.1", port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
    panic!("no free even/odd UDP port pair found");
}

/// The crate root, where `scenarios/` lives (SIPp resolves media paths from it).
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running SIPp callee (UAS).
pub struct SippUas {
    pub addr: SocketAddr,
    pub media_port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippExit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// SIPp's error and message logs, for failure messages.
    pub logs: String,
}

impl SippExit {
    pub fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "SIPp failed.\nstdout:\n{}\nstderr:\n{}\nlogs:\n{}",
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000),
            tail(&self.logs, 8000)
        );
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// How to run a SIPp callee.
pub struct UasOptions<'a> {
    pub scenario: &'a str,
    /// `-m`: exit after this many calls; `None` runs until `timeout_s`.
    pub calls: Option<u32>,
    pub extra: &'a [&'a str],
    /// `-timeout` (the coreutils `timeout` gets 20 s more).
    pub timeout_s: u32,
    /// Log every message (`-trace_msg`), for test failure messages.
    pub trace: bool,
}

impl SippUas {
    /// Starts `sipp -sf scenarios/<scenario>` for `calls` calls on a fresh port
    /// and returns once it listens.
    pub async fn start(scenario: &str, calls: u32, extra: &[&str]) -> SippUas {
        Self::start_with(UasOptions {
            scenario,
            calls: Some(calls),
            extra,
            timeout_s: 40,
            trace: true,
        })
        .await
    }

    pub async fn start_with(o: UasOptions<'_>) -> SippUas {
        Self::start_niced(o, 0).await
    }

    /// As [`SippUas::start_with`], at scheduling priority `nice` (`nice -n`;
    /// every SIPp thread inherits it): a load generator that yields the CPU
    /// to the process being measured.
    pub async fn start_niced(o: UasOptions<'_>, nice: i32) -> SippUas {
        ensure_sipp();
        // A port found free can be taken by another test before SIPp binds
        // it: SIPp then exits at once, and starts again on other ports.
        let mut exits = Vec::new();
        for _ in 0..3 {
            match Self::try_start(&o, nice).await {
                Ok(uas) => return uas,
                Err(why) => exits.push(why),
            }
        }
        panic!("SIPp did not start three times: {exits:#?}");
    }

    async fn try_start(o: &UasOptions<'_>, nice: i32) -> Result<SippUas, String> {
        // `-p` in `extra`: SIPp's port is the caller's (something already
        // points at it).
        let given = o.extra.windows(2).find(|w| w[0] == "-p");
        let port = given
            .and_then(|w| w[1].parse().ok())
            .unwrap_or_else(free_udp_port);
        let media_port = free_rtp_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario_path = crate_root().join("scenarios").join(o.scenario);
        assert!(
            scenario_path.exists(),
            "{} is missing",
            scenario_path.display()
        );
        let mut args: Vec<String> = vec![
            (o.timeout_s + 20).to_string(),
            "sipp".into(),
            "-sf".into(),
            scenario_path.display().to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            media_port.to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{}s", o.timeout_s),
            "-recv_timeout".into(),
            "15s".into(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.path().join("errors.log").display().to_string(),
            "-trace_logs".into(),
            "-log_file".into(),
            dir.path().join("logs.log").display().to_string(),
        ];
        if given.is_none() {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        if let Some(calls) = o.calls {
            args.extend(["-m".to_string(), calls.to_string()]);
        }
        if o.trace {
            args.extend([
                "-trace_msg".to_string(),
                "-message_file".to_string(),
                dir.path().join("messages.log").display().to_string(),
            ]);
        }
        args.extend(o.extra.iter().map(|s| s.to_string()));
        let mut command = if nice == 0 {
            Command::new("timeout")
        } else {
            // `nice` execs `timeout` in place: the child's pid stays the same.
            let mut c = Command::new("nice");
            c.args(["-n", &nice.to_string(), "timeout"]);
            c
        };
        let mut child = command
            .args(&args)
            .current_dir(crate_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning sipp");
        // `-t t1`: SIPp listens on TCP (and its RTP stays on UDP).
        let tcp = o
            .extra
            .windows(2)
            .any(|w| w[0] == "-t" && w[1].starts_with('t'));
        tokio::select! {
            _ = wait_listening(port, tcp) => {}
            status = child.wait() => {
                let errors = std::fs::read_to_string(dir.path().join("errors.log")).unwrap_or_default();
                return Err(format!("SIPp exited ({status:?}) before listening on {port}: {errors}"));
            }
        }
        Ok(SippUas {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            media_port,
            child,
            dir,
        })
    }

    /// Asks SIPp to finish its calls and exit (SIGUSR1, as pressing 'q').
    pub fn quit(&self) {
        // The child is coreutils `timeout`; SIPp is its only child.
        let Some(timeout_pid) = self.child.id() else {
            return;
        };
        let children = format!("/proc/{timeout_pid}/task/{timeout_pid}/children");
        if let Ok(pids) = std::fs::read_to_string(children) {
            for pid in pids.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-USR1", pid])
                    .status();
            }
        }
    }

    /// The pid of SIPp itself (the child is coreutils `timeout`).
    pub fn sipp_pid(&self) -> Option<String> {
        let pid = self.child.id()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next().map(str::to_string)
    }

    /// `sip:service@127.0.0.1:PORT` for this SIPp.
    pub fn uri(&self) -> String {
        format!("sip:service@{}", self.addr)
    }

    /// Waits for SIPp to exit (it does after its `-m` calls).
    pub async fn finish(self) -> SippExit {
        let out = tokio::time::timeout(Duration::from_secs(600), self.child.wait_with_output())
            .await
            .expect("SIPp did not exit (the coreutils timeout should have ended it)")
            .expect("waiting for sipp");
        let mut logs = String::new();
        for f in ["errors.log", "logs.log", "messages.log"] {
            if let Ok(s) = std::fs::read_to_string(self.dir.path().join(f)) {
                logs.push_str(&format!("--- {f}\n{s}\n"));
            }
        }
        SippExit {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            logs,
        }
    }

    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs SIPp's built-in UAC (`-sn uac`) against `target` at `rate` calls/s
/// for `calls` calls, and waits for it.
pub async fn run_uac(target: SocketAddr, rate: u32, calls: u32, timeout_s: u32) -> SippExit {
    ensure_sipp();
    let port = free_udp_port();
    let out = Command::new("timeout")
        .args([
            (timeout_s + 20).to_string(),
            "sipp".into(),
            "-sn".into(),
            "uac".into(),
            target.to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-r".into(),
            rate.to_string(),
            "-m".into(),
            calls.to_string(),
            "-d".into(),
            "0".into(),
            "-l".into(),
            "100000".into(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{timeout_s}s"),
            "-recv_timeout".into(),
            "10s".into(),
        ])
        .current_dir(crate_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("running sipp uac");
    SippExit {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        logs: String::new(),
    }
}

/// A cumulative counter from SIPp's final statistics screen, e.g.
/// `"Successful call"` or `"Failed call"`.
pub fn sipp_counter(stdout: &str, name: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with(name))
        .find_map(|l| l.rsplit('|').next()?.trim().parse().ok())
}

/// Waits until some socket is bound to UDP `port` (on any local address; read
/// from /proc/net/udp and udp6, so the port is never touched), checking every
/// 5 ms; panics after 20 s.
pub async fn wait_udp_listening(port: u16) {
    wait_listening(port, false).await
}

/// As [`wait_udp_listening`], for a TCP listener when `tcp` (state LISTEN in
/// /proc/net/tcp and tcp6).
pub async fn wait_listening(port: u16, tcp: bool) {
    let suffix = format!(":{port:04X}");
    let bound = |table: &str| {
        table.lines().skip(1).any(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1).unwrap_or_default();
            let remote = f.next().unwrap_or_default();
            let state = f.next().unwrap_or_default();
            local.ends_with(&suffix)
                && remote.trim_start_matches('0').starts_with(':')
                && (!tcp || state == "0A")
        })
    };
    let tables: [&str; 2] = if tcp {
        ["/proc/net/tcp", "/proc/net/tcp6"]
    } else {
        ["/proc/net/udp", "/proc/net/udp6"]
    };
    let wait = async {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tick.tick().await;
            for table in tables {
                if let Ok(t) = tokio::fs::read_to_string(table).await {
                    if bound(&t) {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("nothing listened on port {port} (tcp: {tcp})"));
}

/// herald's side of the tests: a call control with one trunk, "sipp".
pub mod herald {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use herald::config::{MediaConfig, Secret, SipConfig, TrunkConfig};
    use herald::sip::{CallControl, DialDestination, OriginateRequest};
    use tokio_util::sync::CancellationToken;

    pub fn trunk(proxy: &str, username: &str, password: &str, max_calls: u32) -> TrunkConfig {
        TrunkConfig {
            proxy: proxy.to_string(),
            transport: "udp".into(),
            from_user: "herald".into(),
            from_domain: "herald.test".into(),
            caller_id: "+15550001111".into(),
            username: username.into(),
            password: Secret(password.into()),
            password_env: String::new(),
            max_concurrent_calls: max_calls,
            max_calls_per_second: 100_000,
            ..Default::default()
        }
    }

    pub fn media_config(inactivity_s: u64) -> MediaConfig {
        MediaConfig {
            rtp_port_min: 20000,
            rtp_port_max: 40000,
            rtp_inactivity_timeout_s: inactivity_s,
            jitter_buffer_ms: 40,
        }
    }

    pub async fn start(
        trunk_cfg: TrunkConfig,
        media: MediaConfig,
    ) -> (CallControl, CancellationToken) {
        let sip = SipConfig {
            listen: "127.0.0.1:0".into(),
            public_addr: String::new(),
            user_agent: "herald-test".into(),
            ..Default::default()
        };
        let mut trunks = BTreeMap::new();
        trunks.insert("sipp".to_string(), trunk_cfg);
        let cancel = CancellationToken::new();
        let cc = CallControl::start(&sip, &media, &trunks, cancel.clone())
            .await
            .expect("call control starts");
        (cc, cancel)
    }

    pub fn tel(attempt: &str, ring_timeout: Duration, max_duration: Duration) -> OriginateRequest {
        OriginateRequest {
            attempt_id: attempt.to_string(),
            destination: DialDestination::Tel {
                number: "+15557654321".into(),
                trunk: "sipp".into(),
            },
            caller_id: None,
            ring_timeout,
            max_duration,
            headers: vec![("X-Herald-Campaign".into(), "c-1".into())],
        }
    }
}
