//! `GET /v1/trunks`: the configured trunks (read-only; they come from the
//! configuration file), each with its limits, the calls on it now and, for a
//! trunk that registers, its registration. Never a password or credentials:
//! only whether the trunk has them.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::metrics::MetricsSources;
use super::openapi::ApiRouter;
use crate::config::TrunkConfig;

/// A trunk as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrunkView {
    /// Where `tel` calls go: the proxy's host and port (any user part left out).
    pub proxy: String,
    pub transport: String,
    pub from_domain: String,
    pub caller_id: String,
    /// Whether digest credentials are configured (never the credentials).
    pub has_credentials: bool,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: u32,
    pub register: bool,
    /// The registrar (the proxy when empty in the configuration).
    #[schema(nullable)]
    pub registrar: Option<String>,
}

impl TrunkView {
    pub fn of(t: &TrunkConfig) -> TrunkView {
        TrunkView {
            proxy: without_userinfo(&t.proxy),
            transport: t.transport.clone(),
            from_domain: t.from_domain.clone(),
            caller_id: t.caller_id.clone(),
            has_credentials: !t.username.is_empty(),
            max_concurrent_calls: t.max_concurrent_calls,
            max_calls_per_second: t.max_calls_per_second,
            register: t.register,
            registrar: t.register.then(|| {
                without_userinfo(if t.registrar.is_empty() {
                    &t.proxy
                } else {
                    &t.registrar
                })
            }),
        }
    }
}

/// A SIP URI without its `user[:password]@` part.
fn without_userinfo(uri: &str) -> String {
    match (uri.split_once(':'), uri.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}:{host}"),
        _ => uri.to_string(),
    }
}

/// One trunk now.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkState {
    pub name: String,
    #[serde(flatten)]
    pub config: TrunkView,
    /// Calls on the trunk now (null where this node's telephony does not
    /// count them per trunk).
    #[schema(nullable)]
    pub live_calls: Option<u32>,
    /// For a trunk that registers.
    #[schema(nullable)]
    pub registration: Option<RegistrationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationView {
    /// `registering`, `registered`, `failed` or `unregistered`.
    pub state: String,
    #[schema(nullable)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the last REGISTER failed.
    #[schema(nullable)]
    pub error: Option<String>,
    /// Since when the state holds.
    pub since: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkList {
    pub data: Vec<TrunkState>,
}

pub fn router(sources: MetricsSources) -> ApiRouter {
    ApiRouter::new().routes(routes!(list)).with_state(sources)
}

/// The configured trunks, their limits, live calls and registration.
#[utoipa::path(get, path = "/trunks", tag = "trunks",
    responses((status = 200, description = "Every configured trunk, by name.", body = TrunkList)))]
async fn list(State(s): State<MetricsSources>) -> ApiResult<Json<TrunkList>> {
    let data = s
        .trunk_view
        .iter()
        .map(|(name, view)| TrunkState {
            name: name.clone(),
            config: view.clone(),
            live_calls: (s.trunk_live)(name),
            registration: (s.trunk_registration)(name).map(|r| RegistrationView {
                state: r.state.as_str().to_string(),
                expires_at: r.expires_at,
                error: r.error,
                since: r.since,
            }),
        })
        .collect();
    Ok(Json(TrunkList { data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_shown_without_its_user_part() {
        assert_eq!(
            without_userinfo("sip:acct:s3cret@sip.carrier.example:5060"),
            "sip:sip.carrier.example:5060"
        );
        assert_eq!(without_userinfo("sip:10.0.0.1:5060"), "sip:10.0.0.1:5060");
        assert_eq!(without_userinfo("simulator"), "simulator");
    }
}
