//! The global event log: events that belong to no campaign (message status
//! changes), for `GET /v1/events` and webhooks. Numbered 1, 2, 3… without
//! gaps like a campaign's log: a transaction bumps `event_streams.seq` for
//! the `global` row by its event count (holding that row's lock until it
//! commits, taken last) and writes its events as one page, so numbers commit
//! in order on PostgreSQL too. Events are stored whole (`{"type", "at",
//! "data"}`), since they are few per message.

use serde_json::{Map, Value};
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::store::with_pool;

/// Every global event type, as named in `?types=` and webhook filters.
pub const GLOBAL_EVENT_TYPES: [&str; 9] = [
    "message.status",
    "message.opened",
    "message.clicked",
    "notification.status",
    "notification.delivery",
    "conversation.opened",
    "conversation.message",
    "conversation.closed",
    "channel.health",
];

/// One event as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalEvent {
    pub seq: i64,
    pub kind: String,
    pub at: i64,
    pub data: Map<String, Value>,
}

impl GlobalEvent {
    /// As a [`super::events::LoggedEvent`] without a campaign (what webhooks deliver).
    pub fn into_logged(self) -> super::events::LoggedEvent {
        super::events::LoggedEvent {
            campaign_id: String::new(),
            seq: self.seq,
            kind: self.kind,
            at: self.at,
            fields: self.data,
        }
    }

    /// The JSON shape the stream and webhooks send (times as RFC 3339).
    pub fn to_json(&self) -> Value {
        let mut data = Map::with_capacity(self.data.len());
        for (k, v) in &self.data {
            let v = match v {
                Value::Number(n) if k.ends_with("_at") => n.as_i64().map_or(Value::Null, rfc3339),
                other => other.clone(),
            };
            data.insert(k.clone(), v);
        }
        serde_json::json!({
            "id": format!("global:{}", self.seq),
            "seq": self.seq,
            "type": self.kind,
            "at": rfc3339(self.at),
            "data": data,
        })
    }
}

fn rfc3339(ms: i64) -> Value {
    Value::String(super::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Global events collected for one transaction.
#[derive(Debug, Default)]
pub struct GlobalLog {
    events: Vec<String>,
}

impl GlobalLog {
    pub fn push(&mut self, kind: &str, at: i64, data: Value) {
        let e = serde_json::json!({"type": kind, "at": at, "data": data});
        self.events.push(e.to_string());
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The page's JSON array.
    pub(crate) fn page(&self) -> String {
        let mut s =
            String::with_capacity(self.events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        s.push('[');
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(e);
        }
        s.push(']');
        s
    }
}

/// Appends a [`GlobalLog`] inside the open transaction `$tx` at `$now`;
/// evaluates to the number of events written. Call it last, just before
/// the commit.
macro_rules! append_global_page {
    ($tx:expr, $log:expr, $now:expr) => {{
        let n = $log.len() as i64;
        if n > 0 {
            let last: i64 = sqlx::query_scalar(
                "UPDATE event_streams SET seq = seq + $1 WHERE name = 'global' RETURNING seq",
            )
            .bind(n)
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO global_event_pages (first_seq, last_seq, at, events) VALUES ($1, $2, $3, $4)",
            )
            .bind(last - n + 1)
            .bind(last)
            .bind($now)
            .bind($log.page())
            .execute(&mut *$tx)
            .await?;
        }
        n as usize
    }};
}
pub(crate) use append_global_page;

fn decode_page(first_seq: i64, text: &str) -> Result<Vec<GlobalEvent>> {
    let corrupt =
        |why: String| StoreError::Corrupt(format!("global event page at {first_seq}: {why}"));
    let items: Vec<Value> = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut o) = item else {
            return Err(corrupt("an event is not an object".into()));
        };
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt("no type".into()))?
            .to_string();
        let at = o
            .get("at")
            .and_then(Value::as_i64)
            .ok_or_else(|| corrupt("no time".into()))?;
        let data = match o.remove("data") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        };
        out.push(GlobalEvent {
            seq: first_seq + i as i64,
            kind,
            at,
            data,
        });
    }
    Ok(out)
}

impl Store {
    /// Global events numbered above `after`, oldest first (whole pages, at
    /// least one when more exist).
    pub async fn global_events_after(&self, after: i64, max: usize) -> Result<Vec<GlobalEvent>> {
        let rows = with_pool!(self, p => {
            let rows = sqlx::query("SELECT first_seq, events FROM global_event_pages WHERE last_seq > $1 ORDER BY last_seq LIMIT $2")
                .bind(after).bind((max as i64 / 64).max(1) + 1).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get::<i64, _>("first_seq")?, r.try_get::<String, _>("events")?));
            }
            Ok::<_, StoreError>(out)
        })?;
        let mut out = Vec::new();
        for (first, text) in rows {
            out.extend(
                decode_page(first, &text)?
                    .into_iter()
                    .filter(|e| e.seq > after),
            );
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The last committed global event number.
    pub async fn global_event_seq(&self) -> Result<i64> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>("SELECT seq FROM event_streams WHERE name = 'global'")
            .fetch_one(p).await?))
    }
}
