//! The new-campaign form: picks a list, picks or creates a retry plan and
//! an agent (a WebSocket bot), the trunk, the calling window with its time
//! zone and days, a daily start, the pacing and the priority. Everything is
//! checked by the same rules as REST (`CampaignSpec`, `Outplan`,
//! `AgentSpec`, the references); each error is shown beside the field that
//! caused it, and nothing is created until the whole form is valid.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Map, Value};

use super::pages::{form_page, mutation, to_login};
use super::{asset_names, now_ms, session, AssetNames, UiState};
use crate::api::campaigns::{check_campaign_refs, fields};
use crate::api::documents::create_agent;
use crate::api::error::ApiError;
use crate::domain::specs::{to_document, AgentSpec, CampaignSpec};
use crate::domain::FieldError;
use crate::store::documents::{AGENTS, OUTDIALS, OUTPLANS};
use crate::store::PageRequest;

const DAYS: [(&str, &str); 7] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
];

#[derive(Template)]
#[template(path = "new_campaign.html", config = "src/ui/askama.toml")]
struct NewCampaignPage {
    assets: AssetNames,
    csrf: String,
    key_name: String,
    lists: Vec<(String, String)>,
    plans: Vec<(String, String)>,
    agents: Vec<(String, String)>,
    trunks: Vec<String>,
    days: [(&'static str, &'static str); 7],
    values: HashMap<String, String>,
    chosen_days: Vec<String>,
    errors: Vec<(String, String)>,
}

impl NewCampaignPage {
    fn val(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }

    fn day(&self, d: &str) -> bool {
        self.chosen_days.iter().any(|c| c == d)
    }

    /// The error of field `f` (or of one under it).
    fn err(&self, f: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(k, _)| k == f || k.starts_with(&format!("{f}.")))
            .map(|(_, m)| m.as_str())
    }
}

async fn names(
    s: &UiState,
    t: crate::store::documents::DocTable,
) -> Result<Vec<(String, String)>, ApiError> {
    let page = PageRequest {
        size: 200,
        after: None,
    };
    Ok(s.store
        .list_docs(t, &page)
        .await?
        .items
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect())
}

async fn form(
    s: &UiState,
    csrf: String,
    key_name: String,
    values: HashMap<String, String>,
    chosen_days: Vec<String>,
    errors: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let invalid = !errors.is_empty();
    form_page(
        &NewCampaignPage {
            assets: asset_names(),
            csrf,
            key_name,
            lists: names(s, OUTDIALS).await?,
            plans: names(s, OUTPLANS).await?,
            agents: names(s, AGENTS).await?,
            trunks: s.trunks.to_vec(),
            days: DAYS,
            values,
            chosen_days,
            errors,
        },
        invalid,
    )
}

