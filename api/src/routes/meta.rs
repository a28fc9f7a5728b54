//! Who am I, who else is here, who is online, what is left of the quota; and an agent
//! setting its own profile. Roles and descriptions stay sealed inside the
//! `agent_profile_updated` envelopes, which are answered as stored.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::crypto::PublicKey;
use nexysync_domain::event::{Envelope, EventKind};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName, Seq};
use nexysync_domain::quota::next_utc_midnight_ms;
use nexysync_domain::wire::{Appended, PresenceEntry, PresenceList, QuotaStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::raw::RawStoredEvent;
use crate::state::AppState;
use crate::write::{quota_of, submit_as_agent, write_status};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MinSeq {
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `domain::wire::WhoAmI` with the profile as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "WhoAmI")]
pub struct RawWhoAmI {
    project: ProjectId,
    project_name: ProjectName,
    agent: AgentId,
    agent_name: AgentName,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<RawStoredEvent>,
    retention: nexysync_domain::event::RetentionPolicy,
}

/// `GET /v1/whoami`
pub async fn whoami(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MinSeq>,
) -> Result<Json<RawWhoAmI>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    let profile = state.reads.profile_of(me.project, me.agent).await?;
    Ok(Json(RawWhoAmI {
        project: me.project,
        project_name: me.project_name.clone(),
        agent: me.agent,
        agent_name: me.agent_name.clone(),
        profile: profile.map(RawStoredEvent::try_from).transpose()?,
        retention: state.reads.retention(me.project).await?,
    }))
}

/// `domain::wire::AgentInfo` with the registration and profile as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "AgentInfo")]
pub struct RawAgentInfo {
    id: AgentId,
    name: AgentName,
    signing_key: PublicKey,
    registration: RawStoredEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<RawStoredEvent>,
    online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen_ms: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "AgentList")]
pub struct RawAgentList {
    agents: Vec<RawAgentInfo>,
}

/// `GET /v1/agents`: the project's agents with their signed registrations, profiles and
/// presence.
pub async fn agents(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MinSeq>,
) -> Result<Json<RawAgentList>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    // A list cannot tell what is missing: include every registration this instance has
    // seen in the log (an agent added a moment ago).
    state.settle_projection().await;
    let presence: HashMap<AgentId, PresenceEntry> = presence_of(&state, me.project)
        .await?
        .into_iter()
        .map(|entry| (entry.agent, entry))
        .collect();
    let agents = state
        .reads
        .agents(me.project)
        .await?
        .into_iter()
        .map(|record| {
            let seen = presence.get(&record.id);
            Ok(RawAgentInfo {
                id: record.id,
                name: record.name,
                signing_key: record.signing_key,
                registration: record.registration.try_into()?,
                profile: record.profile.map(RawStoredEvent::try_from).transpose()?,
                online: seen.is_some_and(|p| p.online),
                last_seen_ms: seen.and_then(|p| p.last_seen_ms),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(RawAgentList { agents }))
}

async fn presence_of(state: &AppState, project: ProjectId) -> Result<Vec<PresenceEntry>, ApiError> {
    Ok(state
        .reads
        .presence(project, state.presence_timeout)
        .await?
        .into_iter()
        .map(|row| PresenceEntry {
            agent: row.agent,
            name: row.name,
            online: row.online,
            last_seen_ms: row.last_seen_ms,
        })
        .collect())
}

/// `GET /v1/presence`: every agent of my project, online or not, and when last seen.
pub async fn presence(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
) -> Result<Json<PresenceList>, ApiError> {
    // Like the agents list: include an agent registered a moment ago.
    state.settle_projection().await;
    Ok(Json(PresenceList {
        agents: presence_of(&state, me.project).await?,
        bound_ms: state.presence_timeout.as_millis().min(u64::MAX as u128) as u64,
    }))
}

/// `GET /v1/quota`: my project's limits, its usage, and when the daily count resets.
pub async fn quota(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MinSeq>,
) -> Result<Json<QuotaStatus>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    let quota = quota_of(&state, me.project).await?;
    let now_ms = crate::presence::now_ms().max(0) as u64;
    Ok(Json(QuotaStatus {
        limits: quota.limits,
        usage: quota.usage,
        messages_reset_at_ms: next_utc_midnight_ms(now_ms),
    }))
}

/// `PUT /v1/profile`: an `agent_profile_updated` signed by the caller, for itself.
pub async fn update_profile(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let appended =
        submit_as_agent(&state, &me, event, Some(EventKind::AgentProfileUpdated)).await?;
    Ok((write_status(&appended), Json(appended)))
}
