//! Builds the parts, owns every task, shuts down on signal.
//!
//! [`App::start`] opens the store (migrating it), binds the API listener and
//! returns a handle that owns the server task; [`App::shutdown`] stops it and
//! waits. `herald serve` runs one until Ctrl-C or SIGTERM; tests run one on
//! port 0 against a fresh database.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiDeps};
use crate::config::Config;
use crate::store::apikeys::hash_key;
use crate::store::Store;

/// Environment variable whose value is accepted as an admin API key.
pub const BOOTSTRAP_KEY_VAR: &str = "HERALD_BOOTSTRAP_API_KEY";

pub struct App {
    pub addr: SocketAddr,
    pub store: Store,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl App {
    /// Starts herald with `config`; `bootstrap_key` is HERALD_BOOTSTRAP_API_KEY's value, if any.
    pub async fn start(config: &Config, bootstrap_key: Option<String>) -> anyhow::Result<App> {
        let store = Store::open(&config.database.url, config.database.max_connections)
            .await
            .with_context(|| {
                format!(
                    "opening the database ({})",
                    redact_url(&config.database.url)
                )
            })?;
        let listener = TcpListener::bind(&config.api.listen)
            .await
            .with_context(|| format!("binding the API listener on {}", config.api.listen))?;
        let addr = listener.local_addr()?;
        let deps = ApiDeps {
            store: store.clone(),
            trunks: Arc::new(config.trunks.keys().cloned().collect()),
            json_body_limit: config.api.body_limit_bytes,
            csv_body_limit: config.api.csv_body_limit_bytes,
            bootstrap_key_hash: bootstrap_key
                .filter(|k| !k.is_empty())
                .map(|k| Arc::from(hash_key(&k))),
        };
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let stop = cancel.clone();
        let router = api::router(deps);
        tasks.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        tasks.close();
        tracing::info!(%addr, backend = ?store.backend(), "herald is listening");
        Ok(App {
            addr,
            store,
            cancel,
            tasks,
        })
    }

    /// Stops every task and waits for them, then closes the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
        self.store.close().await;
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://data/herald.db"),
            "sqlite://data/herald.db"
        );
    }
}
