//! Routers for the named-document resources: outdials, outplans and agents.
//! Each is CRUD over one table with its own parser; PATCH is a JSON merge
//! patch over the stored document, parsed again as a whole. An agent is
//! also built before it is stored (a script's prompts loaded, off the
//! request's thread), so a script that does not load is refused at once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ts, IdPath, JsonBody, ListQuery};
use super::openapi::ApiRouter;
use crate::agent::{Agent, AgentRuntime};
use crate::domain::fields::{merge_patch, Fields, MAX_DETAIL_CHARS};
use crate::domain::specs::{to_document, AgentSpec, Outplan};
use crate::domain::{FieldError, TargetState};
use crate::store::documents::{Doc, DocTable, AGENTS, OUTDIALS, OUTPLANS};
use crate::store::Store;

/// A parsed document: its name and the JSON stored.
struct Parsed {
    name: String,
    document: Value,
    /// For agents: the configuration, to build the agent from.
    agent: Option<AgentSpec>,
}

type Parser = fn(&Value) -> Result<Parsed, FieldError>;

#[derive(Clone)]
struct DocState {
    store: Store,
    table: DocTable,
    parse: Parser,
    /// For agents: builds each configuration before it is stored.
    agents: Option<AgentRuntime>,
}

/// An outdial's name and stored document, checked as `POST /v1/outdials`
/// checks them.
pub(crate) fn outdial_document(v: &Value) -> Result<(String, Value), FieldError> {
    parse_outdial(v).map(|p| (p.name, p.document))
}

/// An outdial: a name and an optional free-text detail.
fn parse_outdial(v: &Value) -> Result<Parsed, FieldError> {
    let f = Fields::new(v, "")?;
    f.deny_unknown(&["name", "detail"])?;
    let name = f.name("name", 200)?;
    let document = json!({
        "name": name,
        "detail": f.text_opt("detail", MAX_DETAIL_CHARS)?.unwrap_or(""),
    });
    Ok(Parsed {
        name,
        document,
        agent: None,
    })
}

fn parse_outplan(v: &Value) -> Result<Parsed, FieldError> {
    let plan = Outplan::parse(v)?;
    Ok(Parsed {
        document: to_document(&plan),
        name: plan.name,
        agent: None,
    })
}

/// An agent configuration; its script is compiled when the agent is built.
fn parse_agent(v: &Value) -> Result<Parsed, FieldError> {
    let agent = AgentSpec::parse(v)?;
    Ok(Parsed {
        document: to_document(&agent),
        name: agent.name.clone(),
        agent: Some(agent),
    })
}

pub fn outdials(store: Store) -> ApiRouter {
    router(
        outdial_routes::routes(),
        store,
        OUTDIALS,
        parse_outdial,
        None,
    )
}

pub fn outplans(store: Store) -> ApiRouter {
    router(
        outplan_routes::routes(),
        store,
        OUTPLANS,
        parse_outplan,
        None,
    )
}

pub fn agents(store: Store, runtime: AgentRuntime) -> ApiRouter {
    router(
        agent_routes::routes(),
        store,
        AGENTS,
        parse_agent,
        Some(runtime),
    )
}

