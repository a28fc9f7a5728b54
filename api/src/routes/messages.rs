//! Messages: send, inbox, read one, read its thread. Every message answered carries the
//! state its reader sees (reactions, pinned, read by me, deleted); see `message_state`
//! for the writes that change it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::event::Envelope;
use nexysync_domain::ids::{EventId, Seq};
use nexysync_domain::wire::Appended;
use nexysync_projections::{StoredJson, TokenOwner};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::PageRequest;
use crate::raw::RawStoredEvent;
use crate::state::AppState;
use crate::write::{submit_as_agent, write_status};

/// `POST /v1/messages`: a sealed `MessageSent` signed by the caller.
pub async fn send(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let appended = submit_as_agent(&state, &me, event, None).await?;
    Ok((write_status(&appended), Json(appended)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InboxQuery {
    /// Only events after this stream sequence (exclusive; default 0): the previous
    /// page's `next_since_seq`.
    since_seq: Option<Seq>,
    /// Page size: default 50, at most 500.
    limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
    /// Only messages the caller has not marked read.
    #[serde(default)]
    unread_only: bool,
}

/// `domain::wire::MessageEntry` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "MessageEntry")]
pub struct RawMessageEntry {
    seq: Seq,
    #[schemars(with = "nexysync_domain::event::Envelope")]
    event: Box<serde_json::value::RawValue>,
    reactions: Vec<RawStoredEvent>,
    pinned: bool,
    read_by_me: bool,
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion: Option<RawStoredEvent>,
}

/// The messages `rows` with the state `me` sees of each.
async fn entries(
    state: &AppState,
    me: &TokenOwner,
    rows: Vec<StoredJson>,
) -> Result<Vec<RawMessageEntry>, ApiError> {
    let seqs: Vec<Seq> = rows.iter().map(|row| row.seq).collect();
    let mut states = state
        .reads
        .message_states(me.project, me.agent, &seqs)
        .await?;
    rows.into_iter()
        .map(|row| {
            let message = states.remove(&row.seq).unwrap_or_default();
            let stored = RawStoredEvent::try_from(row)?;
            Ok(RawMessageEntry {
                seq: stored.seq,
                event: stored.event,
                reactions: crate::raw::all(message.reactions)?,
                pinned: message.pinned,
                read_by_me: message.read_by_me,
                deleted: message.deletion.is_some(),
                deletion: message.deletion.map(RawStoredEvent::try_from).transpose()?,
            })
        })
        .collect()
}

/// `domain::wire::MessagePage` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "MessagePage")]
pub struct RawMessagePage {
    messages: Vec<RawMessageEntry>,
    next_since_seq: Seq,
    has_more: bool,
}

/// `GET /v1/messages`: direct messages to me and others' broadcasts, oldest first.
pub async fn inbox(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<InboxQuery>,
) -> Result<Json<RawMessagePage>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    let page = PageRequest::new(query.since_seq, query.limit)?;
    let rows = if query.unread_only {
        state
            .reads
            .inbox_unread(me.agent, page.since, page.fetch())
            .await?
    } else {
        state
            .reads
            .inbox(me.agent, page.since, page.fetch())
            .await?
    };
    let (rows, next_since_seq, has_more) = page.split(rows);
    Ok(Json(RawMessagePage {
        messages: entries(&state, &me, rows).await?,
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

pub(super) fn message_id(text: &str) -> Result<EventId, ApiError> {
    EventId::parse(text).map_err(|e| ApiError::InvalidRequest(format!("message id: {e}")))
}

fn message_not_found(id: EventId) -> ApiError {
    ApiError::NotFound {
        code: "message_not_found",
        message: format!("no message {id} that you may read"),
    }
}

/// `GET /v1/messages/{id}`
pub async fn read(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<RawMessageEntry>, ApiError> {
    let id = message_id(&id)?;
    state.wait_for_projection(query.min_seq).await?;
    let stored = state
        .reads
        .message_for(me.project, me.agent, id)
        .await?
        .ok_or_else(|| message_not_found(id))?;
    let mut one = entries(&state, &me, vec![stored]).await?;
    one.pop()
        .map(Json)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("a message without its entry")))
}

/// `domain::wire::Thread` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Thread")]
pub struct RawThread {
    root: EventId,
    messages: Vec<RawMessageEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    expired: Vec<nexysync_domain::wire::ExpiredNode>,
    /// More of the thread follows `messages`: read on with `since_seq` = the last one's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    has_more: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ThreadQuery {
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
    /// Only the thread's messages after this sequence: the next page of a long thread
    /// (at most 1,000 messages a read).
    since_seq: Option<Seq>,
}

/// `GET /v1/messages/{id}/thread`
pub async fn thread(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ThreadQuery>,
) -> Result<Json<RawThread>, ApiError> {
    let id = message_id(&id)?;
    state.wait_for_projection(query.min_seq).await?;
    let page = state
        .reads
        .thread_for(me.project, me.agent, id, query.since_seq.unwrap_or(Seq(0)))
        .await?
        .ok_or_else(|| message_not_found(id))?;
    let expired = state
        .reads
        .expired_in_thread(me.project, me.agent, page.root)
        .await?;
    Ok(Json(RawThread {
        root: page.root,
        messages: entries(&state, &me, page.messages).await?,
        expired,
        has_more: page.has_more,
    }))
}
