//! Who am I, and who else is here.

use axum::extract::State;
use axum::Json;
use nexysync_domain::crypto::PublicKey;
use nexysync_domain::ids::{AgentId, AgentName, Seq};
use nexysync_domain::wire::WhoAmI;
use serde::{Deserialize, Serialize};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::raw::RawStoredEvent;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct MinSeq {
    min_seq: Option<Seq>,
}

/// `GET /v1/whoami`
pub async fn whoami(AgentAuth(me): AgentAuth) -> Json<WhoAmI> {
    Json(WhoAmI {
        project: me.project,
        project_name: me.project_name.clone(),
        agent: me.agent,
        agent_name: me.agent_name.clone(),
    })
}

/// `domain::wire::AgentInfo` with the registration as stored.
#[derive(Debug, Serialize)]
pub struct RawAgentInfo {
    id: AgentId,
    name: AgentName,
    signing_key: PublicKey,
    registration: RawStoredEvent,
}

#[derive(Debug, Serialize)]
pub struct RawAgentList {
    agents: Vec<RawAgentInfo>,
}

/// `GET /v1/agents`: the project's agents with their signed registrations.
pub async fn agents(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<MinSeq>,
) -> Result<Json<RawAgentList>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    // A list cannot tell what is missing: include every registration this instance has
    // seen in the log (an agent added a moment ago).
    state.settle_projection().await;
    let agents = state
        .reads
        .agents(me.project)
        .await?
        .into_iter()
        .map(|record| {
            Ok(RawAgentInfo {
                id: record.id,
                name: record.name,
                signing_key: record.signing_key,
                registration: record.registration.try_into()?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(RawAgentList { agents }))
}
