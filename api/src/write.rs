//! The write path: gather what the server knows, let the domain decide, append.

use nexysync_domain::crypto::{BlindIndex, PublicKey};
use nexysync_domain::decide::{decide, Lookup, WriteFacts};
use nexysync_domain::event::{Actor, Envelope, EventBody, EventKind};
use nexysync_domain::ids::ProjectId;
use nexysync_domain::wire::Appended;
use nexysync_projections::TokenOwner;
use tracing::instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// An agent's write: refuses an event of another kind than the endpoint's `kind` (when it
/// names one), then [`submit`]s it as the token's agent.
pub async fn submit_as_agent(
    state: &AppState,
    agent: &TokenOwner,
    event: Envelope,
    kind: Option<EventKind>,
) -> Result<Appended, ApiError> {
    if let Some(kind) = kind.filter(|kind| event.body.kind() != *kind) {
        return Err(ApiError::InvalidRequest(format!(
            "this endpoint takes a `{}` event, not `{}`",
            kind.as_str(),
            event.body.kind().as_str()
        )));
    }
    submit(
        state,
        agent.project,
        Actor::Agent(agent.agent),
        Some(agent.signing_key),
        event,
    )
    .await
}

/// 201 for a new event, 200 for a retry answered with the original.
pub fn write_status(appended: &Appended) -> axum::http::StatusCode {
    if appended.duplicate {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::CREATED
    }
}

/// Decides and appends `event` for `caller` of `project`.
#[instrument(skip_all, fields(project = %project, kind = event.body.kind().as_str(), event = %event.id))]
pub async fn submit(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: Envelope,
) -> Result<Appended, ApiError> {
    // Provisioning is rare and must see every earlier registration (a name is taken once):
    // one at a time, each after the read models have applied what came before.
    let _provisioning = match caller {
        Actor::Owner => {
            let guard = state.provisioning.lock().await;
            state.settle_projection().await;
            Some(guard)
        }
        Actor::Agent(_) => None,
    };
    // A KV write decides on the key's current revision: hold the key's lock across
    // gather, decide and append, with the read models caught up to everything this
    // instance appended (ADR 0004). Stale facts would break compare-and-set, so a lagging
    // projection is an error here rather than a warning.
    let _kv_key = match kv_key_of(&event.body) {
        Some(key_ix) => {
            let guard = state.kv_locks.lock(project, key_ix).await;
            state
                .wait_for_projection(Some(state.known_log_position()))
                .await?;
            Some(guard)
        }
        None => None,
    };
    // Two deletes of one file are decided one after the other, each on facts that
    // include the other's effect: the second is told the file is gone.
    let _file_key = match &event.body {
        EventBody::FileDeleted(deleted) => {
            let guard = state
                .kv_locks
                .lock_key(project, &format!("file:{}", deleted.file))
                .await;
            state
                .wait_for_projection(Some(state.known_log_position()))
                .await?;
            Some(guard)
        }
        _ => None,
    };
    if let Some(appended) = gather_and_decide(state, project, caller, caller_key, &event).await? {
        return Ok(appended);
    }
    let outcome = state.log.append(event).await?;
    state.note_appended(outcome.seq);
    Ok(Appended {
        id: outcome.event.id,
        seq: outcome.seq,
        duplicate: outcome.duplicate,
    })
}

/// Gathers the facts (looking again once if something was missing) and decides. A
/// genuine retry, decided as its first attempt was, answers with the original sequence.
async fn gather_and_decide(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: &Envelope,
) -> Result<Option<Appended>, ApiError> {
    let mut known = gather(state, project, caller, caller_key, event).await?;
    if known.something_missing {
        // It was perhaps appended a moment ago: look again once the read models caught up.
        state.settle_projection().await;
        known = gather(state, project, caller, caller_key, event).await?;
    }
    // Decided first, so only a genuine retry (same signed event) learns its sequence.
    decide(&known.facts, event)?;
    Ok(known.already_applied)
}

/// Decides an agent's event without appending it (a file upload is declared first and
/// appended once its blob is stored): `Some` when it was appended already.
pub async fn check_as_agent(
    state: &AppState,
    agent: &TokenOwner,
    event: &Envelope,
    kind: EventKind,
) -> Result<Option<Appended>, ApiError> {
    if event.body.kind() != kind {
        return Err(ApiError::InvalidRequest(format!(
            "this endpoint takes a `{}` event, not `{}`",
            kind.as_str(),
            event.body.kind().as_str()
        )));
    }
    gather_and_decide(
        state,
        agent.project,
        Actor::Agent(agent.agent),
        Some(agent.signing_key),
        event,
    )
    .await
}

fn kv_key_of(body: &EventBody) -> Option<&BlindIndex> {
    match body {
        EventBody::KvSet(set) => Some(&set.key_ix),
        EventBody::KvDeleted(deleted) => Some(&deleted.key_ix),
        _ => None,
    }
}

