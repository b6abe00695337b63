//! A small Server-Sent Events client over a reqwest streaming body: splits
//! the byte stream into events (`id:`, `event:`, `data:` lines, a blank line
//! ends one) and counts comment lines (keep-alives).
#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// One received event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseMessage {
    pub fn seq(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("numeric id")
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", self.data))
    }
}

pub struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    pending: SseMessage,
    pub comments: usize,
    /// Global events read by [`SseClient::wait_message`] for other
    /// messages, kept for the next wait (messages progress in any order).
    backlog: std::collections::VecDeque<Value>,
}

impl SseClient {
    /// GETs `url` with the API key (and `Last-Event-ID` when given) and checks it is an event stream.
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        key: &str,
        last_event_id: Option<i64>,
    ) -> SseClient {
        let mut req = client
            .get(url)
            .header("x-api-key", key)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let r = req.send().await.expect("GET events");
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "events: {}",
            r.text().await.unwrap_or_default()
        );
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        SseClient {
            body: r.bytes_stream().boxed(),
            buf: Vec::new(),
            pending: SseMessage {
                id: None,
                event: None,
                data: String::new(),
            },
            comments: 0,
            backlog: Default::default(),
        }
    }

    /// The next event, or `None` when the stream ends; panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseMessage> {
        tokio::time::timeout(within, self.next_inner())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?}"))
    }

    async fn next_inner(&mut self) -> Option<SseMessage> {
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).expect("UTF-8 stream");
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if self.pending.id.is_some()
                        || self.pending.event.is_some()
                        || !self.pending.data.is_empty()
                    {
                        let m = std::mem::replace(
                            &mut self.pending,
                            SseMessage {
                                id: None,
                                event: None,
                                data: String::new(),
                            },
                        );
                        return Some(m);
                    }
                    continue;
                }
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line
                    .split_once(':')
                    .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
                match field {
                    "id" => self.pending.id = Some(value.to_string()),
                    "event" => self.pending.event = Some(value.to_string()),
                    "data" => {
                        if !self.pending.data.is_empty() {
                            self.pending.data.push('\n');
                        }
                        self.pending.data.push_str(value);
                    }
                    _ => {}
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("event stream broke: {e}"),
                None => return None,
            }
        }
    }
}

impl SseClient {
    /// Reads the global stream until message `id` reaches `status` (within
    /// `within`); the statuses it went through, in order. Events of other
    /// messages read meanwhile are kept for later waits.
    pub async fn wait_message(&mut self, id: &str, status: &str, within: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let mut backlog = std::mem::take(&mut self.backlog);
        let mut from_backlog = Vec::new();
        while let Some(v) = backlog.pop_front() {
            if about(&v, id) && !seen.iter().any(|s: &String| s == status) {
                seen.push(v["data"]["status"].as_str().unwrap_or_default().to_string());
            } else {
                from_backlog.push(v);
            }
        }
        self.backlog = from_backlog.into();
        if seen.iter().any(|s| s == status) {
            return seen;
        }
        let mut others = Vec::new();
        let found = tokio::time::timeout(within, async {
            loop {
                let v = self.next(within).await.expect("stream open").json();
                others.push(format!(
                    "{}:{}:{}",
                    v["seq"], v["data"]["message_id"], v["data"]["status"]
                ));
                if about(&v, id) {
                    let st = v["data"]["status"].as_str().unwrap_or_default().to_string();
                    seen.push(st.clone());
                    if st == status {
                        return;
                    }
                } else {
                    self.backlog.push_back(v);
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "message {id} did not become {status}; saw {seen:?}; the stream gave {others:?}"
        );
        seen
    }

    /// Reads `notification.delivery` events until notification `nid`'s
    /// `channel` delivery reaches `status`; that event.
    pub async fn wait_delivery(
        &mut self,
        nid: &str,
        channel: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(within, async {
            loop {
                let v = self.next(within).await.expect("stream open").json();
                let d = &v["data"];
                seen.push(format!("{}:{}", d["channel"], d["status"]));
                if d["notification_id"] == nid && d["channel"] == channel && d["status"] == status {
                    return v;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{channel} of {nid} did not become {status}: {seen:?}"))
    }
}

/// Whether an event is about this message or notification.
fn about(v: &Value, id: &str) -> bool {
    v["data"]["message_id"] == id || v["data"]["notification_id"] == id
}
