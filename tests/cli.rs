//! The binary as a new user runs it: `migrate`, `apikey create`, `serve`,
//! configuration errors that name the key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn herald(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("HERALD_BOOTSTRAP_API_KEY")
        .env("HERALD__API__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    c
}

#[tokio::test]
async fn migrate_create_a_key_and_serve_on_the_default_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("data/herald.db").exists(),
        "default database file created"
    );

    let out = herald(dir.path())
        .args(["apikey", "create", "--name", "ops"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("hk_") && key.len() == 67, "{key}");

    let mut child = herald(dir.path())
        .arg("serve")
        .env("HERALD_BOOTSTRAP_API_KEY", "bootstrap-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Serve(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");

    let c = reqwest::Client::new();
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{base}/v1/outdials")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for k in [key.as_str(), "bootstrap-secret"] {
        let r = c
            .post(format!("{base}/v1/outdials"))
            .header("x-api-key", k)
            .json(&serde_json::json!({"name": "from-cli"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .get(format!("{base}/v1/outdials"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
}

#[test]
fn an_unknown_config_key_is_named_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald(dir.path())
        .env("HERALD__API__LISTN", "x")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api.listn"), "{err}");

    std::fs::write(
        dir.path().join("h.toml"),
        "[database]\nurl = \"sqlite://x.db\"\npool = 3\n",
    )
    .unwrap();
    let out = herald(dir.path())
        .args(["--config", "h.toml", "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.pool"));
    assert!(!dir.path().join("x.db").exists(), "nothing was created");
}
