//! The write path: gather what the server knows, let the domain decide, append.

use nexysync_domain::crypto::PublicKey;
use nexysync_domain::decide::{decide, Lookup, WriteFacts};
use nexysync_domain::event::{Actor, Envelope, EventBody};
use nexysync_domain::ids::ProjectId;
use nexysync_domain::wire::Appended;
use tracing::instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// Decides and appends `event` for `caller` of `project`.
#[instrument(skip_all, fields(project = %project, kind = event.body.kind().as_str(), event = %event.id))]
pub async fn submit(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: Envelope,
) -> Result<Appended, ApiError> {
    if let Some(appended) = already_appended(state, project, &event).await? {
        return Ok(appended);
    }
    let mut facts = gather(state, project, caller, caller_key, &event).await?;
    if refers_to_something_missing(&facts, &event) {
        // It was perhaps appended a moment ago: look again once the read models caught up.
        state.settle_projection().await;
        facts = gather(state, project, caller, caller_key, &event).await?;
    }
    decide(&facts, &event)?;
    let outcome = state.log.append(event).await?;
    state.note_appended(outcome.seq);
    Ok(Appended {
        id: outcome.event.id,
        seq: outcome.seq,
        duplicate: outcome.duplicate,
    })
}

/// A retried message whose first attempt is already projected (beyond JetStream's
/// deduplication window) is answered with the original sequence.
async fn already_appended(
    state: &AppState,
    project: ProjectId,
    event: &Envelope,
) -> Result<Option<Appended>, ApiError> {
    if !matches!(event.body, EventBody::MessageSent(_)) {
        return Ok(None);
    }
    Ok(match state.reads.message_seq(event.id).await? {
        Some((owner, seq)) if owner == project => Some(Appended {
            id: event.id,
            seq,
            duplicate: true,
        }),
        _ => None,
    })
}

async fn gather(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: &Envelope,
) -> Result<WriteFacts, ApiError> {
    let reads = &state.reads;
    let mut facts = WriteFacts::new(project, caller);
    facts.caller_key = caller_key;
    match &event.body {
        EventBody::ProjectCreated(_) => {
            facts.owner_key = reads.owner_key(project).await?;
        }
        EventBody::AgentRegistered(registered) => {
            facts.owner_key = reads.owner_key(project).await?;
            facts.agent_name_taken = reads.agent_name_taken(project, &registered.name).await?;
            facts.agent_id_taken = reads.agent_id_taken(registered.agent).await?;
        }
        EventBody::MessageSent(sent) => {
            if let Some(to) = sent.to {
                facts.recipient = reads.agent_lookup(project, to).await?;
            }
            if let Some(parent) = sent.reply_to {
                facts.reply_to = reads.message_lookup(project, parent).await?;
            }
        }
    }
    Ok(facts)
}

fn refers_to_something_missing(facts: &WriteFacts, event: &Envelope) -> bool {
    match &event.body {
        EventBody::ProjectCreated(_) => false,
        EventBody::AgentRegistered(_) => facts.owner_key.is_none(),
        EventBody::MessageSent(_) => {
            facts.recipient == Lookup::Missing || facts.reply_to == Lookup::Missing
        }
    }
}
