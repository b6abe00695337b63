//! Schemathesis (not herald's code) against a running herald with herald's
//! own `/v1/openapi.json`: every operation but the endless event streams,
//! examples, coverage, fuzzing and stateful phases (following the document's
//! links from each create to the operations on what it made), with the
//! checks `not_a_server_error`, `status_code_conformance`,
//! `content_type_conformance` and `response_schema_conformance`. A bounded
//! number of examples per operation keeps it short; `benches/schemathesis.sh`
//! is the long run.

mod common;
mod pypi;

use common::{spawn_app, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let bin = pypi::venv_bin(
        "schemathesis",
        "schemathesis==4.32.5",
        "./schemathesis --version",
    );
    let Some(app) = spawn_app(Db::Sqlite).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bin.join("schemathesis"))
        .current_dir(work.path())
        .args([
            "--no-color",
            "run",
            &app.url("/v1/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--header",
            &format!("X-API-Key: {}", app.key),
            "--exclude-path-regex",
            // The event streams, which never end (not the target's history).
            r"(?<!/targets/\{id\})/events$",
            "--max-examples",
            "8",
            "--workers",
            "2",
            "--seed",
            "20261204",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true)
        .output()
        .await
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // It ran: operations were tested and cases generated, none failed.
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no count of tested operations:\n{stdout}"));
    assert!(tested >= 95, "only {tested} operations tested:\n{stdout}");
    assert!(
        stdout.contains("✅ Stateful"),
        "the stateful phase did not pass:\n{stdout}"
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" generated"))
        .unwrap_or("");
    assert!(!summary.contains("found"), "{summary}\n{stdout}");
    app.stop().await;
}