struct Known {
    facts: WriteFacts,
    /// A retried message whose first attempt is already projected (perhaps beyond
    /// JetStream's deduplication window): answered with the original sequence.
    already_applied: Option<Appended>,
    /// Something the event refers to was not found (perhaps not projected yet).
    something_missing: bool,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn gather(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: &Envelope,
) -> Result<Known, ApiError> {
    let reads = &state.reads;
    let mut facts = WriteFacts::new(project, caller, now_millis());
    let mut already_applied = None;
    facts.caller_key = caller_key;
    let something_missing = match &event.body {
        EventBody::ProjectCreated(_) => {
            facts.owner_key = reads.owner_key(project).await?;
            false
        }
        EventBody::AgentRegistered(registered) => {
            facts.owner_key = reads.owner_key(project).await?;
            facts.agent_name_taken = reads.agent_name_taken(project, &registered.name).await?;
            facts.agent_id_taken = reads.agent_id_taken(registered.agent).await?;
            facts.token_hash_taken = reads.token_hash_taken(&registered.token_hash).await?;
            facts.owner_key.is_none()
        }
        EventBody::MessageSent(sent) => {
            let known_recipient = sent.to.and_then(|to| state.directory.lookup(project, to));
            let log_catches_retries = nexysync_log::deduplicates(event.id, now_millis());
            let needs_query = !log_catches_retries
                || (sent.to.is_some() && known_recipient.is_none())
                || sent.reply_to.is_some();
            if needs_query {
                let found = reads
                    .message_facts(project, event.id, sent.to, sent.reply_to)
                    .await?;
                already_applied = found
                    .already_applied
                    .filter(|(owner, _)| *owner == project)
                    .map(|(_, seq)| Appended {
                        id: event.id,
                        seq,
                        duplicate: true,
                    });
                if let (Some(to), Lookup::Found) = (sent.to, found.recipient) {
                    state.directory.remember(to, project);
                }
                facts.recipient = found.recipient;
                facts.reply_to = found.reply_to;
            } else if let Some(lookup) = known_recipient {
                facts.recipient = lookup;
            }
            facts.recipient == Lookup::Missing || facts.reply_to == Lookup::Missing
        }
        EventBody::KvSet(set) => {
            let current = reads.kv_current(project, &set.key_ix).await?;
            facts.kv_revision = current.map(|c| c.revision);
            if let Some(current) = current.filter(|c| c.event == event.id) {
                // A retry of the write that set the current value: decide as its first
                // attempt was decided, then answer with the original sequence.
                facts.kv_revision = set.expected_revision.filter(|r| *r != 0);
                already_applied = Some(Appended {
                    id: event.id,
                    seq: nexysync_domain::ids::Seq(current.revision),
                    duplicate: true,
                });
            }
            false
        }
        EventBody::RefShared(shared) => {
            let known_recipient = shared.to.and_then(|to| state.directory.lookup(project, to));
            let log_catches_retries = nexysync_log::deduplicates(event.id, now_millis());
            if !log_catches_retries || (shared.to.is_some() && known_recipient.is_none()) {
                let found = reads.ref_facts(project, event.id, shared.to).await?;
                already_applied = found
                    .already_applied
                    .filter(|(owner, _)| *owner == project)
                    .map(|(_, seq)| Appended {
                        id: event.id,
                        seq,
                        duplicate: true,
                    });
                if let (Some(to), Lookup::Found) = (shared.to, found.recipient) {
                    state.directory.remember(to, project);
                }
                facts.recipient = found.recipient;
            } else if let Some(lookup) = known_recipient {
                facts.recipient = lookup;
            }
            facts.recipient == Lookup::Missing
        }
        EventBody::FileShared(shared) => {
            let known_recipient = shared.to.and_then(|to| state.directory.lookup(project, to));
            let log_catches_retries = nexysync_log::deduplicates(event.id, now_millis());
            if !log_catches_retries || (shared.to.is_some() && known_recipient.is_none()) {
                let found = reads.file_facts(project, event.id, shared.to).await?;
                already_applied = found
                    .already_applied
                    .filter(|(owner, _)| *owner == project)
                    .map(|(_, seq)| Appended {
                        id: event.id,
                        seq,
                        duplicate: true,
                    });
                if let (Some(to), Lookup::Found) = (shared.to, found.recipient) {
                    state.directory.remember(to, project);
                }
                facts.recipient = found.recipient;
            } else if let Some(lookup) = known_recipient {
                facts.recipient = lookup;
            }
            facts.recipient == Lookup::Missing
        }
        EventBody::FileDeleted(deleted) => {
            let Actor::Agent(me) = caller else {
                return Ok(Known {
                    facts,
                    already_applied,
                    something_missing: false,
                });
            };
            // Only a file this agent may read and that is still there can be deleted.
            facts.file = match reads.file_for(project, me, deleted.file).await? {
                Some(row) if row.deleted_seq.is_none() => Lookup::Found,
                _ => Lookup::Missing,
            };
            facts.file == Lookup::Missing
        }
        EventBody::KvDeleted(deleted) => {
            facts.kv_revision = reads
                .kv_current(project, &deleted.key_ix)
                .await?
                .map(|c| c.revision);
            false
        }
    };
    Ok(Known {
        facts,
        already_applied,
        something_missing,
    })
}
