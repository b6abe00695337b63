//! Log output: the tracing subscriber herald's binary installs, and the
//! filter defaults it applies.
//!
//! rsipstack logs every SIP message it sends or receives at INFO, raw
//! (credentials included), and malformed ones at DEBUG; herald logs one line
//! per call itself. So rsipstack's targets are held at `warn` unless the
//! filter names rsipstack explicitly (which shows raw SIP messages with
//! their `Authorization` headers: for debugging against a test trunk only).
//! rusmpp and rusmppc log whole SMPP PDUs at DEBUG (the bind password and
//! message bodies included): they are held at `warn` the same way.
//! Must not: log anything itself.

use crate::config::{Config, LogFormat};

/// The level rsipstack's targets get when the filter does not name them.
pub const RSIPSTACK_DEFAULT: &str = "rsipstack=warn";

/// The level the SMPP crates' targets get when the filter does not name them.
pub const RUSMPP_DEFAULT: &str = "rusmpp=warn,rusmppc=warn";

/// The filter actually used for `spec` (RUST_LOG or `log.level`): `spec`,
/// plus [`RSIPSTACK_DEFAULT`] unless one of its directives names rsipstack,
/// plus [`RUSMPP_DEFAULT`] unless one names rusmpp.
pub fn filter_directives(spec: &str) -> String {
    let names = |what: &str| spec.split(',').any(|d| d.trim().starts_with(what));
    let mut out: Vec<&str> = Vec::new();
    if !spec.trim().is_empty() {
        out.push(spec);
    }
    if !names("rsipstack") {
        out.push(RSIPSTACK_DEFAULT);
    }
    if !names("rusmpp") {
        out.push(RUSMPP_DEFAULT);
    }
    out.join(",")
}

/// Installs the global subscriber: RUST_LOG when it is set and valid, else
/// `log.level`, in `log.format`, to stderr (colours only on a terminal).
pub fn init(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .and_then(|spec| EnvFilter::try_new(filter_directives(&spec)).ok());
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(filter_directives(&config.log.level)));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsipstack_and_rusmpp_are_held_at_warn_unless_named() {
        const R: &str = "rusmpp=warn,rusmppc=warn";
        let cases = [
            ("info", format!("info,rsipstack=warn,{R}")),
            ("debug", format!("debug,rsipstack=warn,{R}")),
            (
                "herald=debug,sqlx=warn",
                format!("herald=debug,sqlx=warn,rsipstack=warn,{R}"),
            ),
            ("", format!("rsipstack=warn,{R}")),
            (
                "debug,rsipstack=debug",
                format!("debug,rsipstack=debug,{R}"),
            ),
            (
                "rsipstack::transport=trace",
                format!("rsipstack::transport=trace,{R}"),
            ),
            (
                "debug,rusmpp=debug",
                "debug,rusmpp=debug,rsipstack=warn".to_string(),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(filter_directives(spec), want, "{spec:?}");
        }
    }

    #[test]
    fn the_directives_parse_as_a_filter() {
        for spec in ["info", "debug", "herald=debug,sqlx=warn", ""] {
            let f = filter_directives(spec);
            assert!(tracing_subscriber::EnvFilter::try_new(&f).is_ok(), "{f}");
        }
    }
}
