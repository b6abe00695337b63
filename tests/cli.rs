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

#[test]
fn check_config_prints_the_effective_configuration_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("h.toml"),
        "[trunks.carrier]\nproxy = \"sip:carrier.example\"\npassword = \"trunk-pass-0123\"\n\
         [channels.sms]\ntransport = \"smpp\"\nsmpp_url = \"smpp://esme@smsc.example:2775\"\n\
         password = \"smpp-pass-89ab\"\n",
    )
    .unwrap();
    let out = herald(dir.path())
        .env(
            "HERALD__DATABASE__URL",
            "postgres://herald:db-pass-cdef@db.example/herald",
        )
        .env("HERALD__API__MAX_CONNECTIONS", "321")
        .args(["--config", "h.toml", "check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: toml::Value = stdout.parse().expect("TOML out");
    assert_eq!(
        effective["api"]["max_connections"].as_integer(),
        Some(321),
        "the environment applied"
    );
    assert_eq!(
        effective["trunks"]["carrier"]["proxy"].as_str(),
        Some("sip:carrier.example")
    );
    assert_eq!(
        effective["trunks"]["carrier"]["password"].as_str(),
        Some("***")
    );
    assert_eq!(
        effective["database"]["url"].as_str(),
        Some("postgres://herald:***@db.example/herald")
    );
    for secret in ["trunk-pass-0123", "smpp-pass-89ab", "db-pass-cdef"] {
        assert!(!stdout.contains(secret), "{secret} printed");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was opened or created"
    );

    // An invalid one: exit 2, the key named, nothing printed on stdout.
    let out = herald(dir.path())
        .env("HERALD__TRUNKS__DEFAULT__MAX_CALLS_PER_SECOND", "0")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trunks.default.max_concurrent_calls"));

    // Credentials in the SMTP URL are refused as serve refuses them, and
    // the error does not repeat them.
    let out = herald(dir.path())
        .env("HERALD__CHANNELS__EMAIL__TRANSPORT", "smtp")
        .env(
            "HERALD__CHANNELS__EMAIL__SMTP_URL",
            "smtp://mailer:url-pass-4567@mail.example:587",
        )
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("channels.email.smtp_url") && err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains("url-pass-4567"), "{err}");
}

#[tokio::test]
async fn sim_answers_as_its_population_says_and_stops_on_ctrl_c() {
    use herald::config::{MediaConfig, Secret, SipConfig, TrunkConfig};
    use herald::sip::{CallControl, CallEvent, DialDestination, OriginateRequest};
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[outcomes]\nanswer = \"most\"\n",
    )
    .unwrap();
    let out = herald(dir.path())
        .args(["sim", "--listen", "127.0.0.1:0", "--population", "bad.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outcomes.answer"), "{err}");

    std::fs::write(
        dir.path().join("busy.toml"),
        "name = \"all busy\"\n[outcomes]\nbusy = 1\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::from(herald(dir.path()))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--population",
            "busy.toml",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sip:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    assert!(first.contains("all busy"), "{first}");

    let mut trunks = std::collections::BTreeMap::new();
    trunks.insert(
        "sim".to_string(),
        TrunkConfig {
            proxy: format!("sip:{addr}"),
            transport: "udp".into(),
            from_user: "herald".into(),
            from_domain: "herald.test".into(),
            caller_id: "+15550001111".into(),
            username: String::new(),
            password: Secret::default(),
            password_env: String::new(),
            max_concurrent_calls: 10,
            max_calls_per_second: 10,
            ..Default::default()
        },
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let cc = CallControl::start(
        &SipConfig {
            listen: "127.0.0.1:0".into(),
            public_addr: String::new(),
            user_agent: "herald-test".into(),
            ..Default::default()
        },
        &MediaConfig {
            rtp_port_min: 20000,
            rtp_port_max: 40000,
            rtp_inactivity_timeout_s: 30,
            jitter_buffer_ms: 40,
        },
        &trunks,
        cancel.clone(),
    )
    .await
    .unwrap();
    let mut call = cc
        .originate(OriginateRequest {
            attempt_id: "cli-sim".into(),
            destination: DialDestination::Tel {
                number: "+15557654321".into(),
                trunk: "sim".into(),
            },
            caller_id: None,
            ring_timeout: std::time::Duration::from_secs(10),
            max_duration: std::time::Duration::from_secs(10),
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Some(CallEvent::Ended(e)) = call.next_event().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ended.sip_code, Some(486), "{ended:?}");
    cancel.cancel();
    cc.stopped().await;

    let status = Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
    }
    assert!(rest.contains("1 calls: 0 answered, 1 busy"), "{rest}");
}
