//! Campaign fallback messages: a target of a campaign that names a
//! `fallback` and that ended `failed` with its call attempts spent gets
//! that message (an SMS to its first phone number, or an e-mail to its
//! `email` variable) rendered from the template with its variables (and its
//! name as `name`). The
//! message id goes on the target and `target.fallback` in the campaign's
//! events; a target that must not be reached (DNC, opted out), or whose
//! message cannot be made (no number, a missing variable), is marked with
//! the reason instead. Each message goes under the idempotency key
//! `fallback:{target}`, so a node that stopped between the two writes
//! makes it once.

use serde_json::{json, Value};

use crate::api::messages::compose::{email_row, sms_row, Templates};
use crate::domain::specs::CampaignSpec;
use crate::message::request::{EmailRequest, SmsRequest};
use crate::message::service::Messaging;
use crate::message::status::MessageChannel;
use crate::store::fallbacks::{FailedTarget, NO_FALLBACK_REASONS};
use crate::store::messages::Accepted;
use crate::store::{Store, StoreError};

/// Targets looked at per campaign per pass.
const PER_PASS: i64 = 500;

/// One pass over the campaigns with a fallback.
pub async fn run_pass(store: &Store, messaging: &Messaging, now: i64) -> Result<(), StoreError> {
    let campaigns = store.campaigns_with_fallback().await?;
    for (campaign_id, outdial_id, spec) in campaigns {
        let Some(fb) = serde_json::from_str::<CampaignSpec>(&spec)
            .ok()
            .and_then(|s| s.fallback)
        else {
            continue;
        };
        let targets = store.failed_without_fallback(&outdial_id, PER_PASS).await?;
        let templates = Templates::default();
        for t in targets {
            let made = make(
                store,
                messaging,
                &templates,
                &fb.channel,
                &fb.template_id,
                &t,
                now,
            )
            .await?;
            let (message_id, reason) = match &made {
                Ok(id) => (id.as_str(), None),
                Err(why) => ("", Some(why.as_str())),
            };
            store
                .record_fallback(
                    &campaign_id,
                    &t.id,
                    &fb.channel,
                    message_id,
                    &fb.template_id,
                    reason,
                    now,
                )
                .await?;
        }
    }
    Ok(())
}

/// Makes one target's message: its id, or why there is none.
async fn make(
    store: &Store,
    messaging: &Messaging,
    templates: &Templates,
    channel: &str,
    template_id: &str,
    t: &FailedTarget,
    now: i64,
) -> Result<Result<String, String>, StoreError> {
    if let Some(r) = t
        .reason
        .as_deref()
        .filter(|r| NO_FALLBACK_REASONS.contains(r))
    {
        return Ok(Err(format!("target failed with {r}")));
    }
    // The target's variables, and its name as `name` unless one is set.
    let mut variables: Value = serde_json::from_str(&t.variables).unwrap_or(json!({}));
    if let Some(v) = variables.as_object_mut() {
        if !t.name.is_empty() {
            v.entry("name").or_insert_with(|| json!(t.name));
        }
    }
    let destinations: Value = serde_json::from_str(&t.destinations).unwrap_or(json!([]));
    let id = crate::store::new_id();
    let row = match channel {
        "sms" => {
            let Some(d) = messaging.sms.as_ref() else {
                return Ok(Err("the sms channel is not configured".into()));
            };
            let phone = destinations
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["type"] == "tel")
                .and_then(|d| d["target"].as_str());
            let Some(phone) = phone else {
                return Ok(Err("the target has no phone number".into()));
            };
            let body =
                json!({"to": phone, "template_id": template_id, "template_variables": variables});
            match SmsRequest::parse(&body, d.max_retries) {
                Ok(r) => sms_row(store, messaging, templates, &id, &r, now).await,
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        _ => {
            let Some(d) = messaging.email.as_ref() else {
                return Ok(Err("the email channel is not configured".into()));
            };
            let Some(email) = variables["email"].as_str() else {
                return Ok(Err("the target has no email variable".into()));
            };
            let body = json!({"to": [{"email": email}], "template_id": template_id, "template_variables": variables});
            match EmailRequest::parse(&body, d.max_retries) {
                Ok(r) => email_row(store, messaging, templates, &id, &r, now).await,
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
    };
    let mut row = match row {
        Ok(row) => row,
        Err(e) => return Ok(Err(format!("{}: {}", e.code, e.message))),
    };
    row.idempotency_key = Some(format!("fallback:{}", t.id));

    let key = format!("fallback:{}", t.id);
    let id = match store.accept_message(&row, now).await {
        Ok(Accepted::New(m) | Accepted::Existing(m)) => m.id,
        // Made before from another template version: that one stands.
        Err(StoreError::Conflict(_)) => match store.message_by_key(&key).await? {
            Some(m) => m.id,
            // Another node is making it: the next pass sees it made.
            None => return Err(StoreError::Conflict("fallback message being made".into())),
        },
        Err(e) => return Err(e),
    };
    if let Some(c) = MessageChannel::parse(channel) {
        messaging.wake(c);
    }
    Ok(Ok(id))
}