/// One resource's five routes over the shared handlers, each with its
/// description (a route's path and bodies are its own, the code is shared).
macro_rules! document_routes {
    ($module:ident, $tag:tt, $base:tt, $item:tt, $input:ident, $output:ident,
     [$create:tt, $list:tt, $read:tt, $update:tt, $remove:tt]) => {
        mod $module {
            use super::*;
            use crate::api::openapi::schemas::{$input, $output, ErrorRef, MergePatch, Page};
            use crate::api::openapi::Paging;

            #[doc = $create]
            #[utoipa::path(post, path = $base, tag = $tag, request_body = $input,
                responses((status = 201, description = "Created.", body = $output)))]
            pub(super) async fn create(
                s: State<DocState>,
                body: JsonBody,
            ) -> ApiResult<(StatusCode, Json<Value>)> {
                super::create(s, body).await
            }

            #[doc = $list]
            #[utoipa::path(get, path = $base, tag = $tag, params(Paging),
                responses((status = 200, description = "A page.", body = Page<$output>)))]
            pub(super) async fn list(
                s: State<DocState>,
                q: Query<HashMap<String, String>>,
            ) -> ApiResult<Json<Value>> {
                super::list(s, q).await
            }

            #[doc = $read]
            #[utoipa::path(get, path = $item, tag = $tag,
                responses((status = 200, description = "Found.", body = $output)))]
            pub(super) async fn read(s: State<DocState>, id: IdPath) -> ApiResult<Json<Value>> {
                super::read(s, id).await
            }

            #[doc = $update]
            #[utoipa::path(patch, path = $item, tag = $tag, request_body = MergePatch,
                responses((status = 200, description = "Changed.", body = $output)))]
            pub(super) async fn update(
                s: State<DocState>,
                id: IdPath,
                patch: JsonBody,
            ) -> ApiResult<Json<Value>> {
                super::update(s, id, patch).await
            }

            #[doc = $remove]
            #[utoipa::path(delete, path = $item, tag = $tag,
                responses((status = 204, description = "Deleted."),
                    (status = 409, description = "A campaign uses it (or, for an outdial, a target is being dialed).", body = ErrorRef)))]
            pub(super) async fn remove(s: State<DocState>, id: IdPath) -> ApiResult<StatusCode> {
                super::remove(s, id).await
            }

            pub(super) fn routes() -> ApiRouter<DocState> {
                ApiRouter::new()
                    .routes(routes!(list, create))
                    .routes(routes!(read, update, remove))
            }
        }
    };
}

document_routes!(
    outdial_routes,
    "outdials",
    "/outdials",
    "/outdials/{id}",
    OutdialInput,
    Outdial,
    [
        "Creates an outdial: a list of targets to call.",
        "Lists outdials, newest first.",
        "Reads an outdial, with its targets counted by state.",
        "Changes an outdial (a JSON merge patch).",
        "Deletes an outdial and its targets; not while a campaign dials it."
    ]
);
document_routes!(
    outplan_routes,
    "outplans",
    "/outplans",
    "/outplans/{id}",
    OutplanInput,
    Outplan,
    [
        "Creates an outplan: how long to ring, how often to try, how long to wait between tries.",
        "Lists outplans, newest first.",
        "Reads an outplan.",
        "Changes an outplan (a JSON merge patch, checked as a whole).",
        "Deletes an outplan no campaign uses."
    ]
);
document_routes!(
    agent_routes, "agents", "/agents", "/agents/{id}", AgentInput, Agent,
    [
        "Creates an agent: a WebSocket bot, a SIP agent or a script; it is built (a script loaded) before it is stored.",
        "Lists agents, newest first.",
        "Reads an agent.",
        "Changes an agent (a JSON merge patch, checked and built as a whole).",
        "Deletes an agent no campaign uses."
    ]
);

fn router(
    routes: ApiRouter<DocState>,
    store: Store,
    table: DocTable,
    parse: Parser,
    agents: Option<AgentRuntime>,
) -> ApiRouter {
    routes.with_state(DocState {
        store,
        table,
        parse,
        agents,
    })
}

