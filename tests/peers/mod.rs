//! Messaging peers that are not herald: a real SMTP server (Python
//! `aiosmtpd`, `smtp_sink.py`) and a real SMTP client (Python `smtplib`,
//! `send_mail.py`).
//!
//! Installs aiosmtpd when missing (Debian `python3-aiosmtpd`, else PyPI into
//! a venv under the target directory), once per process and once across
//! processes under a `flock`, saying so on stderr. Ports are the peers' own
//! port-0 binds, read back from their output; every wait has a deadline.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a peer may take to answer before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// A certificate for `localhost` and 127.0.0.1 (self-signed, not a CA,
/// valid until 2126) and its key, for peers that speak TLS.
pub fn tls_cert_and_key() -> (PathBuf, PathBuf) {
    let dir = peers_dir().join("tls");
    (dir.join("localhost.crt"), dir.join("localhost.key"))
}

/// A Python interpreter that can import aiosmtpd, installing it if needed.
pub fn ensure_aiosmtpd() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aiosmtpd-venv");
        let script = r#"
for py in /usr/bin/python3 python3 "$VENV/bin/python3"; do
  if "$py" -c 'import aiosmtpd' >/dev/null 2>&1; then echo "$py"; exit 0; fi
done
echo "message_smtp tests: installing aiosmtpd (Debian python3-aiosmtpd)" >&2
if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-aiosmtpd) >&2 \
   && /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo /usr/bin/python3; exit 0
fi
echo "message_smtp tests: apt failed; installing aiosmtpd from PyPI into $VENV" >&2
python3 -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q aiosmtpd >&2 && echo "$VENV/bin/python3"
"#;
        let out = std::process::Command::new("flock")
            .args(["/tmp/herald-apt.lock", "sh", "-c", script])
            .env("VENV", &venv)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("running flock/sh to find or install aiosmtpd");
        let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !python.is_empty(),
            "installing aiosmtpd failed (see stderr)"
        );
        python
    })
}

/// `smtp_sink.py`: an aiosmtpd server on 127.0.0.1, killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// One message as the sink received it.
#[derive(Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    /// The client's TCP port: two messages with one port came on one connection.
    pub peer_port: u64,
    /// It came over TLS (implicit or STARTTLS).
    pub tls: bool,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        Self::start_with(&[]).await
    }

    /// As [`SmtpSink::start`], with `smtp_sink.py` options (`--auth`,
    /// `--tls CERT KEY`, `--starttls CERT KEY`).
    pub async fn start_with(args: &[&str]) -> SmtpSink {
        let python = ensure_aiosmtpd();
        let mut child = Command::new(python)
            .arg(peers_dir().join("smtp_sink.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("sink stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("smtp_sink.py printed no port in time")
            .expect("read sink stdout")
            .expect("smtp_sink.py exited before printing its port");
        let port = first.trim().parse().expect("a port number");
        SmtpSink { port, child, lines }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The next message the sink received, waiting at most [`DEADLINE`].
    pub async fn next_message(&mut self) -> Received {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("the sink received no message in time")
            .expect("read sink stdout")
            .expect("smtp_sink.py exited");
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        Received {
            mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
            rcpt_tos: v["rcpt_tos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            data: v["data"].as_str().unwrap_or_default().to_string(),
            peer_port: v["peer_port"].as_u64().unwrap_or_default(),
            tls: v["tls"].as_bool().unwrap_or_default(),
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Sends `message` with Python's smtplib (`send_mail.py`) and returns its
/// JSON verdict (`{"ok": true, "refused": {}}` or `{"ok": false, "code": N}`).
pub async fn send_with_smtplib(
    port: u16,
    mail_from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> Value {
    let python = ensure_aiosmtpd();
    let mut child = Command::new(python)
        .arg(peers_dir().join("send_mail.py"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(mail_from)
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start send_mail.py");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(message).await.expect("write the message");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("send_mail.py did not finish in time")
        .expect("send_mail.py output");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("send_mail.py said {text:?}: {e}"))
}
