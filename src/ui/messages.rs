//! Messages: the templates (listed; edited in `template_editor`) and the
//! sent messages of a channel by status (REST's list and filter).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::pages::{render, to_login};
use super::utc_time as when;
use super::{asset_names, session, AssetNames, UiState};
use crate::api::error::ApiError;
use crate::store::messages::MessageFilter;
use crate::store::PageRequest;

const CHANNELS: [&str; 3] = ["email", "sms", "whatsapp"];
const STATUSES: [&str; 7] = [
    "queued",
    "sending",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "cancelled",
];

struct TemplateItem {
    id: String,
    code: String,
    name: String,
    channel: String,
    status: String,
    version: i64,
}

struct MessageItem {
    id: String,
    created: String,
    to: String,
    status: String,
    reason: String,
    template: String,
    tries: i64,
}

#[derive(Template)]
#[template(path = "messages.html", config = "src/ui/askama.toml")]
struct MessagesPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    notice: Option<String>,
    templates: Vec<TemplateItem>,
    /// (channel, [(status, count)]) for every channel with messages.
    counts: Vec<(String, Vec<(String, i64)>)>,
    channel: String,
    status: String,
    channels: Vec<(&'static str, bool)>,
    statuses: Vec<(&'static str, bool)>,
    messages: Vec<MessageItem>,
    next: Option<String>,
}

pub(super) async fn messages(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let channel = q
        .get("channel")
        .map(String::as_str)
        .filter(|c| CHANNELS.contains(c))
        .unwrap_or("sms");
    let status = q
        .get("status")
        .map(String::as_str)
        .filter(|st| STATUSES.contains(st));
    let all = PageRequest {
        size: 500,
        after: None,
    };
    let templates = s
        .store
        .list_templates(None, None, &all)
        .await?
        .items
        .into_iter()
        .map(|t| TemplateItem {
            id: t.id,
            code: t.code,
            name: t.name,
            channel: t.channel,
            status: t.status,
            version: t.version,
        })
        .collect();
    let mut counts: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for (c, st, n) in s.store.message_counts().await? {
        match counts.iter_mut().find(|(k, _)| *k == c) {
            Some((_, v)) => v.push((st, n)),
            None => counts.push((c, vec![(st, n)])),
        }
    }
    let page = PageRequest {
        size: 100,
        after: q.get("after").cloned(),
    };
    let filter = MessageFilter {
        status,
        template_id: None,
        recipient: None,
        created_after: None,
        created_before: None,
    };
    let list = s.store.list_messages(channel, &filter, &page).await?;
    let messages = list
        .items
        .into_iter()
        .map(|m| MessageItem {
            created: when(m.created_at),
            to: m.recipient,
            status: m.status,
            reason: m.reason.unwrap_or_default(),
            template: m
                .template_id
                .map(|t| format!("{t} v{}", m.template_version.unwrap_or(1)))
                .unwrap_or_else(|| "free text".into()),
            tries: m.tries,
            id: m.id,
        })
        .collect();
    Ok(render(&MessagesPage {
        assets: asset_names(),
        csrf: sess.row.csrf,
        key_name: sess.row.key_name,
        notice: q.get("notice").cloned(),
        templates,
        counts,
        channel: channel.to_string(),
        status: status.unwrap_or("").to_string(),
        channels: CHANNELS.iter().map(|&c| (c, c == channel)).collect(),
        statuses: STATUSES
            .iter()
            .map(|&st| (st, Some(st) == status))
            .collect(),
        messages,
        next: list.next_page_token,
    })?
    .into_response())
}
