//! The PostgreSQL the tests use (127.0.0.1:5432, trust auth, database
//! `test`), and what happens when it is not there: the PostgreSQL half of a
//! test is skipped loudly, unless `HERALD_TEST_REQUIRE_PG=1` (set by
//! `.ci/run`), where an unreachable PostgreSQL fails the test.
#![allow(dead_code)]

use std::time::Duration;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The variable that makes an unreachable PostgreSQL a failure.
pub const REQUIRE_PG_VAR: &str = "HERALD_TEST_REQUIRE_PG";

pub async fn postgres_reachable() -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect("127.0.0.1:5432")
        )
        .await,
        Ok(Ok(_))
    )
}

/// Whether PostgreSQL tests must run (`HERALD_TEST_REQUIRE_PG=1`).
pub fn postgres_required() -> bool {
    std::env::var(REQUIRE_PG_VAR).is_ok_and(|v| v == "1")
}

/// PostgreSQL is not reachable: fails the test when it is required, else
/// says loudly that `what` did not run (the caller then returns).
pub fn skip_without_postgres(what: &str) {
    assert!(
        !postgres_required(),
        "PostgreSQL is not reachable at 127.0.0.1:5432 and {REQUIRE_PG_VAR}=1: {what} cannot be skipped"
    );
    eprintln!(
        "\n*** SKIPPED: PostgreSQL is not reachable at 127.0.0.1:5432; {what} did not run ***\n"
    );
}
