//! The campaign event log: what the SSE stream and webhooks deliver.
//!
//! Writers collect events in an [`EventLog`] while they build a transaction's
//! statements and append it just before committing ([`append_event_pages!`]):
//! per campaign, `UPDATE campaigns SET event_seq = event_seq + n … RETURNING
//! event_seq` allocates n gapless sequence numbers and holds the campaign
//! row's lock until the commit, then the events go in as one page row (a JSON
//! array; the i-th event has number `first_seq + i`). Two transactions of one
//! campaign therefore commit in sequence order, and a reader never sees a
//! later number before an earlier one — also on PostgreSQL with concurrent
//! writers, where a sequence (BIGSERIAL) could commit out of order. The lock
//! is taken last, after every other row of the transaction, so it is held
//! only for the page insert and the commit.
//!
//! Readers ([`Store::events_after`]) page through `event_pages` by
//! `last_seq`; in-process wake-ups come from [`Store::log_watch`], bumped
//! after every commit that logged events.

use serde_json::{Map, Value};
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::store::with_pool;

/// Events per page row at most (a large batch writes several pages).
pub const PAGE_EVENTS: usize = 1000;

/// Every event type, as named in the stream and in webhook filters.
pub const EVENT_TYPES: [&str; 8] = [
    "target.transition",
    "attempt.started",
    "attempt.answered",
    "attempt.amd",
    "attempt.ended",
    "agent.result",
    "campaign.status",
    "target.fallback",
];

/// Field names of each type's stored form, after its code and `at`. Pages
/// store an event as a JSON array `[code, at, field…]` (positional, to keep
/// the log small; the dialing path writes several events per attempt).
const LAYOUTS: [(&str, &str, &[&str]); 9] = [
    (
        "F",
        "target.fallback",
        &[
            "target_id",
            "channel",
            "message_id",
            "template_id",
            "reason",
        ],
    ),
    (
        "T",
        "target.transition",
        &[
            "target_id",
            "attempt_id",
            "from",
            "to",
            "sip_code",
            "reason",
        ],
    ),
    (
        "S",
        "attempt.started",
        &[
            "attempt_id",
            "target_id",
            "destination_index",
            "destination",
            "attempt",
        ],
    ),
    ("A", "attempt.answered", &["attempt_id", "target_id"]),
    (
        "M",
        "attempt.amd",
        &["attempt_id", "target_id", "answered_by", "amd_ms", "cause"],
    ),
    (
        "E",
        "attempt.ended",
        &[
            "attempt_id",
            "target_id",
            "outcome",
            "sip_code",
            "q850_cause",
            "hangup_by",
            "reason",
            "invite_sent_at",
            "ringing_at",
            "answered_at",
            "ended_at",
        ],
    ),
    ("R", "agent.result", &["attempt_id", "target_id", "result"]),
    ("C", "campaign.status", &["from", "to", "reason", "by"]),
    (
        "B",
        "campaign.abandonment",
        &["pacing", "rate", "ceiling", "live_answered", "abandoned"],
    ),
];

/// Fields added to a layout after events of it were stored: per code, how
/// many of its last fields an older event may lack (read as null).
const ADDED_LATER: [(&str, usize); 1] = [("C", 1)];

