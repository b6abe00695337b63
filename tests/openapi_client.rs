//! A client generated from herald's own `/v1/openapi.json` by
//! openapi-python-client (not herald's code) runs the README's walkthrough
//! against a running herald: `tests/peers/walkthrough_client.py`, each
//! answer parsed into the generated models.

mod common;
mod pypi;

use common::{spawn_app, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_client_runs_the_walkthrough() {
    let bin = pypi::venv_bin(
        "openapi-python-client",
        "openapi-python-client==0.29.1",
        "./openapi-python-client --version",
    );
    let Some(app) = spawn_app(Db::Sqlite).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let doc = reqwest::get(app.url("/v1/openapi.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let doc_path = work.path().join("openapi.json");
    std::fs::write(&doc_path, &doc).unwrap();
    let generated = tokio::process::Command::new(bin.join("openapi-python-client"))
        .current_dir(work.path())
        .args([
            "generate",
            "--meta",
            "none",
            "--output-path",
            "herald_client",
            "--path",
        ])
        .arg(&doc_path)
        .output()
        .await
        .expect("running openapi-python-client");
    let said = String::from_utf8_lossy(&generated.stdout).to_string()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(
        generated.status.success(),
        "generating the client failed:\n{said}"
    );
    assert!(
        work.path()
            .join("herald_client/api/campaigns/start.py")
            .exists(),
        "no campaign functions generated:\n{said}"
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/walkthrough_client.py");
    let run = tokio::process::Command::new(bin.join("python3"))
        .current_dir(work.path())
        .env("PYTHONPATH", work.path())
        .arg(&script)
        .arg(&app.base)
        .arg(&app.key)
        .output()
        .await
        .expect("running the walkthrough");
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the walkthrough failed:\n{out}\n{err}"
    );
    assert!(out.contains("walkthrough: 24 steps passed"), "{out}\n{err}");
    // What it did is stored: the campaign and the DNC entry.
    let r = app.get("/v1/dnc/%2B15550001234").await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let campaigns: serde_json::Value = app.get("/v1/campaigns").await.json().await.unwrap();
    assert_eq!(campaigns["items"][0]["name"], "reminders");
    app.stop().await;
}