pub fn doc_json(d: &Doc) -> Value {
    let mut v = d.spec.clone();
    v["id"] = Value::String(d.id.clone());
    v["created_at"] = ts(d.created_at);
    v["updated_at"] = ts(d.updated_at);
    v
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// For agents: builds the agent of a parsed configuration (loading a
/// script's prompts), so that one that does not load is refused before it
/// is stored.
async fn build_agent(s: &DocState, p: &Parsed) -> ApiResult<Option<Arc<dyn Agent>>> {
    match (&s.agents, &p.agent) {
        (Some(rt), Some(spec)) => Ok(Some(rt.build_checked(spec).await?)),
        _ => Ok(None),
    }
}

/// Creates an agent as `POST /v1/agents` does: checked, built, stored and
/// kept by the runtime (the console's new-campaign form makes one).
pub(crate) async fn create_agent(
    store: &Store,
    runtime: &AgentRuntime,
    body: &Value,
) -> ApiResult<Doc> {
    let s = DocState {
        store: store.clone(),
        table: AGENTS,
        parse: parse_agent,
        agents: Some(runtime.clone()),
    };
    let p = parse_agent(body)?;
    let built = build_agent(&s, &p).await?;
    let doc = store
        .insert_doc(AGENTS, &p.name, &p.document, now_ms())
        .await?;
    keep_agent(&s, &doc, p, built);
    Ok(doc)
}

/// Keeps a built agent as the stored configuration's.
fn keep_agent(s: &DocState, doc: &Doc, p: Parsed, built: Option<Arc<dyn Agent>>) {
    if let (Some(rt), Some(spec), Some(agent)) = (&s.agents, p.agent, built) {
        rt.keep(&doc.id, spec, agent);
    }
}

async fn create(
    State(s): State<DocState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = (s.parse)(&body)?;
    let built = build_agent(&s, &p).await?;
    let doc = s
        .store
        .insert_doc(s.table, &p.name, &p.document, now_ms())
        .await?;
    keep_agent(&s, &doc, p, built);
    Ok((StatusCode::CREATED, Json(doc_json(&doc))))
}

async fn list(
    State(s): State<DocState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = ListQuery(q).page()?;
    let page = s.store.list_docs(s.table, &page).await?;
    Ok(Json(
        serde_json::to_value(page.map(|d| doc_json(&d))).expect("page serializes"),
    ))
}

async fn read(State(s): State<DocState>, IdPath(id): IdPath) -> ApiResult<Json<Value>> {
    let doc = s
        .store
        .get_doc(s.table, &id)
        .await
        .map_err(|e| ApiError::from_store(e, s.table.noun, &id))?;
    let mut v = doc_json(&doc);
    if s.table == OUTDIALS {
        let mut counts: serde_json::Map<String, Value> = TargetState::ALL
            .iter()
            .map(|st| (st.as_str().to_string(), json!(0)))
            .collect();
        let mut total = 0;
        for (state, n) in s.store.count_targets_by_state(&id).await? {
            counts.insert(state.as_str().to_string(), json!(n));
            total += n;
        }
        v["target_count"] = json!(total);
        v["target_counts"] = Value::Object(counts);
    }
    Ok(Json(v))
}

async fn update(
    State(s): State<DocState>,
    IdPath(id): IdPath,
    JsonBody(patch): JsonBody,
) -> ApiResult<Json<Value>> {
    Fields::new(&patch, "")?;
    let doc = s
        .store
        .get_doc(s.table, &id)
        .await
        .map_err(|e| ApiError::from_store(e, s.table.noun, &id))?;
    let mut merged = doc.spec.clone();
    merge_patch(&mut merged, &patch);
    let p = (s.parse)(&merged)?;
    let built = build_agent(&s, &p).await?;
    let doc = s
        .store
        .update_doc(s.table, &id, &p.name, &p.document, now_ms())
        .await
        .map_err(|e| ApiError::from_store(e, s.table.noun, &id))?;
    keep_agent(&s, &doc, p, built);
    Ok(Json(doc_json(&doc)))
}

async fn remove(State(s): State<DocState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    let done = if s.table == OUTDIALS {
        s.store.delete_outdial(&id).await
    } else {
        s.store.delete_doc(s.table, &id).await
    };
    done.map_err(|e| ApiError::from_store(e, s.table.noun, &id))?;
    Ok(StatusCode::NO_CONTENT)
}
