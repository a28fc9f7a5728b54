//! Shared code references: share one, list those I may read, read one. Path, snippet and
//! every other textual field stay sealed inside the `ref_shared` envelopes, which are
//! answered as stored.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::event::{Envelope, EventKind};
use nexysync_domain::ids::{EventId, Seq};
use nexysync_domain::wire::Appended;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::PageRequest;
use crate::raw::{self, RawStoredEvent};
use crate::state::AppState;
use crate::write::{submit_as_agent, write_status};

/// `POST /v1/refs`: a sealed `ref_shared` signed by the caller.
pub async fn share(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let appended = submit_as_agent(&state, &me, event, Some(EventKind::RefShared)).await?;
    Ok((write_status(&appended), Json(appended)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only events after this stream sequence (exclusive; default 0): the previous
    /// page's `next_since_seq`.
    since_seq: Option<Seq>,
    /// Page size: default 50, at most 500.
    limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `domain::wire::RefPage` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "RefPage")]
pub struct RawRefPage {
    refs: Vec<RawStoredEvent>,
    next_since_seq: Seq,
    has_more: bool,
}

/// `GET /v1/refs`: references shared with me, with everyone, or by me, oldest first.
pub async fn list(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RawRefPage>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    let page = PageRequest::new(query.since_seq, query.limit)?;
    let rows = state
        .reads
        .refs_for(me.project, me.agent, page.since, page.fetch())
        .await?;
    let (rows, next_since_seq, has_more) = page.split(rows);
    Ok(Json(RawRefPage {
        refs: raw::all(rows)?,
        next_since_seq,
        has_more,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadQuery {
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `GET /v1/refs/{id}`
pub async fn read(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<RawStoredEvent>, ApiError> {
    let id = EventId::parse(&id).map_err(|e| ApiError::InvalidRequest(format!("ref id: {e}")))?;
    state.wait_for_projection(query.min_seq).await?;
    let stored = state
        .reads
        .ref_for(me.project, me.agent, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "ref_not_found",
            message: format!("no code reference {id} that you may read"),
        })?;
    Ok(Json(stored.try_into()?))
}
