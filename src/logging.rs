//! Log output: the tracing subscriber herald's binary installs, and the
//! filter defaults it applies.
//!
//! rsipstack logs every SIP message it sends or receives at INFO, raw
//! (credentials included), and malformed ones at DEBUG; herald logs one line
//! per call itself. So rsipstack's targets are held at `warn` unless the
//! filter names rsipstack explicitly (which shows raw SIP messages with
//! their `Authorization` headers: for debugging against a test trunk only).
//! Must not: log anything itself.

use crate::config::{Config, LogFormat};

/// The level rsipstack's targets get when the filter does not name them.
pub const RSIPSTACK_DEFAULT: &str = "rsipstack=warn";

/// The filter actually used for `spec` (RUST_LOG or `log.level`): `spec`,
/// plus [`RSIPSTACK_DEFAULT`] unless one of its directives names rsipstack.
pub fn filter_directives(spec: &str) -> String {
    let names_rsipstack = spec.split(',').any(|d| d.trim().starts_with("rsipstack"));
    if names_rsipstack {
        spec.to_string()
    } else if spec.trim().is_empty() {
        RSIPSTACK_DEFAULT.to_string()
    } else {
        format!("{spec},{RSIPSTACK_DEFAULT}")
    }
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
    fn rsipstack_is_held_at_warn_unless_named() {
        let cases = [
            ("info", "info,rsipstack=warn"),
            ("debug", "debug,rsipstack=warn"),
            (
                "herald=debug,sqlx=warn",
                "herald=debug,sqlx=warn,rsipstack=warn",
            ),
            ("", "rsipstack=warn"),
            ("debug,rsipstack=debug", "debug,rsipstack=debug"),
            ("rsipstack::transport=trace", "rsipstack::transport=trace"),
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