/// One event as written. Times are epoch milliseconds.
#[derive(Debug)]
pub enum EventRecord<'a> {
    /// A row of `target_events`.
    Transition {
        at: i64,
        target_id: &'a str,
        attempt_id: Option<&'a str>,
        from: &'a str,
        to: &'a str,
        sip_code: Option<i32>,
        reason: Option<&'a str>,
    },
    /// An attempt row was opened: the call is being placed.
    AttemptStarted {
        at: i64,
        attempt_id: &'a str,
        target_id: &'a str,
        destination_index: usize,
        destination: &'a str,
        /// The target's try number.
        attempt: u32,
    },
    AttemptAnswered {
        at: i64,
        attempt_id: &'a str,
        target_id: &'a str,
    },
    /// Who answered, by the answering-machine detector, `amd_ms` after the
    /// answer, and why.
    AttemptAmd {
        at: i64,
        attempt_id: &'a str,
        target_id: &'a str,
        answered_by: &'a str,
        amd_ms: i64,
        cause: &'a str,
    },
    /// The attempt row was closed; `ringing_at` says whether and when it rang.
    AttemptEnded {
        at: i64,
        attempt_id: &'a str,
        target_id: &'a str,
        outcome: &'a str,
        sip_code: Option<i32>,
        q850_cause: Option<i32>,
        hangup_by: Option<&'a str>,
        reason: Option<&'a str>,
        invite_sent_at: Option<i64>,
        ringing_at: Option<i64>,
        answered_at: Option<i64>,
        ended_at: i64,
    },
    /// The agent's result stored on the attempt (`calls.result`).
    AgentResult {
        at: i64,
        attempt_id: &'a str,
        target_id: &'a str,
        result: &'a str,
    },
    CampaignStatus {
        at: i64,
        from: &'a str,
        to: &'a str,
        reason: Option<&'a str>,
        /// Who made the change (see [`crate::domain::StatusChange`]).
        by: &'a str,
    },
    /// A campaign's pacing moved under its abandonment ceiling: `normal`,
    /// `cautious` (within the margin: one call per free agent session) or
    /// `stopped` (at the ceiling).
    CampaignAbandonment {
        at: i64,
        pacing: &'a str,
        rate: f64,
        ceiling: f64,
        live_answered: u64,
        abandoned: u64,
    },
}

/// Events collected for one transaction, grouped by campaign in arrival order.
#[derive(Debug, Default)]
pub struct EventLog {
    campaigns: Vec<(String, Vec<String>)>,
}

impl EventLog {
    pub fn push(&mut self, campaign_id: &str, e: &EventRecord<'_>) {
        self.push_json(campaign_id, Self::serialize(e));
    }

    /// An event's stored form.
    pub fn serialize(e: &EventRecord<'_>) -> String {
        use EventRecord as E;
        let json = match *e {
            E::Transition {
                at,
                target_id,
                attempt_id,
                from,
                to,
                sip_code,
                reason,
            } => {
                serde_json::to_string(&("T", at, target_id, attempt_id, from, to, sip_code, reason))
            }
            E::AttemptStarted {
                at,
                attempt_id,
                target_id,
                destination_index,
                destination,
                attempt,
            } => serde_json::to_string(&(
                "S",
                at,
                attempt_id,
                target_id,
                destination_index,
                destination,
                attempt,
            )),
            E::AttemptAnswered {
                at,
                attempt_id,
                target_id,
            } => serde_json::to_string(&("A", at, attempt_id, target_id)),
            E::AttemptAmd {
                at,
                attempt_id,
                target_id,
                answered_by,
                amd_ms,
                cause,
            } => {
                serde_json::to_string(&("M", at, attempt_id, target_id, answered_by, amd_ms, cause))
            }
            E::AttemptEnded {
                at,
                attempt_id,
                target_id,
                outcome,
                sip_code,
                q850_cause,
                hangup_by,
                reason,
                invite_sent_at,
                ringing_at,
                answered_at,
                ended_at,
            } => serde_json::to_string(&(
                "E",
                at,
                attempt_id,
                target_id,
                outcome,
                sip_code,
                q850_cause,
                hangup_by,
                reason,
                invite_sent_at,
                ringing_at,
                answered_at,
                ended_at,
            )),
            E::AgentResult {
                at,
                attempt_id,
                target_id,
                result,
            } => serde_json::to_string(&("R", at, attempt_id, target_id, result)),
            E::CampaignStatus {
                at,
                from,
                to,
                reason,
                by,
            } => serde_json::to_string(&("C", at, from, to, reason, by)),
            E::CampaignAbandonment {
                at,
                pacing,
                rate,
                ceiling,
                live_answered,
                abandoned,
            } => serde_json::to_string(&("B", at, pacing, rate, ceiling, live_answered, abandoned)),
        };
        json.expect("events serialize")
    }

