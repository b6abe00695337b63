//! Sorting a pass of delivery reports: reading each report's message, and
//! deciding for each report whether it is applied (its message is `sent`),
//! kept for later (its message is still `sending`, or unknown) or dropped
//! (already final); the keeping statement.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::{address_key, Apply};
use crate::store::bulk::{self, Bulk, Column};
use crate::store::messages::ReportRecord;

/// A report's message: (id, channel, status, recipient, provider id).
pub(super) type FoundMessage = (String, String, String, String, Option<String>);

/// Reads every report's message (by herald id, or by channel and provider
/// id), in one statement.
pub(super) fn report_lookup<DB: Bulk>(reports: &[ReportRecord]) -> QueryBuilder<'_, DB> {
    let mut qb = QueryBuilder::new(
        "SELECT id, channel, status, recipient, provider_id FROM messages WHERE ",
    );
    let ids: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.message_id.as_deref())
        .collect();
    let pids: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.provider_id.as_deref())
        .collect();
    let channels: Vec<&str> = reports
        .iter()
        .map(|r| r.channel.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Only non-empty lists: SQLite scans the table for `id IN ()`.
    match (ids.is_empty(), pids.is_empty()) {
        (true, true) => {
            qb.push("1 = 0");
        }
        (false, true) => bulk::is_in(&mut qb, "id", ids),
        (true, false) => {
            bulk::is_in(&mut qb, "channel", channels);
            qb.push(" AND ");
            bulk::is_in(&mut qb, "provider_id", pids);
        }
        (false, false) => {
            qb.push("(");
            bulk::is_in(&mut qb, "id", ids);
            qb.push(") OR (");
            bulk::is_in(&mut qb, "channel", channels);
            qb.push(" AND ");
            bulk::is_in(&mut qb, "provider_id", pids);
            qb.push(")");
        }
    }
    qb
}

/// What to do with each report, given the messages found: apply it (its
/// message is `sent`; one report per message), keep it (its message is still
/// `sending`, or unknown; once per provider id), or drop it (its message is
/// already final).
pub(super) fn sort_reports<'a>(
    reports: &'a [ReportRecord],
    found: &'a [FoundMessage],
) -> (Vec<Apply<'a>>, Vec<&'a ReportRecord>) {
    let by_id: HashMap<&str, &FoundMessage> = found.iter().map(|m| (m.0.as_str(), m)).collect();
    let by_provider: HashMap<(&str, &str), &FoundMessage> = found
        .iter()
        .filter_map(|m| m.4.as_deref().map(|pid| ((m.1.as_str(), pid), m)))
        .collect();
    let mut applies = Vec::new();
    let mut applied = HashSet::new();
    let mut keeps: Vec<&ReportRecord> = Vec::new();
    let mut kept_pids = HashSet::new();
    for r in reports {
        let message = match (&r.message_id, &r.provider_id) {
            (Some(id), _) => by_id.get(id.as_str()).filter(|m| m.1 == r.channel).copied(),
            (None, Some(pid)) => by_provider
                .get(&(r.channel.as_str(), pid.as_str()))
                .copied(),
            (None, None) => continue,
        };
        match message {
            Some((id, channel, status, recipient, _)) if status == "sent" => {
                if applied.insert(id.as_str()) {
                    applies.push(Apply {
                        id,
                        channel,
                        recipient,
                        status: r.status,
                        code: r.code.as_deref(),
                        text: r.text.as_deref(),
                        suppress: r.suppress,
                    });
                }
            }
            Some((_, _, status, _, _)) if status != "sending" => {}
            _ => {
                let first = r
                    .provider_id
                    .as_ref()
                    .is_none_or(|pid| kept_pids.insert((r.channel.as_str(), pid.as_str())));
                if first {
                    keeps.push(r);
                }
            }
        }
    }
    (applies, keeps)
}

