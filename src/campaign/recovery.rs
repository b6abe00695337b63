//! Recovery: this node's heartbeat, and closing attempts that were cut short
//! — at start (on SQLite: every open attempt; on PostgreSQL: those of dead
//! nodes) and, on PostgreSQL, whenever another node stops heartbeating. A cut
//! attempt counts as a try with outcome `interrupted` and is retried as its
//! rules say.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::apply::{call_final, completion, one_off_retry_at, Finished};
use super::attempt::ended_without_a_call;
use super::deps::SchedulerDeps;
use super::rules::retry::{decide, AttemptResult, RetryPolicy};
use crate::domain::specs::CallRequest;
use crate::domain::{Outcome, TargetState};
use crate::store::recording::OpenAttempt;
use crate::store::{Backend, Store, StoreError};

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent for this long is dead: its open attempts are closed by a live node.
const NODE_DEAD_AFTER_MS: i64 = 15_000;
/// Why a recovered attempt ended.
const INTERRUPTED: &str = "herald stopped during the call";

/// Registers this node and closes the attempts a crash left open.
pub(crate) async fn recover_at_start(deps: &SchedulerDeps) -> Result<(), StoreError> {
    let now = deps.clock.now();
    deps.store
        .register_node(&deps.node_id, now.timestamp_millis())
        .await?;
    match deps.store.backend() {
        Backend::Sqlite => {
            recover_interrupted(&deps.store, None, now).await?;
        }
        Backend::Postgres => recover_dead_nodes(&deps.store, now).await?,
    }
    Ok(())
}

/// Keeps this node's heartbeat and, on PostgreSQL, closes dead nodes' attempts.
pub(crate) async fn liveness(deps: SchedulerDeps, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = deps.clock.now();
        let ms = now.timestamp_millis();
        match deps.store.heartbeat(&deps.node_id, ms).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(node = %deps.node_id, "this node was declared dead by another; registering again");
                let _ = deps.store.register_node(&deps.node_id, ms).await;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        if deps.store.backend() == Backend::Postgres {
            if let Err(e) = recover_dead_nodes(&deps.store, now).await {
                tracing::warn!(error = %e, "recovering dead nodes' attempts failed");
            }
            match deps.store.live_nodes(ms - NODE_DEAD_AFTER_MS).await {
                Ok(n) => {
                    let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
                    if n != deps.share.nodes() {
                        tracing::info!(nodes = n, "live nodes changed: limits are shared by them");
                        deps.share.set_nodes(n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "counting live nodes failed"),
            }
        }
    }
}

/// Closes the open attempts of nodes that stopped heartbeating, then forgets them.
async fn recover_dead_nodes(store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
    let dead = store
        .dead_nodes(now.timestamp_millis() - NODE_DEAD_AFTER_MS)
        .await?;
    if dead.is_empty() {
        return Ok(());
    }
    let closed = recover_interrupted(store, Some(&dead), now).await?;
    store.forget_nodes(&dead).await?;
    tracing::warn!(nodes = ?dead, closed, "nodes stopped heartbeating; their open attempts were closed as interrupted");
    Ok(())
}

/// Attempts still open (of every node, or of `nodes`) were cut short: each
/// counts as a try with outcome `interrupted`, and its target leaves `dialing`.
pub async fn recover_interrupted(
    store: &Store,
    nodes: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let open = store.open_attempts(nodes).await?;
    let mut batch = Vec::new();
    for a in &open {
        let Some(target_id) = &a.target_id else {
            if a.campaign_id.is_none() {
                recover_one_off(store, a, now).await?;
            }
            continue;
        };
        let target = match store.get_target(target_id).await {
            Ok(t) => t,
            Err(StoreError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let policy = match &a.campaign_id {
            Some(c) => campaign_policy(store, c).await?,
            None => RetryPolicy::default(),
        };
        let ended = ended_without_a_call(
            Outcome::Interrupted,
            INTERRUPTED.into(),
            a.answered_at.map(crate::store::from_ms),
            now,
        );
        let index = a.destination_index.unwrap_or(0).max(0) as usize;
        let decision = decide(
            &target.destinations,
            index,
            target.try_count_max.map(|n| n as u32),
            target.expires_at.map(crate::store::from_ms),
            &AttemptResult {
                outcome: Outcome::Interrupted,
                agent_result: None,
                retry_after: None,
            },
            &policy,
            now,
            rand::thread_rng().gen(),
        );
        let number = target
            .destinations
            .get(index)
            .map(|d| d.target.clone())
            .unwrap_or_default();
        let f = Finished {
            call_id: &a.call_id,
            target_id,
            campaign_id: a.campaign_id.as_deref(),
            number: &number,
            destination_index: index,
            answer_recorded: target.state == TargetState::Answered,
            ended: &ended,
            sip_call_id: None,
            agent_result: None,
        };
        batch.push(completion(&f, &decision));
    }
    store
        .record_completions(&batch, now.timestamp_millis())
        .await?;
    if !open.is_empty() {
        tracing::warn!(
            count = open.len(),
            "closed attempts left open by a previous run as interrupted"
        );
    }
    Ok(open.len())
}

/// A one-off call cut short: a try, retried if it has retries left.
async fn recover_one_off(
    store: &Store,
    a: &OpenAttempt,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (id, answered_at) = (a.call_id.as_str(), a.answered_at);
    let call = store.get_call(id).await?;
    let attempt = a.attempt.max(1) as u32;
    // A request that does not read still gets its call closed, with the
    // defaults (no retry).
    let request = CallRequest::deserialize(&call.request).unwrap_or_else(|e| {
        tracing::warn!(call = %id, error = %e, "a one-off call's stored request does not read");
        CallRequest::default()
    });
    let retry_at = one_off_retry_at(
        Outcome::Interrupted,
        attempt,
        request.max_retries,
        Duration::from_secs(request.retry_delay.into()),
        None,
        now,
    );
    let status = if retry_at.is_some() {
        "scheduled"
    } else {
        "failed"
    };
    let ended = ended_without_a_call(
        Outcome::Interrupted,
        INTERRUPTED.into(),
        answered_at.map(crate::store::from_ms),
        now,
    );
    let f = call_final(&ended, status, None, None);
    store
        .finish_one_off(
            id,
            a.attempt,
            &f,
            status,
            retry_at.map(|t| t.timestamp_millis()),
        )
        .await
}

/// The retry policy of a campaign's outplan (the default when it is gone).
pub(crate) async fn campaign_policy(
    store: &Store,
    campaign_id: &str,
) -> Result<RetryPolicy, StoreError> {
    let c = match store.get_campaign(campaign_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(RetryPolicy::default()),
        Err(e) => return Err(e),
    };
    Ok(RetryPolicy::from_outplan(
        &store.get_outplan(&c.outplan_id).await?,
    ))
}