    /// Appends an event already serialized with [`EventLog::serialize`].
    pub fn push_json(&mut self, campaign_id: &str, json: String) {
        match self.campaigns.iter_mut().find(|(c, _)| c == campaign_id) {
            Some((_, v)) => v.push(json),
            None => self.campaigns.push((campaign_id.to_string(), vec![json])),
        }
    }

    pub fn len(&self) -> usize {
        self.campaigns.iter().map(|(_, v)| v.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// Campaigns in id order (the order their rows are locked in, so that
    /// concurrent writers cannot deadlock), each with its pages' JSON.
    pub(crate) fn into_pages(mut self) -> Vec<(String, usize, Vec<String>)> {
        self.campaigns.sort_by(|a, b| a.0.cmp(&b.0));
        self.campaigns
            .into_iter()
            .map(|(c, events)| {
                let n = events.len();
                let pages = events
                    .chunks(PAGE_EVENTS)
                    .map(|chunk| {
                        let mut s = String::with_capacity(
                            chunk.iter().map(|e| e.len() + 1).sum::<usize>() + 2,
                        );
                        s.push('[');
                        for (i, e) in chunk.iter().enumerate() {
                            if i > 0 {
                                s.push(',');
                            }
                            s.push_str(e);
                        }
                        s.push(']');
                        s
                    })
                    .collect();
                (c, n, pages)
            })
            .collect()
    }
}

/// Appends an [`EventLog`] inside an open transaction `$tx` (`&mut tx`
/// derefs to the connection), at `$now`. Evaluates to the number of events
/// written (a campaign deleted meanwhile gets none).
#[macro_export]
macro_rules! append_event_pages {
    ($tx:expr, $log:expr, $now:expr) => {{
        let mut written: usize = 0;
        for (campaign, n, pages) in $log.into_pages() {
            let last: Option<i64> = sqlx::query_scalar(
                "UPDATE campaigns SET event_seq = event_seq + $2 WHERE id = $1 RETURNING event_seq",
            )
            .bind(&campaign)
            .bind(n as i64)
            .fetch_optional(&mut *$tx)
            .await?;
            let Some(last) = last else { continue };
            let mut first = last - n as i64 + 1;
            for (i, page) in pages.iter().enumerate() {
                let len = if i + 1 == pages.len() {
                    n - i * $crate::store::events::PAGE_EVENTS
                } else {
                    $crate::store::events::PAGE_EVENTS
                } as i64;
                sqlx::query(
                    "INSERT INTO event_pages (campaign_id, first_seq, last_seq, at, events) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&campaign)
                .bind(first)
                .bind(first + len - 1)
                .bind($now)
                .bind(page)
                .execute(&mut *$tx)
                .await?;
                first += len;
            }
            written += n;
        }
        written
    }};
}

/// One logged event, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub campaign_id: String,
    pub seq: i64,
    pub kind: String,
    pub at: i64,
    /// The event's own fields (times still in epoch milliseconds).
    pub fields: Map<String, Value>,
}

impl LoggedEvent {
    /// The event's id, unique across campaigns: `{campaign_id}:{seq}`, or
    /// `global:{seq}` for the global log's events (no campaign).
    pub fn id(&self) -> String {
        if self.campaign_id.is_empty() {
            format!("global:{}", self.seq)
        } else {
            format!("{}:{}", self.campaign_id, self.seq)
        }
    }

    /// The JSON shape the stream and webhooks send.
    pub fn to_json(&self) -> Value {
        let mut data = Map::with_capacity(self.fields.len());
        for (k, v) in &self.fields {
            let v = match v {
                Value::Number(n) if k.ends_with("_at") => n.as_i64().map_or(Value::Null, rfc3339),
                other => other.clone(),
            };
            data.insert(k.clone(), v);
        }
        let mut v = serde_json::json!({
            "id": self.id(),
            "seq": self.seq,
            "type": self.kind,
            "campaign_id": self.campaign_id,
            "at": rfc3339(self.at),
            "data": data,
        });
        if self.campaign_id.is_empty() {
            if let Value::Object(o) = &mut v {
                o.remove("campaign_id");
            }
        }
        v
    }
}

fn rfc3339(ms: i64) -> Value {
    Value::String(super::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Splits a stored page into events with their numbers.
fn decode_page(campaign_id: &str, first_seq: i64, text: &str) -> Result<Vec<LoggedEvent>> {
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "event page of campaign {campaign_id} at {first_seq}: {why}"
        ))
    };
    let items: Vec<Vec<Value>> = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut values = item.into_iter();
        let code = values.next().unwrap_or(Value::Null);
        let Some((_, kind, names)) = LAYOUTS.iter().find(|(c, _, _)| code == *c) else {
            return Err(corrupt(format!("unknown event code {code}")));
        };
        let at = values
            .next()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| corrupt("no time".into()))?;
        let mut flat: Vec<Value> = values.collect();
        // Fields are only ever added at the end of a layout: an event
        // written before one was added reads it as null.
        let added = ADDED_LATER
            .iter()
            .find(|(c, _)| code == *c)
            .map_or(0, |(_, n)| *n);
        if flat.len() < names.len() && flat.len() + added >= names.len() {
            flat.resize(names.len(), Value::Null);
        }
        if flat.len() != names.len() {
            return Err(corrupt(format!(
                "{kind} has {} fields, expected {}",
                flat.len(),
                names.len()
            )));
        }
        out.push(LoggedEvent {
            campaign_id: campaign_id.to_string(),
            seq: first_seq + i as i64,
            kind: kind.to_string(),
            at,
            fields: names.iter().map(|n| n.to_string()).zip(flat).collect(),
        });
    }
    Ok(out)
}

