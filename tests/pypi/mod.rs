//! Python tools from PyPI that tests run against herald (schemathesis,
//! openapi-python-client), each installed once into its own virtual
//! environment under the target directory when missing, under a `flock`
//! so that test processes running at once install it once, saying so on
//! stderr.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;

/// The `bin` directory of a virtual environment holding `requirement`
/// (e.g. `schemathesis==4.32.5`), whose `check` command (run from that
/// directory) succeeds once it is installed.
pub fn venv_bin(name: &str, requirement: &str, check: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-venv"));
    let bin = venv.join("bin");
    let script = format!(
        r#"
cd "$BIN" 2>/dev/null && {check} >/dev/null 2>&1 && exit 0
echo "installing {requirement} from PyPI into $VENV (for the tests)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q --disable-pip-version-check '{requirement}' >&2 \
  && cd "$BIN" && {check} >/dev/null
"#
    );
    let status = std::process::Command::new("flock")
        .args([
            &format!("/tmp/herald-{name}-install.lock"),
            "sh",
            "-c",
            &script,
        ])
        .env("VENV", &venv)
        .env("BIN", &bin)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("running flock/sh to install a Python tool");
    assert!(
        status.success(),
        "installing {requirement} failed (see stderr)"
    );
    bin
}
