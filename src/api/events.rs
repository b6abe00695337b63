//! `GET /v1/campaigns/{id}/events` (a campaign's log) and `GET /v1/events`
//! (the global log: message status changes) as Server-Sent
//! Events. Each event's SSE `id:` is its sequence number; a client that
//! reconnects with `Last-Event-ID: N` (or asks `?after=N`) gets every event
//! numbered above N, in order, then the live ones. The stream reads the log
//! (catch-up), then waits for a commit on this node (the store's log watch),
//! or a poll tick for other nodes' writes, and reads again: it never skips a
//! number, because numbers are committed in order (see `store::events`).
//! Keep-alive comments are sent while nothing happens. The stream ends when
//! herald shuts down or the campaign is deleted.

use utoipa_axum::routes;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};

use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiResult};
use super::extract::IdPath;
use super::openapi::ApiRouter;
use crate::domain::FieldError;
use crate::metrics::Metrics;
use crate::store::events::LoggedEvent;
use crate::store::global_events::{GlobalEvent, GLOBAL_EVENT_TYPES};
use crate::store::Store;

/// How often an idle stream looks for events written by other nodes.
const POLL: Duration = Duration::from_secs(1);
/// Events read from the log at once.
const READ_EVENTS: usize = 500;

#[derive(Clone)]
struct EventsState {
    store: Store,
    keep_alive: Duration,
    shutdown: CancellationToken,
}

pub fn router(store: Store, keep_alive: Duration, shutdown: CancellationToken) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(stream))
        .routes(routes!(global_stream))
        .routes(routes!(worker_stream))
        .routes(routes!(unassigned_stream))
        .with_state(EventsState {
            store,
            keep_alive,
            shutdown,
        })
}

/// Where to start: `Last-Event-ID` (a reconnecting client) wins over `?after=`.
fn start_after(headers: &HeaderMap, after: Option<&str>) -> Result<i64, FieldError> {
    let parse = |field: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("must be an event sequence number (an integer >= 0), got {v:?}"),
                )
            })
    };
    if let Some(h) = headers.get("last-event-id") {
        let v = h
            .to_str()
            .map_err(|_| FieldError::new("Last-Event-ID", "is not valid text"))?;
        if !v.trim().is_empty() {
            return parse("Last-Event-ID", v);
        }
    }
    match after {
        Some(v) => parse("after", v),
        None => Ok(0),
    }
}

/// A campaign's events as Server-Sent Events (`id` = the campaign's
/// sequence number, `event` = the type, `data` = the event as JSON), from
/// the start or from `after`, then live; never ends while the campaign exists.
#[utoipa::path(get, operation_id = "campaign_events", path = "/campaigns/{id}/events", tag = "events",
    params(("after" = Option<i64>, Query, description = "Send the events after this sequence number."),
        ("Last-Event-ID" = Option<i64>, Header, description = "A reconnecting client's last event id; wins over after.")),
    responses((status = 200, description = "The event stream.", content_type = "text/event-stream", body = String)))]
async fn stream(
    State(s): State<EventsState>,
    IdPath(id): IdPath,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = start_after(&headers, q.get("after").map(String::as_str))?;
    if s.store.campaign_event_seq(&id).await?.is_none() {
        return Err(ApiError::not_found("campaign", &id));
    }
    let reader = Reader {
        log: s.store.log_watch(),
        _open: OpenStream::new(s.store.metrics().clone()),
        store: s.store,
        campaign: id,
        after,
        buf: VecDeque::new(),
        shutdown: s.shutdown,
    };
    let events = futures::stream::unfold(reader, |mut r| async move {
        let e = r.next().await?;
        Some((Ok(sse_event(&e)), r))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(s.keep_alive)))
}

/// `GET /v1/events`: the global log (message status changes), with
/// `Last-Event-ID` / `?after=` and `?types=a,b` (only those types are sent;
/// numbering is still the log's, so a reconnect resumes where it stopped).
#[utoipa::path(get, operation_id = "events", path = "/events", tag = "events",
    params(("after" = Option<i64>, Query, description = "Send the events after this sequence number."),
        ("Last-Event-ID" = Option<i64>, Header, description = "A reconnecting client's last event id; wins over after."),
        ("types" = Option<String>, Query, description = "Comma-separated event types (message.status, notification.status, notification.delivery, conversation.*).")),
    responses((status = 200, description = "The event stream.", content_type = "text/event-stream", body = String)))]
async fn global_stream(
    State(s): State<EventsState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = start_after(&headers, q.get("after").map(String::as_str))?;
    let types = match q.get("types").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let mut out = Vec::new();
            for name in t.split(',').map(str::trim) {
                if !GLOBAL_EVENT_TYPES.contains(&name) {
                    return Err(FieldError::new(
                        "types",
                        format!(
                            "unknown event type {:?}; this stream has: {}",
                            name.chars().take(60).collect::<String>(),
                            GLOBAL_EVENT_TYPES.join(", ")
                        ),
                    )
                    .into());
                }
                out.push(name.to_string());
            }
            Some(out)
        }
    };
    Ok(global_sse(s, after, types, None))
}