impl Store {
    /// A campaign's events numbered above `after`, oldest first, at most
    /// about `max` of them (whole pages; never fewer than one page's worth
    /// when more exist).
    pub async fn events_after(
        &self,
        campaign_id: &str,
        after: i64,
        max: usize,
    ) -> Result<Vec<LoggedEvent>> {
        let pages = (max / PAGE_EVENTS).max(1) as i64 + 1;
        let started = std::time::Instant::now();
        let rows = with_pool!(self, p => {
            let rows = sqlx::query("SELECT first_seq, events FROM event_pages WHERE campaign_id = $1 \
                                    AND last_seq > $2 ORDER BY last_seq LIMIT $3")
                .bind(campaign_id).bind(after).bind(pages).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get::<i64, _>("first_seq")?, r.try_get::<String, _>("events")?));
            }
            Ok::<_, StoreError>(out)
        })?;
        self.observe("events_read", started);
        let mut out = Vec::new();
        for (first, text) in rows {
            out.extend(
                decode_page(campaign_id, first, &text)?
                    .into_iter()
                    .filter(|e| e.seq > after),
            );
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The number of the last event a campaign logged before `at` (epoch
    /// ms): a reader of its events since `at` starts after it. Reads the
    /// campaign's pages once (the live page's chart, when it opens).
    pub async fn campaign_event_seq_before(&self, campaign_id: &str, at: i64) -> Result<i64> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE((SELECT MIN(first_seq) FROM event_pages WHERE campaign_id = $1 AND at >= $2) - 1, \
             (SELECT event_seq FROM campaigns WHERE id = $1), 0)")
            .bind(campaign_id).bind(at).fetch_one(p).await?))
    }

    /// The last committed event number of a campaign (`None`: no such campaign).
    pub async fn campaign_event_seq(&self, campaign_id: &str) -> Result<Option<i64>> {
        with_pool!(self, p => Ok(sqlx::query_scalar::<_, i64>("SELECT event_seq FROM campaigns WHERE id = $1")
            .bind(campaign_id).fetch_optional(p).await?))
    }

    /// Bumped after every commit that logged events on this node.
    pub fn log_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.log_tail.subscribe()
    }

    /// Says that events were committed.
    pub(crate) fn logged(&self, n: usize) {
        if n > 0 {
            self.metrics.events_logged.add(n as u64);
            self.log_tail.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_number_their_events_from_first_seq() {
        let mut log = EventLog::default();
        for i in 0..3 {
            log.push(
                "c1",
                &EventRecord::CampaignStatus {
                    at: i,
                    from: "draft",
                    to: "running",
                    reason: None,
                    by: "scheduler",
                },
            );
        }
        let pages = log.into_pages();
        assert_eq!(pages.len(), 1);
        let events = decode_page("c1", 7, &pages[0].2[0]).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(events[2].kind, "campaign.status");
        assert_eq!(events[2].at, 2);
        assert_eq!(events[0].id(), "c1:7");
        let json = events[0].to_json();
        assert_eq!(json["data"]["to"], "running");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_corrupt_page_is_an_error_not_a_panic() {
        assert!(decode_page("c", 1, "{not json").is_err());
        assert!(decode_page("c", 1, "[1, 2]").is_err());
        assert!(decode_page("c", 1, "[[\"Z\", 1]]").is_err());
        assert!(decode_page("c", 1, "[[\"C\", 1, \"a\"]]").is_err());
        assert!(decode_page("c", 1, "[[\"C\"]]").is_err());
        assert!(decode_page("c", 1, "[[\"T\", 1, \"t\", null, \"a\", \"b\", null]]").is_err());
    }

    #[test]
    fn a_status_change_stored_before_who_was_kept_reads_with_by_null() {
        let e = decode_page("c", 7, r#"[["C", 5, "draft", "running", null]]"#).unwrap();
        assert_eq!(e[0].fields["to"], "running");
        assert_eq!(e[0].fields["by"], Value::Null);
    }

    #[test]
    fn every_type_round_trips_with_its_field_names() {
        let mut log = EventLog::default();
        log.push(
            "c",
            &EventRecord::AttemptEnded {
                at: 5,
                attempt_id: "a",
                target_id: "t",
                outcome: "busy",
                sip_code: Some(486),
                q850_cause: None,
                hangup_by: Some("callee"),
                reason: Some("486 Busy Here"),
                invite_sent_at: Some(1),
                ringing_at: None,
                answered_at: None,
                ended_at: 5,
            },
        );
        log.push(
            "c",
            &EventRecord::Transition {
                at: 5,
                target_id: "t",
                attempt_id: Some("a"),
                from: "dialing",
                to: "busy",
                sip_code: Some(486),
                reason: None,
            },
        );
        log.push(
            "c",
            &EventRecord::AttemptStarted {
                at: 1,
                attempt_id: "a",
                target_id: "t",
                destination_index: 1,
                destination: "+15550001111",
                attempt: 2,
            },
        );
        log.push(
            "c",
            &EventRecord::AttemptAnswered {
                at: 1,
                attempt_id: "a",
                target_id: "t",
            },
        );
        log.push(
            "c",
            &EventRecord::AgentResult {
                at: 1,
                attempt_id: "a",
                target_id: "t",
                result: "completed",
            },
        );
        let pages = log.into_pages();
        let ev = decode_page("c", 1, &pages[0].2[0]).unwrap();
        let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "attempt.ended",
                "target.transition",
                "attempt.started",
                "attempt.answered",
                "agent.result"
            ]
        );
        let ended = ev[0].to_json();
        assert_eq!(ended["data"]["sip_code"], 486);
        assert_eq!(ended["data"]["reason"], "486 Busy Here");
        assert_eq!(ended["data"]["ringing_at"], Value::Null);
        assert_eq!(ended["data"]["invite_sent_at"], "1970-01-01T00:00:00.001Z");
        assert_eq!(ev[2].to_json()["data"]["destination"], "+15550001111");
        assert_eq!(ev[2].fields["attempt"], 2);
        assert_eq!(ev[4].fields["result"], "completed");
    }
}
