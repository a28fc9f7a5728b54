//! The write path: gather what the server knows, let the domain decide, append.

use nexysync_domain::crypto::{BlindIndex, PublicKey};
use nexysync_domain::decide::{decide, decide_declaration, Lookup, Rejection, WriteFacts};
use nexysync_domain::event::{Actor, Envelope, EventBody, EventKind};
use nexysync_domain::ids::ProjectId;
use nexysync_domain::quota::Quota;
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
    if let Some(kind) = kind {
        require_kind(&event, &[kind])?;
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

/// Refuses an event of another kind than the endpoint takes (one of `kinds`).
pub fn require_kind(event: &Envelope, kinds: &[EventKind]) -> Result<(), ApiError> {
    let kind = event.body.kind();
    if kinds.contains(&kind) {
        return Ok(());
    }
    let wanted: Vec<&str> = kinds.iter().map(EventKind::as_str).collect();
    Err(ApiError::InvalidRequest(format!(
        "this endpoint takes a `{}` event, not `{}`",
        wanted.join("` or `"),
        kind.as_str()
    )))
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
    // one at a time, each after the read models have applied what came before. Deciding
    // on lagging ones would let a name be taken twice, the second answered 201 and then
    // skipped by the projector: a lag is an error here, as for KV writes.
    let _provisioning = match caller {
        Actor::Owner => {
            let guard = state.provisioning.lock().await;
            state
                .wait_for_projection(Some(state.known_log_position()))
                .await?;
            Some(guard)
        }
        Actor::Agent(_) | Actor::Pruner => None,
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
    // A message-state event decides on the message's current state (already reacted,
    // pinned, deleted): like a KV write, hold the message's lock across gather, decide and
    // append, with everything this instance knows of the log applied (ADR 0005).
    let _message = match event.body.target_message() {
        Some(message) => {
            let guard = state.kv_locks.lock_message(project, message).await;
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
    if let Some(appended) =
        gather_and_decide(state, project, caller, caller_key, &event, decide).await?
    {
        return Ok(appended);
    }
    let counts = matches!(
        event.body,
        EventBody::MessageSent(_) | EventBody::RefShared(_)
    );
    let sealed_bytes = event.sealed_len() as u64;
    let outcome = state.log.append(event).await?;
    state.note_appended(outcome.seq);
    if counts && !outcome.duplicate {
        state.quota_cache.note_appended(project, sealed_bytes);
    }
    Ok(Appended {
        id: outcome.event.id,
        seq: outcome.seq,
        duplicate: outcome.duplicate,
    })
}

/// The project's quota limits and usage as the read models count them (cached for a
/// moment, plus this instance's appends since, see `quota_cache`). Near a limit the count
/// must not lag behind what this instance appended, so it then waits (bounded) for the
/// read models to catch up and reads them again: exact where it matters, cheap elsewhere.
pub async fn quota_of(state: &AppState, project: ProjectId) -> Result<Quota, ApiError> {
    let now = chrono::Utc::now();
    let day = now.timestamp().max(0) as u64 / 86_400;
    let read = || async {
        let usage = state.reads.quota_usage(project, now).await?;
        state.quota_cache.put(project, day, usage);
        Ok::<_, ApiError>(Quota {
            limits: state.quota,
            usage,
        })
    };
    let quota = match state.quota_cache.get(project, day) {
        Some(usage) => Quota {
            limits: state.quota,
            usage,
        },
        None => read().await?,
    };
    // "Near": within what a burst of unprojected writes could add (16 messages of the
    // largest size, or a tenth of the limit).
    let near =
        |used: u64, limit: u64, unit: u64| used.saturating_add(limit / 10 + 16 * unit) >= limit;
    let largest = nexysync_domain::decide::MAX_SEALED_BYTES as u64;
    if near(quota.usage.messages_today, quota.limits.messages_per_day, 1)
        || near(quota.usage.stored_bytes, quota.limits.stored_bytes, largest)
    {
        state.settle_projection().await;
        return read().await;
    }
    Ok(quota)
}

/// Refuses (`429 quota_exceeded`, naming the limit) when storing `adding` more sealed
/// bytes would take `project` beyond its stored-bytes limit. The one check for every
/// feature that stores content (messages and refs decide it in `decide`; files call this).
pub async fn check_stored_bytes(
    state: &AppState,
    project: ProjectId,
    adding: u64,
) -> Result<(), ApiError> {
    Ok(quota_of(state, project).await?.check_stored_bytes(adding)?)
}

/// The original answer to a message or ref of this project already in the read models.
async fn applied_before(
    state: &AppState,
    project: ProjectId,
    event: &Envelope,
) -> Result<Option<Appended>, ApiError> {
    let found = match &event.body {
        EventBody::MessageSent(_) => {
            state
                .reads
                .message_facts(project, event.id, None, None)
                .await?
                .already_applied
        }
        EventBody::RefShared(_) => {
            state
                .reads
                .ref_facts(project, event.id, None)
                .await?
                .already_applied
        }
        _ => None,
    };
    Ok(found
        .filter(|(owner, _)| *owner == project)
        .map(|(_, seq)| Appended {
            id: event.id,
            seq,
            duplicate: true,
        }))
}

/// Gathers the facts (looking again once if something was missing) and decides. A
/// genuine retry, decided as its first attempt was, answers with the original sequence.
/// How an event is decided: [`decide`] for appends, [`decide_declaration`] for a
/// declared upload.
type Decision = fn(&WriteFacts, &Envelope) -> Result<(), Rejection>;

async fn gather_and_decide(
    state: &AppState,
    project: ProjectId,
    caller: Actor,
    caller_key: Option<PublicKey>,
    event: &Envelope,
    decide: Decision,
) -> Result<Option<Appended>, ApiError> {
    let mut known = gather(state, project, caller, caller_key, event).await?;
    if known.something_missing {
        // It was perhaps appended a moment ago: look again once the read models caught up.
        state.settle_projection().await;
        known = gather(state, project, caller, caller_key, event).await?;
    }
    let Known {
        facts,
        already_applied,
        ..
    } = known;
    // Decided first, so only a genuine retry (same signed event) learns its sequence.
    if let Err(rejection) = decide(&facts, event) {
        if let (Rejection::QuotaExceeded { .. }, None) = (&rejection, &already_applied) {
            // A retry of the write that used up the quota is still answered as a retry.
            if let Some(appended) = applied_before(state, project, event).await? {
                decide(
                    &WriteFacts {
                        quota: None,
                        ..facts
                    },
                    event,
                )?;
                return Ok(Some(appended));
            }
        }
        return Err(rejection.into());
    }
    if let Err(too_old) = refuse_backdated_content(&facts, event, already_applied.is_some()) {
        // Perhaps a retry whose first attempt is not projected yet: look again once the
        // read models caught up, rather than have the client sign a second copy.
        state.settle_projection().await;
        return match applied_before(state, project, event).await? {
            Some(appended) => Ok(Some(appended)),
            None => Err(too_old.into()),
        };
    }
    Ok(already_applied)
}

/// A message or reference counts on the UTC day of its `at` (ADR 0007), so a new one must
/// be recent: one dated hours back would count for a day already past, and never towards
/// today's quota. Only an event the log may no longer deduplicate is refused, and each
/// such one was looked up by id first: a genuine retry is answered as one.
fn refuse_backdated_content(
    facts: &WriteFacts,
    event: &Envelope,
    is_retry: bool,
) -> Result<(), Rejection> {
    let counted_by_day = matches!(
        event.body,
        EventBody::MessageSent(_) | EventBody::RefShared(_)
    );
    if is_retry || !counted_by_day || !nexysync_log::made_before_the_window(event.id, facts.now_ms)
    {
        return Ok(());
    }
    Err(Rejection::EventTooOld {
        id: event.id,
        age_ms: facts.now_ms.saturating_sub(event.id.unix_millis()),
    })
}

/// Decides an agent's declared upload without appending it (a file upload is declared
/// first and appended once its blob is stored; its digest may be left to the CDN):
/// `Some` when it was appended already.
pub async fn check_as_agent(
    state: &AppState,
    agent: &TokenOwner,
    event: &Envelope,
    kind: EventKind,
) -> Result<Option<Appended>, ApiError> {
    require_kind(event, &[kind])?;
    gather_and_decide(
        state,
        agent.project,
        Actor::Agent(agent.agent),
        Some(agent.signing_key),
        event,
        decide_declaration,
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

/// The facts of a message-state event about `message`; the original answer when the
/// event was already applied (a retry, decided on the state before it took effect).
async fn gather_target(
    state: &AppState,
    facts: &mut WriteFacts,
    event: &Envelope,
    message: nexysync_domain::ids::EventId,
    emoji_ix: Option<&BlindIndex>,
) -> Result<Option<Appended>, ApiError> {
    let Actor::Agent(caller) = facts.caller else {
        // The owner writes no message state; decide refuses it by actor.
        return Ok(None);
    };
    let found = state
        .reads
        .state_facts(facts.project, caller, event.id, message, emoji_ix)
        .await?;
    facts.target = found.target;
    Ok(found
        .already_applied
        .filter(|(owner, _)| *owner == facts.project)
        .map(|(_, seq)| {
            facts.target = found.target.before(&event.body);
            Appended {
                id: event.id,
                seq,
                duplicate: true,
            }
        }))
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
        EventBody::RetentionSet(_) => {
            facts.owner_key = reads.owner_key(project).await?;
            facts.owner_key.is_none()
        }
        // Refused by actor: only the pruner writes tombstones, never through the API.
        EventBody::EventsErased(_) => false,
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
                facts.message_id_taken = found.id_taken;
            } else if let Some(lookup) = known_recipient {
                facts.recipient = lookup;
            }
            facts.quota = Some(quota_of(state, project).await?);
            if sent.ttl_s.is_some() {
                // Only a message naming its TTL is checked against the project maximum;
                // the default applies in the read models (ADR 0012).
                facts.retention = reads.retention(project).await?;
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
            already_applied =
                shared_content_facts(state, project, event, shared.to, &mut facts, || async {
                    let found = reads.ref_facts(project, event.id, shared.to).await?;
                    Ok((found.already_applied, found.recipient))
                })
                .await?;
            facts.quota = Some(quota_of(state, project).await?);
            facts.recipient == Lookup::Missing
        }
        // The signature and the sealed fields are all there is to decide on.
        EventBody::AgentProfileUpdated(_) => false,
        EventBody::FileShared(shared) => {
            already_applied =
                shared_content_facts(state, project, event, shared.to, &mut facts, || async {
                    let found = reads.file_facts(project, event.id, shared.to).await?;
                    Ok((found.already_applied, found.recipient))
                })
                .await?;
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
        EventBody::ReactionAdded(reaction) | EventBody::ReactionRemoved(reaction) => {
            already_applied = gather_target(
                state,
                &mut facts,
                event,
                reaction.message,
                Some(&reaction.emoji_ix),
            )
            .await?;
            facts.target.lookup == Lookup::Missing
        }
        EventBody::MessageRead(target)
        | EventBody::MessagePinned(target)
        | EventBody::MessageUnpinned(target)
        | EventBody::MessageDeleted(target) => {
            already_applied = gather_target(state, &mut facts, event, target.message, None).await?;
            facts.target.lookup == Lookup::Missing
        }
    };
    Ok(Known {
        facts,
        already_applied,
        something_missing,
    })
}

/// The facts of content shared with `to` (or everyone when `None`), as a code reference or
/// a file: the recipient from this instance's directory when it knows it and the log
/// would catch a retry, else from the read models (`look_up`: the original sequence of
/// this event id if it was applied already, and the recipient). Answers the original
/// append of a retry.
async fn shared_content_facts<F, Fut>(
    state: &AppState,
    project: ProjectId,
    event: &Envelope,
    to: Option<nexysync_domain::ids::AgentId>,
    facts: &mut WriteFacts,
    look_up: F,
) -> Result<Option<Appended>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<
        Output = Result<
            (Option<(ProjectId, nexysync_domain::ids::Seq)>, Lookup),
            nexysync_projections::ProjectionError,
        >,
    >,
{
    let known_recipient = to.and_then(|to| state.directory.lookup(project, to));
    let log_catches_retries = nexysync_log::deduplicates(event.id, now_millis());
    if log_catches_retries && (to.is_none() || known_recipient.is_some()) {
        if let Some(lookup) = known_recipient {
            facts.recipient = lookup;
        }
        return Ok(None);
    }
    let (applied, recipient) = look_up().await?;
    if let (Some(to), Lookup::Found) = (to, recipient) {
        state.directory.remember(to, project);
    }
    facts.recipient = recipient;
    Ok(applied
        .filter(|(owner, _)| *owner == project)
        .map(|(_, seq)| Appended {
            id: event.id,
            seq,
            duplicate: true,
        }))
}
