//! The SMSC peer (tests/peers/smsc.js on the npm `smpp` package) for the
//! SMPP tests and bench: installs the package when missing (once per
//! process, and once across processes under a `flock`), starts the SMSC on
//! port 0 and reads its JSON event lines with deadlines (no sleeps).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

static INSTALL: Once = Once::new();

/// Where `npm install smpp@0.5.1` puts its `node_modules` (under target/,
/// which git ignores).
pub fn npm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/npm-smpp")
}

/// Makes sure the npm `smpp` package is installed under [`npm_dir`].
pub fn ensure_node_smpp() {
    INSTALL.call_once(|| {
        let dir = npm_dir();
        std::fs::create_dir_all(&dir).expect("creating target/npm-smpp");
        if dir.join("node_modules/smpp/package.json").exists() {
            return;
        }
        eprintln!(
            "installing the npm package smpp@0.5.1 into {} (the SMSC peer)",
            dir.display()
        );
        let script = "test -f node_modules/smpp/package.json || \
                      npm install --no-save --no-audit --no-fund --prefix . smpp@0.5.1";
        let status = std::process::Command::new("flock")
            .args(["/tmp/herald-npm-smpp-install.lock", "sh", "-c", script])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .status()
            .expect("running flock/sh to install the npm smpp package");
        assert!(status.success(), "npm install smpp@0.5.1 failed");
    });
}

/// A running smsc.js.
pub struct Smsc {
    pub port: u16,
    /// Every event line read so far, in order.
    pub events: Vec<Value>,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
    child: Child,
}

impl Smsc {
    /// Starts smsc.js with `env` (see the file's header) and returns once it
    /// printed its port.
    pub async fn start(env: &[(&str, &str)]) -> Smsc {
        ensure_node_smpp();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smsc.js");
        let mut command = Command::new("node");
        command
            .arg(&script)
            .env("NODE_PATH", npm_dir().join("node_modules"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning node tests/peers/smsc.js");
        let stdout = child.stdout.take().expect("smsc stdout");
        let stdin = child.stdin.take().expect("smsc stdin");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("smsc.js printed no port within 20 s")
            .expect("reading smsc.js stdout")
            .expect("smsc.js exited before printing its port");
        let port = first.trim().parse().expect("smsc.js first line is a port");
        Smsc {
            port,
            events: Vec::new(),
            lines,
            stdin,
            child,
        }
    }

    async fn read_one(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        let line = tokio::time::timeout_at(deadline, self.lines.next_line())
            .await
            .ok()?
            .expect("reading smsc.js stdout")?;
        let value: Value = serde_json::from_str(&line).expect("smsc.js line is JSON");
        self.events.push(value.clone());
        Some(value)
    }

    /// Reads events until `count` of them (counting those already read)
    /// satisfy `pred`, or panics after `within`. Returns the matching ones.
    pub async fn wait_for(
        &mut self,
        what: &str,
        count: usize,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let matching: Vec<Value> = self.events.iter().filter(|e| pred(e)).cloned().collect();
            if matching.len() >= count {
                return matching;
            }
            if self.read_one(deadline).await.is_none() {
                panic!(
                    "waited {within:?} for {count} {what} at the SMSC; saw {} of them. Events:\n{}",
                    matching.len(),
                    self.events
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }

    /// Reads events of `kind` until `count` were seen.
    pub async fn wait_kind(&mut self, kind: &str, count: usize, within: Duration) -> Vec<Value> {
        self.wait_for(kind, count, within, |e| e["type"] == kind)
            .await
    }

    /// Sends a mobile-originated SMS (`from` and `to` as digits) to the
    /// bound session.
    pub async fn mo(&mut self, from: &str, to: &str, text: &str) {
        self.stdin
            .write_all(format!("mo {from} {to} {text}\n").as_bytes())
            .await
            .expect("writing to smsc.js");
        self.stdin.flush().await.expect("flushing smsc.js stdin");
    }

    /// Closes every session and refuses binds (`refuse: true`), or accepts
    /// them again.
    pub async fn refuse_binds(&mut self, refuse: bool) {
        let line: &[u8] = if refuse {
            b"refuse_binds\n"
        } else {
            b"accept_binds\n"
        };
        self.stdin
            .write_all(line)
            .await
            .expect("writing to smsc.js");
        self.stdin.flush().await.expect("flushing smsc.js stdin");
    }

    /// The SMSC's counters (asks on stdin, reads until the answer).
    pub async fn stats(&mut self, within: Duration) -> Value {
        self.stdin
            .write_all(b"stats\n")
            .await
            .expect("writing to smsc.js");
        self.stdin.flush().await.expect("flushing smsc.js stdin");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Some(e) = self.read_one(deadline).await else {
                panic!("smsc.js gave no stats within {within:?}");
            };
            if e["type"] == "stats" {
                return e;
            }
        }
    }

    pub async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
