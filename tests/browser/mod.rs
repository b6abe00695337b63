//! A real Chromium, headless, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, installed when missing, once across processes
//! under a `flock`). chromedriver runs on a free port and is waited for by
//! its "started successfully" line; it and the browser end with the test.
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Whether chromium and chromedriver are there, installing them if needed.
fn ensure_chromium() -> bool {
    *INSTALLED.get_or_init(|| {
        let script = "command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
                      (echo 'browser tests: installing chromium and chromium-driver (Debian)' >&2; \
                       apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)";
        std::process::Command::new("flock")
            .args(["/tmp/herald-apt.lock", "sh", "-c", script])
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// A fresh headless Chromium; `None` (said loudly) only when Chromium
    /// cannot be installed on this machine.
    pub async fn start() -> Option<Browser> {
        if !ensure_chromium() {
            eprintln!("SKIPPED: chromium and chromium-driver could not be installed; the browser tests did not run");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // The browser's own zone (the console shows times in it too).
            .env("TZ", "America/Chicago")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if line.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver ended before it started");
        })
        .await
        .expect("chromedriver started within 30 s");
        // Its later output is not read: keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Some(Browser { client, driver })
    }

    pub async fn shown(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(within)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} not shown: {e}"))
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn fill(&self, id: &str, value: &str) {
        let e = self.client.find(Locator::Id(id)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    pub async fn choose(&self, id: &str, value: &str) {
        self.client
            .find(Locator::Css(&format!("#{id} option[value='{value}']")))
            .await
            .unwrap_or_else(|e| panic!("#{id} has no option {value}: {e}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn click(&self, css: &str) {
        // A part of the live page may be swapped between finding an element and
        // clicking it: found again, at most a few times.
        for _ in 0..5 {
            let e = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            match e.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(w))
                    if w.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    /// Saves a screenshot of the page as `target/ui-{name}.png`.
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(dir.join(format!("ui-{name}.png")), &png).expect("write the screenshot");
        png
    }

    /// Runs axe-core (vendored in `tests/fixtures`, MPL-2.0) in the page;
    /// the critical and serious violations, one line each (rule, what,
    /// where).
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = include_str!("../fixtures/axe-core-4.14.1.min.js");
        self.client
            .execute(axe, vec![])
            .await
            .expect("axe-core loads in the page");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(
                   r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')
                     .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                                + v.nodes.map(n => n.target.join(' ')).join(', '))),
                   e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .expect("axe-core ran");
        serde_json::from_value(found).expect("a list of violations")
    }

    /// Fails on any critical or serious accessibility violation of the page.
    pub async fn assert_accessible(&self, page: &str) {
        let v = self.accessibility_violations().await;
        assert!(v.is_empty(), "{page}: {}", v.join("\n"));
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}