pub(super) async fn new_form(
    State(s): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(sess) = session(&s, &headers).await? else {
        return Ok(to_login());
    };
    let mut values: HashMap<String, String> = [
        ("priority", "normal"),
        ("outplan_id", "new"),
        ("plan_tries", "3"),
        ("plan_retry_minutes", "30"),
        ("plan_dial_timeout_s", "30"),
        ("agent_id", "new"),
        ("timezone", "America/New_York"),
        ("start", "09:00"),
        ("end", "20:00"),
        ("calls_per_second", "5"),
        ("max_concurrent_calls", "10"),
        ("trunk", "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(od) = q.get("outdial_id") {
        values.insert("outdial_id".into(), od.clone());
    }
    let weekdays = DAYS[..5].iter().map(|(d, _)| d.to_string()).collect();
    form(
        &s,
        sess.row.csrf,
        sess.row.key_name,
        values,
        weekdays,
        Vec::new(),
    )
    .await
}

/// A field error as the form shows it.
fn said(e: FieldError) -> (String, String) {
    (e.field, e.reason)
}

/// An API error as the form shows it: beside its field when it names one.
fn api_said(e: ApiError) -> (String, String) {
    let field = e
        .details
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("(form)")
        .to_string();
    (field, e.message)
}

pub(super) async fn create(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let one = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let sess = match mutation(&s, &headers, &one("csrf")).await {
        Ok(sess) => sess,
        Err(r) => return Ok(r),
    };
    let days: Vec<String> = pairs
        .iter()
        .filter(|(n, _)| n == "days")
        .map(|(_, v)| v.clone())
        .collect();
    let values: HashMap<String, String> = pairs
        .iter()
        .filter(|(n, _)| n != "csrf" && n != "days")
        .map(|(n, v)| (n.clone(), v.trim().to_string()))
        .collect();
    let mut errors = Vec::new();

    // The campaign's own fields, with stand-ins for a plan or agent made below.
    let number = |k: &str| -> Value {
        let v = one(k);
        v.parse::<u64>()
            .map(Value::from)
            .or_else(|_| v.parse::<f64>().map(Value::from))
            .unwrap_or(Value::String(v))
    };
    let mut c = Map::new();
    c.insert("name".into(), json!(one("name")));
    c.insert("outdial_id".into(), json!(one("outdial_id")));
    c.insert("outplan_id".into(), json!(one("outplan_id")));
    c.insert("agent_id".into(), json!(one("agent_id")));
    c.insert("trunk".into(), json!(one("trunk")));
    c.insert("priority".into(), json!(one("priority")));
    c.insert("calls_per_second".into(), number("calls_per_second"));
    c.insert(
        "max_concurrent_calls".into(),
        number("max_concurrent_calls"),
    );
    if !one("timezone").is_empty() || !days.is_empty() {
        c.insert(
            "calling_window".into(),
            json!({"timezone": one("timezone"), "days": days, "start": one("start"), "end": one("end")}),
        );
    }
    if !one("daily_start").is_empty() {
        c.insert(
            "schedule".into(),
            json!({"daily_start": one("daily_start")}),
        );
    }
    let mut campaign = Value::Object(c);
    if let Err(e) = CampaignSpec::parse(&campaign) {
        errors.push(said(e));
    }
    let plan = (one("outplan_id") == "new").then(|| {
        let minutes = one("plan_retry_minutes").parse::<u64>().ok();
        let retry =
            minutes.map(|m| json!({"busy_s": m * 60, "no_answer_s": m * 60, "failed_s": m * 60}));
        json!({"name": format!("{} retries", one("name")), "try_count_max": number("plan_tries"),
               "dial_timeout_s": number("plan_dial_timeout_s"),
               "retry": retry.unwrap_or_else(|| json!(one("plan_retry_minutes")))})
    });
    if let Some(p) = &plan {
        if let Err(e) = crate::domain::specs::Outplan::parse(p) {
            errors.push(said(e));
        }
    }
    let agent = (one("agent_id") == "new").then(|| {
        json!({"name": format!("{} bot", one("name")), "kind": "media_stream", "url": one("agent_url")})
    });
    if let Some(a) = &agent {
        if let Err(e) = AgentSpec::parse(a) {
            errors.push(said(e));
        }
    }
    if errors.is_empty() {
        // The references that exist already (a plan or agent made here is
        // checked once made).
        let spec = CampaignSpec::parse(&campaign)?;
        if let Err(e) = check_partial(&s, &spec, plan.is_none(), agent.is_none()).await {
            errors.push(api_said(e));
        }
    }
    if !errors.is_empty() {
        return form(&s, sess.row.csrf, sess.row.key_name, values, days, errors).await;
    }
    if let Some(p) = plan {
        let parsed = crate::domain::specs::Outplan::parse(&p)?;
        let doc = s
            .store
            .insert_doc(OUTPLANS, &parsed.name, &to_document(&parsed), now_ms())
            .await?;
        campaign["outplan_id"] = json!(doc.id);
    }
    if let Some(a) = agent {
        match create_agent(&s.store, &s.runtime, &a).await {
            Ok(doc) => campaign["agent_id"] = json!(doc.id),
            Err(e) => {
                let (_, m) = api_said(e);
                let errors = vec![("url".to_string(), m)];
                return form(&s, sess.row.csrf, sess.row.key_name, values, days, errors).await;
            }
        }
    }
    let spec = CampaignSpec::parse(&campaign)?;
    if let Err(e) = check_campaign_refs(&s.store, &s.trunks, &spec).await {
        return form(
            &s,
            sess.row.csrf,
            sess.row.key_name,
            values,
            days,
            vec![api_said(e)],
        )
        .await;
    }
    let row = s.store.insert_campaign(&fields(&spec), now_ms()).await?;
    let notice = format!("Created {}: start it when ready.", row.name);
    Ok(Redirect::to(&format!(
        "/ui/campaigns/{}?notice={}",
        row.id,
        form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
    ))
    .into_response())
}

/// The references of a form whose plan or agent is not made yet: the list
/// and trunk always, the plan and agent when they were picked.
async fn check_partial(
    s: &UiState,
    spec: &CampaignSpec,
    plan_picked: bool,
    agent_picked: bool,
) -> Result<(), ApiError> {
    let found = |table, id: &str, field: &'static str| {
        let store = s.store.clone();
        let id = id.to_string();
        async move {
            match store.get_doc(table, &id).await {
                Ok(_) => Ok(()),
                Err(crate::store::StoreError::NotFound) => Err(ApiError::from(FieldError::new(
                    field,
                    format!("no {} with id {id:?}", table.noun),
                ))),
                Err(e) => Err(e.into()),
            }
        }
    };
    found(OUTDIALS, &spec.outdial_id, "outdial_id").await?;
    if plan_picked {
        found(OUTPLANS, &spec.outplan_id, "outplan_id").await?;
    }
    if agent_picked {
        found(AGENTS, &spec.agent_id, "agent_id").await?;
    }
    if !s.trunks.contains(&spec.trunk) {
        return Err(FieldError::new(
            "trunk",
            format!("no trunk named {:?} in the configuration", spec.trunk),
        )
        .into());
    }
    Ok(())
}
