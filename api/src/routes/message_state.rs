//! Message state: react (and take a reaction back), mark read, pin, unpin, delete. Each
//! is a signed event naming the message of the path; the emoji stays sealed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::event::{Envelope, EventKind};
use nexysync_domain::wire::Appended;

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::write::{submit_as_agent, write_status};

use super::messages::message_id;

type Written = Result<(StatusCode, Json<Appended>), ApiError>;

/// `POST /v1/messages/{id}/reactions`: a `reaction_added` (sealed emoji) or a
/// `reaction_removed` (taking back the caller's reaction with the same `emoji_ix`).
pub async fn react(
    me: AgentAuth,
    state: State<AppState>,
    id: ApiPath<String>,
    event: ApiJson<Envelope>,
) -> Written {
    update(
        me,
        state,
        id,
        event,
        &[EventKind::ReactionAdded, EventKind::ReactionRemoved],
    )
    .await
}

/// `POST /v1/messages/{id}/read`: a `message_read`.
pub async fn read(
    me: AgentAuth,
    state: State<AppState>,
    id: ApiPath<String>,
    event: ApiJson<Envelope>,
) -> Written {
    update(me, state, id, event, &[EventKind::MessageRead]).await
}

/// `POST /v1/messages/{id}/pin`: a `message_pinned`.
pub async fn pin(
    me: AgentAuth,
    state: State<AppState>,
    id: ApiPath<String>,
    event: ApiJson<Envelope>,
) -> Written {
    update(me, state, id, event, &[EventKind::MessagePinned]).await
}

/// `POST /v1/messages/{id}/unpin`: a `message_unpinned`.
pub async fn unpin(
    me: AgentAuth,
    state: State<AppState>,
    id: ApiPath<String>,
    event: ApiJson<Envelope>,
) -> Written {
    update(me, state, id, event, &[EventKind::MessageUnpinned]).await
}

/// `POST /v1/messages/{id}/delete`: a `message_deleted`, by the message's sender only.
pub async fn delete(
    me: AgentAuth,
    state: State<AppState>,
    id: ApiPath<String>,
    event: ApiJson<Envelope>,
) -> Written {
    update(me, state, id, event, &[EventKind::MessageDeleted]).await
}

/// Checks that the event is of one of `kinds` and names the path's message, then writes it.
async fn update(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(event): ApiJson<Envelope>,
    kinds: &[EventKind],
) -> Written {
    let id = message_id(&id)?;
    crate::write::require_kind(&event, kinds)?;
    if event.body.target_message() != Some(id) {
        return Err(ApiError::InvalidRequest(format!(
            "the event's `meta.message` must be the message of the path ({id})"
        )));
    }
    let appended = submit_as_agent(&state, &me, event, None).await?;
    Ok((write_status(&appended), Json(appended)))
}
