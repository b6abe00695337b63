//! The API's HTTP/1.1 server loop: accepts connections and serves the router
//! on each, with the limits that keep slow or idle clients from holding
//! herald's resources.
//!
//! Owns: the listener, one task per connection, and three limits — a header
//! read timeout (a client that does not finish a request's headers in time,
//! or leaves a kept-alive connection idle that long, is disconnected), a
//! body read timeout (the longest pause between two pieces of a request
//! body; the request then fails as cut short) and a cap on connections
//! served at once (more wait in the listen backlog). Stops accepting on
//! cancel and lets open requests finish. Must not: know any route.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

use crate::config::ApiConfig;

/// The limits one API server applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl From<&ApiConfig> for Limits {
    fn from(c: &ApiConfig) -> Self {
        Limits {
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
            max_connections: c.max_connections,
        }
    }
}

/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` is cancelled, then waits for
/// the requests in progress (idle connections are closed at once).
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    }
                }
            },
        };
        stream.set_nodelay(true).ok();
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let req = req.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
            router.clone().oneshot(req)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "API connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    graceful.shutdown().await;
    connections.wait().await;
}
