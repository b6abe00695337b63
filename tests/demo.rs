//! `herald demo` as a new user runs it: it exits 0 on its own, and its
//! closing summary is what the database it kept says.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// The summary's rows: `  KIND     NAME     COUNT`, by (kind, name).
fn summary_rows(stdout: &str) -> BTreeMap<(String, String), f64> {
    let mut rows = BTreeMap::new();
    let mut in_summary = false;
    for line in stdout.lines() {
        if line.starts_with("Summary:") {
            in_summary = true;
            continue;
        }
        if !in_summary || line.trim().is_empty() {
            if in_summary {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        let (kind, name, n) = match cells.as_slice() {
            [kind, n] => (*kind, "", *n),
            [kind, name, n] => (*kind, *name, *n),
            _ => panic!("unexpected summary line {line:?}"),
        };
        if kind == "what" {
            continue;
        }
        let n: f64 = n.parse().unwrap_or_else(|_| panic!("no count in {line:?}"));
        rows.insert((kind.to_string(), name.to_string()), n);
    }
    rows
}

#[tokio::test]
async fn the_demo_finishes_on_its_own_and_its_summary_matches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let child = tokio::process::Command::new(BIN)
        .args(["demo", "--targets", "100", "--seed", "3", "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .env_remove("HERALD_BOOTSTRAP_API_KEY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo finishes within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains('\x1b'),
        "no terminal redraws without a terminal"
    );
    assert!(stdout.contains("/v1/campaigns/"), "REST URLs are shown");
    let rows = summary_rows(&stdout);
    let row = |k: &str, n: &str| rows.get(&(k.into(), n.into())).copied().unwrap_or(0.0) as i64;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM campaigns")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "finished");
    let targets: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM targets GROUP BY state")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(targets.iter().map(|(_, n)| n).sum::<i64>(), 100);
    for (state, n) in &targets {
        assert!(
            state == "finished" || state == "failed",
            "{state} is not final"
        );
        assert_eq!(row("target", state), *n, "targets {state}\n{stdout}");
    }
    assert_eq!(row("target", "(all)"), 100);
    let outcomes: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, COUNT(*) FROM calls GROUP BY outcome")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (outcome, n) in &outcomes {
        assert_eq!(row("attempt", outcome), *n, "attempts {outcome}\n{stdout}");
    }
    let (attempts, dialed): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT target_id) FROM calls")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row("attempt", "(all)"), attempts);
    assert_eq!(row("retries", ""), attempts - dialed);
    assert_eq!(dialed, 100, "every person was called");
    assert!(attempts > dialed, "some calls were retried\n{stdout}");
    assert!(
        row("attempt", "answered") >= 50,
        "the default population answers most calls\n{stdout}"
    );
    pool.close().await;
}

#[tokio::test]
async fn ctrl_c_stops_the_demo_s_campaign_and_exits_130() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--targets", "1000", "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The first progress line: the campaign is dialing.
    let progressing = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("in flight") {
                return;
            }
        }
        panic!("the demo ended before showing progress");
    })
    .await;
    assert!(progressing.is_ok(), "no progress within a minute");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    let exit = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            rest.push_str(&l);
            rest.push('\n');
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("the demo stops within a minute of Ctrl-C");
    assert_eq!(exit.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(rest.contains("Summary: the campaign stopped"), "{rest}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM campaigns")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "stopped");
    let (dialing, open): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM targets WHERE state = 'dialing'), \
                (SELECT COUNT(*) FROM calls WHERE ended_at IS NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((dialing, open), (0, 0), "nothing is left mid-call");
    pool.close().await;
}

/// `herald demo --keep` says where the console is and which key opens it:
/// that key logs in there while the demo's campaign runs, and its list
/// shows the demo's campaign.
#[tokio::test]
async fn the_kept_demo_prints_a_console_url_and_key_that_log_in() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--targets", "300", "--keep", "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("console: ") {
                return l;
            }
        }
        panic!("the demo printed no console line");
    })
    .await
    .expect("a console line within a minute");
    // `console: http://127.0.0.1:PORT/ui/login (log in with the API key KEY) …`
    let url = line.split_whitespace().nth(1).unwrap().to_string();
    let key = line
        .split("API key ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    assert!(url.ends_with("/ui/login"), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .post(&url)
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "{line}");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let list = c
        .get(url.replace("/ui/login", "/ui/campaigns"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), reqwest::StatusCode::OK);
    let html = list.text().await.unwrap();
    assert!(html.contains("badge-"), "{html}");
    assert!(
        html.contains("/ui/campaigns/"),
        "a link to the demo campaign's page: {html}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
}