/// `GET /v1/workers/{worker}/events`: the conversation events routed to
/// this worker (their conversations' messages, opened and closed), with
/// `Last-Event-ID` / `?after=` as `GET /v1/events`.
#[utoipa::path(get, operation_id = "worker_events", path = "/workers/{worker}/events", tag = "conversations",
    params(("after" = Option<i64>, Query, description = "Send the events after this sequence number."),
        ("Last-Event-ID" = Option<i64>, Header, description = "A reconnecting client's last event id; wins over after.")),
    responses((status = 200, description = "The worker's conversation events.", content_type = "text/event-stream", body = String)))]
async fn worker_stream(
    State(s): State<EventsState>,
    axum::extract::Path(worker): axum::extract::Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = start_after(&headers, q.get("after").map(String::as_str))?;
    Ok(global_sse(
        s,
        after,
        Some(conversation_types()),
        Some(worker),
    ))
}

/// `GET /v1/conversations/unassigned/events`: contacts' messages routed to
/// anyone (conversations opened with `route_replies: any`, and messages no
/// open conversation takes).
#[utoipa::path(get, operation_id = "unassigned_events", path = "/conversations/unassigned/events", tag = "conversations",
    params(("after" = Option<i64>, Query, description = "Send the events after this sequence number."),
        ("Last-Event-ID" = Option<i64>, Header, description = "A reconnecting client's last event id; wins over after.")),
    responses((status = 200, description = "The conversation events routed to anyone.", content_type = "text/event-stream", body = String)))]
async fn unassigned_stream(
    State(s): State<EventsState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = start_after(&headers, q.get("after").map(String::as_str))?;
    Ok(global_sse(
        s,
        after,
        Some(conversation_types()),
        Some("unassigned".into()),
    ))
}

fn conversation_types() -> Vec<String> {
    GLOBAL_EVENT_TYPES
        .iter()
        .filter(|t| t.starts_with("conversation."))
        .map(|t| t.to_string())
        .collect()
}

/// The global log as Server-Sent Events from `after`, only `types` (all
/// when `None`) and, when `route` is set, only events routed there.
fn global_sse(
    s: EventsState,
    after: i64,
    types: Option<Vec<String>>,
    route: Option<String>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let keep_alive = s.keep_alive;
    let reader = GlobalReader {
        log: s.store.log_watch(),
        _open: OpenStream::new(s.store.metrics().clone()),
        store: s.store,
        after,
        types,
        route,
        buf: VecDeque::new(),
        shutdown: s.shutdown,
    };
    let events = futures::stream::unfold(reader, |mut r| async move {
        let e = r.next().await?;
        let ev = SseEvent::default()
            .id(e.seq.to_string())
            .event(e.kind.as_str())
            .data(e.to_json().to_string());
        Some((Ok(ev), r))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive))
}

/// One client's position in the global log.
struct GlobalReader {
    store: Store,
    after: i64,
    types: Option<Vec<String>>,
    /// Only events whose `data.route` is this.
    route: Option<String>,
    buf: VecDeque<GlobalEvent>,
    log: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
    _open: OpenStream,
}

impl GlobalReader {
    async fn next(&mut self) -> Option<GlobalEvent> {
        loop {
            while let Some(e) = self.buf.pop_front() {
                self.after = e.seq;
                let routed = self.route.as_ref().is_none_or(|r| {
                    e.data.get("route").and_then(serde_json::Value::as_str) == Some(r)
                });
                if routed && self.types.as_ref().is_none_or(|t| t.contains(&e.kind)) {
                    return Some(e);
                }
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            self.log.borrow_and_update();
            match self
                .store
                .global_events_after(self.after, READ_EVENTS)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.buf.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the global event log failed"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = self.log.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(POLL).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

fn sse_event(e: &LoggedEvent) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.as_str())
        .data(e.to_json().to_string())
}

/// Counts open streams for /metrics.
struct OpenStream(Arc<Metrics>);

impl OpenStream {
    fn new(m: Arc<Metrics>) -> Self {
        m.sse_streams.add(1);
        OpenStream(m)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.sse_streams.add(-1);
    }
}

/// One client's position in a campaign's log.
struct Reader {
    store: Store,
    campaign: String,
    /// The last number handed out.
    after: i64,
    buf: VecDeque<LoggedEvent>,
    log: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
    _open: OpenStream,
}

impl Reader {
    /// The next event; `None` when herald shuts down.
    async fn next(&mut self) -> Option<LoggedEvent> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                self.after = e.seq;
                return Some(e);
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            // Seen before reading: a commit after the read wakes the wait below.
            self.log.borrow_and_update();
            match self
                .store
                .events_after(&self.campaign, self.after, READ_EVENTS)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.buf.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(campaign = %self.campaign, error = %e, "reading the event log failed")
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = self.log.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(POLL).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {
                    // Quiet for a while: a deleted campaign ends its stream.
                    if let Ok(None) = self.store.campaign_event_seq(&self.campaign).await {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_wins_over_after_and_bad_values_name_their_field() {
        let mut h = HeaderMap::new();
        assert_eq!(start_after(&h, None).unwrap(), 0);
        assert_eq!(start_after(&h, Some("12")).unwrap(), 12);
        h.insert("last-event-id", "40".parse().unwrap());
        assert_eq!(start_after(&h, Some("12")).unwrap(), 40);
        h.insert("last-event-id", "x".parse().unwrap());
        assert_eq!(start_after(&h, None).unwrap_err().field, "Last-Event-ID");
        let h = HeaderMap::new();
        assert_eq!(start_after(&h, Some("-1")).unwrap_err().field, "after");
    }
}
