//! A real `herald serve` process, for tests and benchmarks that need one:
//! it listens on port 0 and prints its address, which is read back; it
//! accepts one bootstrap API key; it is killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

pub struct HeraldProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub key: String,
}

impl HeraldProcess {
    /// Starts `herald serve` in `dir` with `env` on top of: listen on port 0,
    /// a bootstrap key, warnings-only logs (to stderr, inherited when `show_logs`).
    pub fn start(dir: &Path, env: &[(&str, &str)], show_logs: bool) -> HeraldProcess {
        let stderr = if show_logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::start_with_stderr(dir, env, stderr)
    }

    /// As [`HeraldProcess::start`], with the logs (stderr) appended to `log`.
    pub fn start_logging(dir: &Path, env: &[(&str, &str)], log: &Path) -> HeraldProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        Self::start_with_stderr(dir, env, Stdio::from(file))
    }

    /// As [`HeraldProcess::start`], running the binary at `bin` (another
    /// build of herald, for benchmarks comparing two versions).
    pub fn start_bin(
        bin: &str,
        dir: &Path,
        env: &[(&str, &str)],
        show_logs: bool,
    ) -> HeraldProcess {
        let stderr = if show_logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::start_bin_with_stderr(bin, dir, env, stderr)
    }

    fn start_with_stderr(dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> HeraldProcess {
        Self::start_bin_with_stderr(BIN, dir, env, stderr)
    }

    fn start_bin_with_stderr(
        bin: &str,
        dir: &Path,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> HeraldProcess {
        let key = "process-test-key".to_string();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .current_dir(dir)
            .env_remove("HERALD_BOOTSTRAP_API_KEY")
            .env("HERALD__API__LISTEN", "127.0.0.1:0")
            .env("HERALD_BOOTSTRAP_API_KEY", &key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start herald serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("herald prints its address");
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            base.starts_with("http://"),
            "herald did not start: {line:?}"
        );
        HeraldProcess { child, base, key }
    }

    /// kill -9: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// POSTs JSON and returns the JSON answer, asserting a 2xx.
    pub async fn post(&self, c: &reqwest::Client, path: &str, body: Value) -> Value {
        let r = c
            .post(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("JSON answer")
    }

    pub async fn get(&self, c: &reqwest::Client, path: &str) -> Value {
        c.get(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON answer")
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
