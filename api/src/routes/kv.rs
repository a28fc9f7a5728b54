//! The shared key-value store: set (with compare-and-set), delete, get one, list.
//! Keys travel as blind indexes; keys and values stay sealed inside the `kv_set`
//! envelopes, which are answered as stored. KV writes cost no quota.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::event::{Envelope, EventKind};
use nexysync_domain::ids::Seq;
use nexysync_domain::wire::{KvAppended, DEFAULT_LIMIT, MAX_LIMIT};
use nexysync_projections::KvRow;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::write::{submit_as_agent, write_status};

/// `PUT /v1/kv`: a `kv_set` signed by the caller.
pub async fn set(
    auth: AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<KvAppended>), ApiError> {
    write(auth, state, event, EventKind::KvSet).await
}

/// `POST /v1/kv/delete`: a `kv_deleted` signed by the caller.
pub async fn delete(
    auth: AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<KvAppended>), ApiError> {
    write(auth, state, event, EventKind::KvDeleted).await
}

async fn write(
    AgentAuth(me): AgentAuth,
    state: AppState,
    event: Envelope,
    kind: EventKind,
) -> Result<(StatusCode, Json<KvAppended>), ApiError> {
    let appended = submit_as_agent(&state, &me, event, Some(kind)).await?;
    let status = write_status(&appended);
    Ok((
        status,
        Json(KvAppended {
            id: appended.id,
            seq: appended.seq,
            revision: appended.seq.0,
            duplicate: appended.duplicate,
        }),
    ))
}

/// `domain::wire::KvEntry` with the envelope as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "KvEntry")]
pub struct RawKvEntry {
    key_ix: BlindIndex,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    #[schemars(with = "nexysync_domain::event::Envelope")]
    event: Box<RawValue>,
}

impl TryFrom<KvRow> for RawKvEntry {
    type Error = ApiError;
    fn try_from(row: KvRow) -> Result<Self, ApiError> {
        let event = RawValue::from_string(row.envelope).map_err(|e| {
            ApiError::Unexpected(anyhow::Error::new(e).context("stored kv envelope is not JSON"))
        })?;
        Ok(Self {
            key_ix: row.key_ix,
            revision: row.revision,
            expires_at_ms: row.expires_at_ms,
            event,
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetQuery {
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

fn key_ix(text: String) -> Result<BlindIndex, ApiError> {
    BlindIndex::try_from(text).map_err(|e| ApiError::InvalidRequest(format!("key index: {e}")))
}

/// `GET /v1/kv/{key_ix}`: the live entry (404 `key_not_found` if absent or expired).
pub async fn get(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(ix): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetQuery>,
) -> Result<Json<RawKvEntry>, ApiError> {
    let ix = key_ix(ix)?;
    state.wait_for_projection(query.min_seq).await?;
    let row = state
        .reads
        .kv_entry(me.project, &ix)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "key_not_found",
            message: "no such key (never set, deleted, or expired)".into(),
        })?;
    Ok(Json(row.try_into()?))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only keys after this `key_ix` (exclusive): the previous page's `next_after`.
    after: Option<String>,
    /// Page size: default 50, at most 500.
    limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `domain::wire::KvPage` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "KvPage")]
pub struct RawKvPage {
    entries: Vec<RawKvEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<BlindIndex>,
    has_more: bool,
}

/// `GET /v1/kv?after=&limit=`: live entries in `key_ix` order.
pub async fn list(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RawKvPage>, ApiError> {
    let after = query.after.map(key_ix).transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    state.wait_for_projection(query.min_seq).await?;
    // One more than asked tells whether there is a next page.
    let mut rows = state
        .reads
        .kv_list(me.project, after.as_ref(), limit + 1)
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = has_more
        .then(|| rows.last().map(|r| r.key_ix.clone()))
        .flatten();
    Ok(Json(RawKvPage {
        entries: rows
            .into_iter()
            .map(RawKvEntry::try_from)
            .collect::<Result<_, _>>()?,
        next_after,
        has_more,
    }))
}