/// Each kept report's address key (channel-normalised), if it has one.
pub(super) fn keep_addresses(keeps: &[&ReportRecord]) -> Vec<Option<String>> {
    keeps
        .iter()
        .map(|r| r.address.as_deref().map(|a| address_key(&r.channel, a)))
        .collect()
}

/// Keeps reports for later, once per provider id however often the peer
/// sends it.
pub(super) fn keep_inserts<'a, DB: Bulk>(
    keeps: &[&'a ReportRecord],
    addresses: &'a [Option<String>],
    now: i64,
) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "INSERT INTO message_reports (channel, message_id, provider_id, address, \
         status, code, text, suppress, received_at) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, ",
    );
    DB::bind_int8(&mut qb, now);
    qb.push(" FROM ");
    bulk::rows(
        &mut qb,
        vec![
            Column::Text(keeps.iter().map(|r| Some(r.channel.as_str())).collect()),
            Column::Text(keeps.iter().map(|r| r.message_id.as_deref()).collect()),
            Column::Text(keeps.iter().map(|r| r.provider_id.as_deref()).collect()),
            Column::Text(addresses.iter().map(Option::as_deref).collect()),
            Column::Text(keeps.iter().map(|r| Some(r.status)).collect()),
            Column::Text(keeps.iter().map(|r| r.code.as_deref()).collect()),
            Column::Text(keeps.iter().map(|r| r.text.as_deref()).collect()),
            Column::Int(keeps.iter().map(|r| Some(r.suppress as i32)).collect()),
        ],
    );
    qb.push(
        " WHERE NOT EXISTS (SELECT 1 FROM message_reports k \
         WHERE k.channel = v.column1 AND k.provider_id = v.column3)",
    );
    qb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        message_id: Option<&str>,
        provider_id: Option<&str>,
        status: &'static str,
    ) -> ReportRecord {
        ReportRecord {
            channel: "sms".into(),
            message_id: message_id.map(str::to_string),
            provider_id: provider_id.map(str::to_string),
            status,
            code: None,
            text: None,
            suppress: false,
            address: None,
        }
    }

    /// Which reports are applied, kept or dropped, by the state of the
    /// message each names.
    #[test]
    fn reports_are_applied_kept_or_dropped_by_their_message() {
        let found: Vec<FoundMessage> = vec![
            (
                "m-sent".into(),
                "sms".into(),
                "sent".into(),
                "+1555".into(),
                Some("p-sent".into()),
            ),
            (
                "m-sending".into(),
                "sms".into(),
                "sending".into(),
                "+1556".into(),
                None,
            ),
            (
                "m-final".into(),
                "sms".into(),
                "delivered".into(),
                "+1557".into(),
                Some("p-final".into()),
            ),
            (
                "m-mail".into(),
                "email".into(),
                "sent".into(),
                "a@b".into(),
                None,
            ),
        ];
        let reports = vec![
            record(None, Some("p-sent"), "delivered"),    // 0: applied
            record(Some("m-sent"), None, "failed"),       // 1: the same message again: not twice
            record(Some("m-sending"), None, "delivered"), // 2: kept (its send not recorded yet)
            record(None, Some("p-unknown"), "delivered"), // 3: kept (overtook its send)
            record(None, Some("p-unknown"), "delivered"), // 4: the same provider id: kept once
            record(None, Some("p-final"), "failed"),      // 5: dropped (already final)
            record(Some("m-mail"), None, "delivered"), // 6: another channel's id: kept, not applied
            record(None, None, "delivered"),           // 7: names nothing: dropped
        ];
        let (applies, keeps) = sort_reports(&reports, &found);
        let applied: Vec<(&str, &str)> = applies.iter().map(|a| (a.id, a.status)).collect();
        assert_eq!(applied, vec![("m-sent", "delivered")]);
        let kept: Vec<usize> = keeps
            .iter()
            .map(|k| reports.iter().position(|r| std::ptr::eq(r, *k)).unwrap())
            .collect();
        assert_eq!(kept, vec![2, 3, 6]);
    }
}
