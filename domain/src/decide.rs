//! The pure decision the server makes before appending a client's event: given what it
//! knows ([`WriteFacts`]), is this signed event allowed on the project's log?
//!
//! The API gathers the facts (registered keys, whether a recipient or `reply_to`
//! exists); this module holds every rule, so the rules are tested without any server.

use crate::crypto::file_stream::FILE_CHUNK_SIZE;
use crate::crypto::PublicKey;
use crate::event::{
    fields, Actor, Envelope, EventBody, EventKind, RetentionPolicy, ENVELOPE_VERSION,
    MAX_FILE_BYTES, MAX_REF_LINES,
};
use crate::ids::{AgentId, AgentName, EventId, ProjectId};
use crate::quota::{Quota, QuotaLimit, QuotaReset};

/// Largest total ciphertext of one event's sealed fields (64 KiB of content plus overhead).
pub const MAX_SEALED_BYTES: usize = 64 * 1024 + 1024;
/// Longest time-to-live a message may ask for (90 days).
pub const MAX_TTL_S: u32 = 90 * 24 * 3600;
/// How far ahead of the server's clock an event's id may be dated. It must stay below the
/// slack the log keeps on its deduplication window, or a retry could outlive both.
pub const MAX_CLOCK_AHEAD_MS: u64 = 60_000;
/// How far an event's `at` may be from the time in its UUIDv7 id (both are the client's).
pub const MAX_AT_SKEW_MS: u64 = 60_000;

/// Whether something an event refers to exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lookup {
    /// The event refers to nothing of this sort.
    #[default]
    NotReferenced,
    Found,
    Missing,
    InAnotherProject,
}

/// Largest sealed content of a reaction: an emoji (or a short emoji sequence), not a
/// message by another name.
pub const MAX_EMOJI_SEALED_BYTES: usize = 256;

/// What the server knows of the message a message-state event (reaction, read, pin,
/// delete) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetFacts {
    /// `Found` only for a message of this project that the caller may read; anything
    /// else is refused as unknown, so nobody learns which ids exist elsewhere.
    pub lookup: Lookup,
    pub sender: Option<AgentId>,
    pub deleted: bool,
    pub pinned: bool,
    /// The caller already marked it read.
    pub read_by_caller: bool,
    /// The caller already reacted to it with the event's emoji (same `emoji_ix`).
    pub caller_reacted: bool,
}

impl TargetFacts {
    /// The facts as they were before `body` took effect: a retried event that the read
    /// models already applied is decided as its first attempt was.
    pub fn before(mut self, body: &EventBody) -> Self {
        match body {
            EventBody::ReactionAdded(_) => self.caller_reacted = false,
            EventBody::ReactionRemoved(_) => self.caller_reacted = true,
            EventBody::MessageRead(_) => self.read_by_caller = false,
            EventBody::MessagePinned(_) => self.pinned = false,
            EventBody::MessageUnpinned(_) => self.pinned = true,
            _ => {}
        }
        if !matches!(body, EventBody::MessageRead(_)) {
            // Nothing but a read mark applies to a deleted message, so before any other
            // state event it was not deleted yet.
            self.deleted = false;
        }
        self
    }
}

/// What the server knows when it decides.
#[derive(Debug, Clone)]
pub struct WriteFacts {
    /// The project the caller is scoped to (its token's project, or the admin's request).
    pub project: ProjectId,
    /// Who is calling: `Owner` through the admin routes, the token's agent otherwise.
    pub caller: Actor,
    /// The project's owner key, when the project exists.
    pub owner_key: Option<PublicKey>,
    /// The calling agent's registered signing key.
    pub caller_key: Option<PublicKey>,
    pub recipient: Lookup,
    pub reply_to: Lookup,
    /// An agent of this name already exists in the project.
    pub agent_name_taken: bool,
    /// An agent with this id already exists (in any project).
    pub agent_id_taken: bool,
    /// For a message: its id is another project's message, or was a message erased by
    /// retention (a retry of an applied message is answered before deciding).
    pub message_id_taken: bool,
    /// An agent already holds a token with this hash.
    pub token_hash_taken: bool,
    /// For a KV write: the key's current revision, `None` when it is absent or expired.
    pub kv_revision: Option<u64>,
    /// For a message-state event: the message it names.
    pub target: TargetFacts,
    /// For an event that counts against the quota (messages, refs): the project's
    /// limits and usage. `None`: not gathered, nothing is checked.
    pub quota: Option<Quota>,
    /// For a `file_deleted`: whether the file is shared in this project (and not deleted)
    /// and readable by the caller.
    pub file: Lookup,
    /// The project's retention policy in force (the last `project_created` or
    /// `retention_set`).
    pub retention: RetentionPolicy,
    /// The server's clock, Unix milliseconds.
    pub now_ms: u64,
}

impl WriteFacts {
    /// Facts with nothing known yet, at server time `now_ms`.
    pub fn new(project: ProjectId, caller: Actor, now_ms: u64) -> Self {
        Self {
            project,
            caller,
            owner_key: None,
            caller_key: None,
            recipient: Lookup::NotReferenced,
            reply_to: Lookup::NotReferenced,
            agent_name_taken: false,
            agent_id_taken: false,
            message_id_taken: false,
            token_hash_taken: false,
            kv_revision: None,
            target: TargetFacts::default(),
            quota: None,
            file: Lookup::NotReferenced,
            retention: RetentionPolicy::default(),
            now_ms,
        }
    }
}

/// Why an event was refused. Each variant names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("event envelope version {found} is not supported (this server writes version {ENVELOPE_VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("event is for project {found}, but the caller belongs to project {expected}")]
    WrongProject {
        expected: ProjectId,
        found: ProjectId,
    },
    #[error("event names {claimed} as its actor, but the caller is {caller}")]
    ActorIsNotCaller { claimed: Actor, caller: Actor },
    #[error("{kind} events can only be written by {allowed}")]
    NotAllowedForActor {
        kind: &'static str,
        allowed: &'static str,
    },
    #[error("project {0} already exists")]
    ProjectAlreadyExists(ProjectId),
    #[error("project {0} does not exist")]
    UnknownProject(ProjectId),
    #[error("signature does not verify against the actor's registered public key")]
    BadSignature,
    #[error("events must not carry `prev`: the log sets the chain link when it appends")]
    ChainSetByClient,
    #[error("sealed field `{0}` is required")]
    MissingSealedField(&'static str),
    #[error("sealed field `{0}` is not allowed here")]
    UnexpectedSealedField(String),
    #[error("sealed content is {found} bytes; the limit is {limit}")]
    ContentTooLarge { found: usize, limit: usize },
    #[error("no agent {0} in this project")]
    UnknownRecipient(AgentId),
    #[error("reply_to names message {0}, which is not a message of this project")]
    ReplyToUnknownMessage(EventId),
    #[error("event id {id} is dated {ahead_ms} ms ahead of the server's clock (at most {MAX_CLOCK_AHEAD_MS} ms): check this machine's clock")]
    EventFromTheFuture { id: EventId, ahead_ms: u64 },
    #[error("event id {id} was made {age_ms} ms ago, too long before it reached the server for a new message or reference (it counts on the day of its `at`): sign it again with a fresh id, and check this machine's clock")]
    EventTooOld { id: EventId, age_ms: u64 },
    #[error(
        "the event's `at` is {skew_ms} ms from the time in its id (at most {MAX_AT_SKEW_MS} ms)"
    )]
    TimestampMismatch { skew_ms: u64 },
    #[error("another agent already holds this token; generate a new one")]
    TokenTaken,
    #[error("an agent named `{0}` already exists in this project")]
    AgentNameTaken(AgentName),
    #[error("agent id {0} is already registered")]
    AgentIdTaken(AgentId),
    #[error(
        "message id {0} is already used by another message; sign the message again with a fresh id"
    )]
    MessageIdTaken(EventId),
    #[error("ttl_s must be between 1 and {MAX_TTL_S} seconds")]
    InvalidTtl,
    #[error("ttl_s {ttl_s} is above this project's maximum of {max_ttl_s} seconds; ask for at most {max_ttl_s}")]
    TtlAboveProjectMaximum { ttl_s: u32, max_ttl_s: u32 },
    #[error("invalid retention policy: default_ttl_s and max_ttl_s must be between 1 and {MAX_TTL_S} seconds, and the default at most the maximum")]
    InvalidRetentionPolicy,
    #[error("compare-and-set failed: expected revision {expected}, but the key's current_revision is {current} (0: the key does not exist); read the key again and retry")]
    RevisionMismatch { expected: u64, current: u64 },
    #[error("no such key (it was never set, was deleted, or expired)")]
    KvKeyNotFound,
    #[error("invalid line range {start_line}..={end_line}: start_line must be at least 1, end_line at least start_line, and the span at most {MAX_REF_LINES} lines")]
    InvalidLineRange { start_line: u32, end_line: u32 },
    #[error("no message {0} that you may read")]
    UnknownMessage(EventId),
    #[error("only the sender of message {0} may delete it")]
    NotTheSender(EventId),
    #[error(
        "message {0} was deleted; it can no longer be reacted to, pinned, unpinned or deleted"
    )]
    MessageDeleted(EventId),
    #[error(
        "you already reacted to message {0} with this emoji (a reaction_removed takes it back)"
    )]
    AlreadyReacted(EventId),
    #[error("you have no reaction with this emoji on message {0}")]
    ReactionNotFound(EventId),
    #[error("you already marked message {0} read")]
    AlreadyRead(EventId),
    #[error("message {0} is already pinned")]
    AlreadyPinned(EventId),
    #[error("message {0} is not pinned")]
    NotPinned(EventId),
    #[error("quota exceeded: {}", crate::quota::explain(*limit, *value, *used, *resets))]
    QuotaExceeded {
        limit: QuotaLimit,
        value: u64,
        used: u64,
        resets: QuotaReset,
    },
    #[error("invalid file metadata: chunk_size must be {FILE_CHUNK_SIZE}, size at most {MAX_FILE_BYTES} bytes, ciphertext_size the encrypted length of size, and digest 64 lowercase hex digits")]
    InvalidFileMetadata,
    #[error("no file {0} that you may read (it was never shared with you, or was deleted)")]
    FileNotFound(EventId),
}

impl Rejection {
    /// A stable, machine-readable code for the API's error shape.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::WrongProject { .. } => "wrong_project",
            Self::ActorIsNotCaller { .. } => "actor_is_not_caller",
            Self::NotAllowedForActor { .. } => "not_allowed_for_actor",
            Self::ProjectAlreadyExists(_) => "project_already_exists",
            Self::UnknownProject(_) => "unknown_project",
            Self::BadSignature => "bad_signature",
            Self::ChainSetByClient => "chain_set_by_client",
            Self::MissingSealedField(_) => "missing_sealed_field",
            Self::UnexpectedSealedField(_) => "unexpected_sealed_field",
            Self::ContentTooLarge { .. } => "content_too_large",
            Self::UnknownRecipient(_) => "unknown_recipient",
            Self::ReplyToUnknownMessage(_) => "reply_to_unknown_message",
            Self::EventFromTheFuture { .. } => "event_from_the_future",
            Self::EventTooOld { .. } => "event_too_old",
            Self::TimestampMismatch { .. } => "timestamp_mismatch",
            Self::TokenTaken => "token_taken",
            Self::AgentNameTaken(_) => "agent_name_taken",
            Self::AgentIdTaken(_) => "agent_id_taken",
            Self::MessageIdTaken(_) => "message_id_taken",
            Self::InvalidTtl => "invalid_ttl",
            Self::TtlAboveProjectMaximum { .. } => "ttl_above_maximum",
            Self::InvalidRetentionPolicy => "invalid_retention_policy",
            Self::RevisionMismatch { .. } => "revision_mismatch",
            Self::KvKeyNotFound => "key_not_found",
            Self::InvalidLineRange { .. } => "invalid_line_range",
            Self::UnknownMessage(_) => "message_not_found",
            Self::NotTheSender(_) => "not_the_sender",
            Self::MessageDeleted(_) => "message_deleted",
            Self::AlreadyReacted(_) => "already_reacted",
            Self::ReactionNotFound(_) => "reaction_not_found",
            Self::AlreadyRead(_) => "already_read",
            Self::AlreadyPinned(_) => "already_pinned",
            Self::NotPinned(_) => "not_pinned",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::InvalidFileMetadata => "invalid_file_metadata",
            Self::FileNotFound(_) => "file_not_found",
        }
    }
}

/// Decides whether `event` may be appended to its project's log.
pub fn decide(facts: &WriteFacts, event: &Envelope) -> Result<(), Rejection> {
    decide_event(facts, event, Digest::Required)
}

/// Decides a declared `file_shared` (ADR 0008): as [`decide`], except that its digest may
/// be left empty for the CDN to measure ([`crate::event::FileShared::digest_is_pending`]).
/// Its commit brings the digest and is decided again, with [`decide`], before it is
/// appended.
pub fn decide_declaration(facts: &WriteFacts, event: &Envelope) -> Result<(), Rejection> {
    decide_event(facts, event, Digest::MayBePending)
}

/// Whether a `file_shared` must carry its digest already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Required,
    MayBePending,
}

fn decide_event(facts: &WriteFacts, event: &Envelope, digest: Digest) -> Result<(), Rejection> {
    if event.v != ENVELOPE_VERSION {
        return Err(Rejection::UnsupportedVersion { found: event.v });
    }
    if event.project != facts.project {
        return Err(Rejection::WrongProject {
            expected: facts.project,
            found: event.project,
        });
    }
    if event.actor != facts.caller {
        return Err(Rejection::ActorIsNotCaller {
            claimed: event.actor,
            caller: facts.caller,
        });
    }
    if event.prev.is_some() {
        return Err(Rejection::ChainSetByClient);
    }
    let made = event.id.unix_millis();
    if made > facts.now_ms + MAX_CLOCK_AHEAD_MS {
        return Err(Rejection::EventFromTheFuture {
            id: event.id,
            ahead_ms: made - facts.now_ms,
        });
    }
    let skew_ms = (event.at.max(0) as u64).abs_diff(made);
    if skew_ms > MAX_AT_SKEW_MS {
        return Err(Rejection::TimestampMismatch { skew_ms });
    }
    let kind = event.body.kind();
    if kind == EventKind::EventsErased {
        // Tombstones are the pruner's, appended by the server itself, never by a client.
        return Err(Rejection::NotAllowedForActor {
            kind: kind.as_str(),
            allowed: "the server's pruner",
        });
    }
    let owner_only = matches!(
        kind,
        EventKind::ProjectCreated | EventKind::AgentRegistered | EventKind::RetentionSet
    );
    match (owner_only, event.actor) {
        (true, Actor::Agent(_)) => {
            return Err(Rejection::NotAllowedForActor {
                kind: kind.as_str(),
                allowed: "the project owner",
            })
        }
        (false, Actor::Owner) => {
            return Err(Rejection::NotAllowedForActor {
                kind: kind.as_str(),
                allowed: "an agent",
            })
        }
        _ => {}
    }
    let sealed_len = event.sealed_len();
    if sealed_len > MAX_SEALED_BYTES {
        return Err(Rejection::ContentTooLarge {
            found: sealed_len,
            limit: MAX_SEALED_BYTES,
        });
    }

    match &event.body {
        EventBody::ProjectCreated(created) => {
            if facts.owner_key.is_some() {
                return Err(Rejection::ProjectAlreadyExists(event.project));
            }
            // The project's first event is signed by the key it introduces.
            verify(event, &created.owner_key)?;
            check_policy(&created.retention)?;
            expect_sealed_fields(event, &[], &[])
        }
        EventBody::RetentionSet(policy) => {
            let owner_key = facts
                .owner_key
                .ok_or(Rejection::UnknownProject(event.project))?;
            verify(event, &owner_key)?;
            check_policy(policy)?;
            expect_sealed_fields(event, &[], &[])
        }
        EventBody::EventsErased(_) => Err(Rejection::NotAllowedForActor {
            kind: kind.as_str(),
            allowed: "the server's pruner",
        }),
        EventBody::AgentRegistered(registered) => {
            let owner_key = facts
                .owner_key
                .ok_or(Rejection::UnknownProject(event.project))?;
            verify(event, &owner_key)?;
            if facts.agent_id_taken {
                return Err(Rejection::AgentIdTaken(registered.agent));
            }
            if facts.agent_name_taken {
                return Err(Rejection::AgentNameTaken(registered.name.clone()));
            }
            if facts.token_hash_taken {
                return Err(Rejection::TokenTaken);
            }
            expect_sealed_fields(event, &[], &[])
        }
        EventBody::MessageSent(sent) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            expect_sealed_fields(
                event,
                &[fields::BODY],
                if sent.topic_ix.is_some() {
                    &[fields::TOPIC][..]
                } else {
                    &[]
                },
            )?;
            if sent.topic_ix.is_none() && event.sealed.contains_key(fields::TOPIC) {
                return Err(Rejection::UnexpectedSealedField(fields::TOPIC.into()));
            }
            if facts.message_id_taken {
                // The read models would keep the other message and skip this one: better
                // a refusal than an accepted message nobody can read. It confirms only an
                // id the caller already holds.
                return Err(Rejection::MessageIdTaken(event.id));
            }
            if sent.ttl_s.is_some_and(|ttl| ttl == 0 || ttl > MAX_TTL_S) {
                return Err(Rejection::InvalidTtl);
            }
            if let (Some(ttl_s), Some(max_ttl_s)) = (sent.ttl_s, facts.retention.max_ttl_s) {
                if ttl_s > max_ttl_s {
                    return Err(Rejection::TtlAboveProjectMaximum { ttl_s, max_ttl_s });
                }
            }
            if let Some(to) = sent.to {
                if facts.recipient != Lookup::Found {
                    return Err(Rejection::UnknownRecipient(to));
                }
            }
            if let Some(parent) = sent.reply_to {
                // A message of another project is "unknown" too: saying more would tell an
                // agent which ids exist elsewhere.
                if facts.reply_to != Lookup::Found {
                    return Err(Rejection::ReplyToUnknownMessage(parent));
                }
            }
            check_quota(facts, sealed_len)
        }
        EventBody::KvSet(set) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            expect_sealed_fields(event, &[fields::KEY, fields::VALUE], &[])?;
            if set.ttl_s.is_some_and(|ttl| ttl == 0 || ttl > MAX_TTL_S) {
                return Err(Rejection::InvalidTtl);
            }
            compare_revision(set.expected_revision, facts.kv_revision)
        }
        EventBody::KvDeleted(deleted) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            expect_sealed_fields(event, &[], &[])?;
            compare_revision(deleted.expected_revision, facts.kv_revision)?;
            if facts.kv_revision.is_none() {
                return Err(Rejection::KvKeyNotFound);
            }
            Ok(())
        }
        EventBody::RefShared(shared) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            for field in [fields::PATH, fields::SNIPPET] {
                if !event.sealed.contains_key(field) {
                    return Err(Rejection::MissingSealedField(field));
                }
            }
            expect_only_sealed_fields(
                event,
                &[
                    fields::PATH,
                    fields::SNIPPET,
                    fields::NOTE,
                    fields::LANGUAGE,
                    fields::COMMIT,
                ],
            )?;
            if !shared.lines_are_valid() {
                return Err(Rejection::InvalidLineRange {
                    start_line: shared.start_line,
                    end_line: shared.end_line,
                });
            }
            if let Some(to) = shared.to {
                if facts.recipient != Lookup::Found {
                    return Err(Rejection::UnknownRecipient(to));
                }
            }
            check_quota(facts, sealed_len)
        }
        EventBody::ReactionAdded(reaction) => {
            let target = readable_target(facts, event, reaction.message)?;
            expect_sealed_fields(event, &[fields::EMOJI], &[])?;
            if event.sealed_len() > MAX_EMOJI_SEALED_BYTES {
                return Err(Rejection::ContentTooLarge {
                    found: event.sealed_len(),
                    limit: MAX_EMOJI_SEALED_BYTES,
                });
            }
            not_deleted(target, reaction.message)?;
            if target.caller_reacted {
                return Err(Rejection::AlreadyReacted(reaction.message));
            }
            Ok(())
        }
        EventBody::ReactionRemoved(reaction) => {
            let target = readable_target(facts, event, reaction.message)?;
            expect_sealed_fields(event, &[], &[])?;
            not_deleted(target, reaction.message)?;
            if !target.caller_reacted {
                return Err(Rejection::ReactionNotFound(reaction.message));
            }
            Ok(())
        }
        EventBody::MessageRead(read) => {
            let target = readable_target(facts, event, read.message)?;
            expect_sealed_fields(event, &[], &[])?;
            // A deleted message may still be marked read: it stays in the inbox as a node.
            if target.read_by_caller {
                return Err(Rejection::AlreadyRead(read.message));
            }
            Ok(())
        }
        EventBody::MessagePinned(pinned) => {
            let target = readable_target(facts, event, pinned.message)?;
            expect_sealed_fields(event, &[], &[])?;
            not_deleted(target, pinned.message)?;
            if target.pinned {
                return Err(Rejection::AlreadyPinned(pinned.message));
            }
            Ok(())
        }
        EventBody::MessageUnpinned(unpinned) => {
            let target = readable_target(facts, event, unpinned.message)?;
            expect_sealed_fields(event, &[], &[])?;
            not_deleted(target, unpinned.message)?;
            if !target.pinned {
                return Err(Rejection::NotPinned(unpinned.message));
            }
            Ok(())
        }
        EventBody::MessageDeleted(deleted) => {
            let target = readable_target(facts, event, deleted.message)?;
            expect_sealed_fields(event, &[], &[])?;
            if target.sender.map(Actor::Agent) != Some(event.actor) {
                return Err(Rejection::NotTheSender(deleted.message));
            }
            not_deleted(target, deleted.message)
        }
        EventBody::AgentProfileUpdated(_) => {
            // The profile is the actor's own: the signature by the caller's registered
            // key is what makes it "only for itself".
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            for field in [fields::ROLE] {
                if !event.sealed.contains_key(field) {
                    return Err(Rejection::MissingSealedField(field));
                }
            }
            expect_only_sealed_fields(event, &[fields::ROLE, fields::DESCRIPTION])
        }
        EventBody::FileShared(shared) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            if !event.sealed.contains_key(fields::NAME) {
                return Err(Rejection::MissingSealedField(fields::NAME));
            }
            expect_only_sealed_fields(event, &[fields::NAME, fields::MEDIA_TYPE])?;
            let well_formed = match digest {
                Digest::Required => shared.is_well_formed(),
                Digest::MayBePending => shared.is_well_formed_declaration(),
            };
            if !well_formed {
                return Err(Rejection::InvalidFileMetadata);
            }
            if let Some(to) = shared.to {
                if facts.recipient != Lookup::Found {
                    return Err(Rejection::UnknownRecipient(to));
                }
            }
            Ok(())
        }
        EventBody::FileDeleted(deleted) => {
            let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
            verify(event, &caller_key)?;
            expect_sealed_fields(event, &[], &[])?;
            // Another project's file is as unknown as a missing one.
            if facts.file != Lookup::Found {
                return Err(Rejection::FileNotFound(deleted.file));
            }
            Ok(())
        }
    }
}

/// A retention policy is consistent and within the server's own TTL limit.
fn check_policy(policy: &RetentionPolicy) -> Result<(), Rejection> {
    let in_range = |ttl: Option<u32>| ttl.is_none_or(|ttl| (1..=MAX_TTL_S).contains(&ttl));
    if !policy.is_consistent() || !in_range(policy.default_ttl_s) || !in_range(policy.max_ttl_s) {
        return Err(Rejection::InvalidRetentionPolicy);
    }
    Ok(())
}

/// The quota rules of a content-bearing event, when the write path gathered them.
fn check_quota(facts: &WriteFacts, sealed_len: usize) -> Result<(), Rejection> {
    match &facts.quota {
        Some(quota) => quota.check_message(sealed_len as u64, facts.now_ms),
        None => Ok(()),
    }
}

/// A message-state event is signed by its agent and names a message of this project the
/// agent may read.
fn readable_target<'f>(
    facts: &'f WriteFacts,
    event: &Envelope,
    message: EventId,
) -> Result<&'f TargetFacts, Rejection> {
    let caller_key = facts.caller_key.ok_or(Rejection::BadSignature)?;
    verify(event, &caller_key)?;
    if facts.target.lookup != Lookup::Found {
        return Err(Rejection::UnknownMessage(message));
    }
    Ok(&facts.target)
}

fn not_deleted(target: &TargetFacts, message: EventId) -> Result<(), Rejection> {
    if target.deleted {
        return Err(Rejection::MessageDeleted(message));
    }
    Ok(())
}

/// Every sealed field of `event` is one of `allowed` (the required ones were checked).
fn expect_only_sealed_fields(event: &Envelope, allowed: &[&str]) -> Result<(), Rejection> {
    match event
        .sealed
        .keys()
        .find(|name| !allowed.contains(&name.as_str()))
    {
        Some(name) => Err(Rejection::UnexpectedSealedField(name.clone())),
        None => Ok(()),
    }
}

/// Compare-and-set: `expected` (when given) must be the key's live revision, `0` for a
/// key that is absent or expired.
fn compare_revision(expected: Option<u64>, current: Option<u64>) -> Result<(), Rejection> {
    let current = current.unwrap_or(0);
    match expected {
        Some(expected) if expected != current => {
            Err(Rejection::RevisionMismatch { expected, current })
        }
        _ => Ok(()),
    }
}

fn verify(event: &Envelope, key: &PublicKey) -> Result<(), Rejection> {
    event
        .verify_signature(key)
        .map_err(|_| Rejection::BadSignature)
}

/// Every `required` field present; nothing beyond `required` and `also_required`.
fn expect_sealed_fields(
    event: &Envelope,
    required: &[&'static str],
    also_required: &[&'static str],
) -> Result<(), Rejection> {
    for field in required.iter().chain(also_required) {
        if !event.sealed.contains_key(*field) {
            return Err(Rejection::MissingSealedField(field));
        }
    }
    for name in event.sealed.keys() {
        if !required.contains(&name.as_str()) && !also_required.contains(&name.as_str()) {
            return Err(Rejection::UnexpectedSealedField(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use crate::event::MessageSent;
    use crate::test_support::{message_from, message_with, Project};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn an_event_dated_in_the_future_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "hi");
        let mut facts = facts_for(&project, &alice);
        facts.now_ms = event.id.unix_millis() - 5 * 60_000;
        assert!(matches!(
            decide(&facts, &event),
            Err(Rejection::EventFromTheFuture { .. })
        ));
    }

    #[test]
    fn an_at_far_from_the_ids_time_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut draft = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::MessageSent(MessageSent {
                to: None,
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        );
        draft.at += 24 * 3600 * 1000;
        let event = draft
            .seal(&project.keys, fields::BODY, b"later")
            .sign(&alice.key);
        assert!(matches!(
            decide(&facts_for(&project, &alice), &event),
            Err(Rejection::TimestampMismatch { .. })
        ));
    }

    #[test]
    fn a_message_whose_id_is_taken_is_refused_naming_it() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "hi");
        let mut facts = facts_for(&project, &alice);
        assert!(decide(&facts, &event).is_ok());
        facts.message_id_taken = true;
        let refused = decide(&facts, &event).unwrap_err();
        assert_eq!(refused, Rejection::MessageIdTaken(event.id));
        assert_eq!(refused.code(), "message_id_taken");
        assert!(refused.to_string().contains(&event.id.to_string()));
    }

    fn facts_for(project: &Project, sender: &crate::test_support::Agent) -> WriteFacts {
        WriteFacts {
            owner_key: Some(project.owner.public_key()),
            caller_key: Some(sender.key.public_key()),
            ..WriteFacts::new(project.id, Actor::Agent(sender.id), now())
        }
    }

    fn mortal(project: &Project, alice: &crate::test_support::Agent, ttl_s: u32) -> Envelope {
        let meta = MessageSent {
            to: None,
            reply_to: None,
            ttl_s: Some(ttl_s),
            topic_ix: None,
        };
        message_with(project, alice, meta, "soon gone")
    }

    #[test]
    fn a_ttl_above_the_project_maximum_is_refused_naming_the_maximum() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut facts = facts_for(&project, &alice);
        facts.retention = RetentionPolicy {
            default_ttl_s: None,
            max_ttl_s: Some(3600),
        };
        let refused = decide(&facts, &mortal(&project, &alice, 3601)).unwrap_err();
        assert_eq!(
            refused,
            Rejection::TtlAboveProjectMaximum {
                ttl_s: 3601,
                max_ttl_s: 3600
            }
        );
        assert!(refused.to_string().contains("maximum of 3600 seconds"));
        assert_eq!(refused.code(), "ttl_above_maximum");
        assert_eq!(decide(&facts, &mortal(&project, &alice, 3600)), Ok(()));
    }

    #[test]
    fn a_retention_policy_is_set_by_the_owner_only_and_must_be_consistent() {
        let project = Project::new();
        let alice = project.agent("alice");
        let set = |policy| {
            crate::event::Draft::new(project.id, Actor::Owner, EventBody::RetentionSet(policy))
                .sign(&project.owner)
        };
        let owner = WriteFacts {
            owner_key: Some(project.owner.public_key()),
            ..WriteFacts::new(project.id, Actor::Owner, now())
        };
        let good = RetentionPolicy {
            default_ttl_s: Some(60),
            max_ttl_s: Some(3600),
        };
        assert_eq!(decide(&owner, &set(good)), Ok(()));
        let inverted = RetentionPolicy {
            default_ttl_s: Some(7200),
            max_ttl_s: Some(3600),
        };
        assert_eq!(
            decide(&owner, &set(inverted)),
            Err(Rejection::InvalidRetentionPolicy)
        );
        let by_agent = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::RetentionSet(good),
        )
        .sign(&alice.key);
        assert!(matches!(
            decide(&facts_for(&project, &alice), &by_agent),
            Err(Rejection::NotAllowedForActor { .. })
        ));
    }

    #[test]
    fn a_client_cannot_append_a_tombstone() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut tombstone = Envelope::tombstone(
            crate::ids::EventId::generate(),
            project.id,
            now() as i64,
            crate::event::EventsErased { erased: vec![] },
        );
        tombstone.actor = Actor::Agent(alice.id);
        assert!(matches!(
            decide(&facts_for(&project, &alice), &tombstone),
            Err(Rejection::NotAllowedForActor { .. })
        ));
    }

    #[test]
    fn a_well_formed_broadcast_is_accepted() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "hi all");
        assert_eq!(decide(&facts_for(&project, &alice), &event), Ok(()));
    }

    #[test]
    fn a_bad_signature_is_rejected() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut event = message_from(&project, &alice, "hi");
        event.sig.flip_bit_for_test(9);
        assert_eq!(
            decide(&facts_for(&project, &alice), &event),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn an_event_signed_by_another_key_is_rejected() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut facts = facts_for(&project, &alice);
        facts.caller_key = Some(SigningKey::generate().public_key());
        let event = message_from(&project, &alice, "hi");
        assert_eq!(decide(&facts, &event), Err(Rejection::BadSignature));
    }

    #[test]
    fn a_changed_recipient_breaks_the_signature() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut event = message_from(&project, &alice, "hi");
        if let EventBody::MessageSent(sent) = &mut event.body {
            sent.to = Some(crate::ids::AgentId::generate());
        }
        let mut facts = facts_for(&project, &alice);
        facts.recipient = Lookup::Found;
        assert_eq!(decide(&facts, &event), Err(Rejection::BadSignature));
    }

    #[test]
    fn a_message_to_an_unknown_agent_is_rejected() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = crate::ids::AgentId::generate();
        let event = message_with(
            &project,
            &alice,
            MessageSent {
                to: Some(bob),
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            },
            "hi",
        );
        let mut facts = facts_for(&project, &alice);
        facts.recipient = Lookup::Missing;
        assert_eq!(
            decide(&facts, &event),
            Err(Rejection::UnknownRecipient(bob))
        );
    }

    #[test]
    fn a_reply_to_another_projects_message_is_as_unknown_as_a_missing_one() {
        let project = Project::new();
        let alice = project.agent("alice");
        let parent = EventId::generate();
        let event = message_with(
            &project,
            &alice,
            MessageSent {
                to: None,
                reply_to: Some(parent),
                ttl_s: None,
                topic_ix: None,
            },
            "re",
        );
        let mut facts = facts_for(&project, &alice);
        facts.reply_to = Lookup::InAnotherProject;
        assert_eq!(
            decide(&facts, &event),
            Err(Rejection::ReplyToUnknownMessage(parent))
        );
        facts.reply_to = Lookup::Missing;
        assert_eq!(
            decide(&facts, &event),
            Err(Rejection::ReplyToUnknownMessage(parent))
        );
    }

    #[test]
    fn an_agent_cannot_write_for_another_project_or_actor() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, "hi");
        let mut facts = facts_for(&project, &alice);
        facts.project = ProjectId::generate();
        assert!(matches!(
            decide(&facts, &event),
            Err(Rejection::WrongProject { .. })
        ));
        let mut facts = facts_for(&project, &alice);
        facts.caller = Actor::Agent(crate::ids::AgentId::generate());
        assert!(matches!(
            decide(&facts, &event),
            Err(Rejection::ActorIsNotCaller { .. })
        ));
    }

    #[test]
    fn a_client_cannot_choose_the_chain_link() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut event = message_from(&project, &alice, "hi");
        event.prev = Some(crate::event::ChainLink {
            seq: crate::ids::Seq(1),
            hash: event.hash(),
        });
        assert_eq!(
            decide(&facts_for(&project, &alice), &event),
            Err(Rejection::ChainSetByClient)
        );
    }

    #[test]
    fn a_message_without_a_sealed_body_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::MessageSent(MessageSent {
                to: None,
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        )
        .sign(&alice.key);
        assert_eq!(
            decide(&facts_for(&project, &alice), &event),
            Err(Rejection::MissingSealedField(fields::BODY))
        );
    }

    #[test]
    fn oversize_content_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = message_from(&project, &alice, &"x".repeat(MAX_SEALED_BYTES));
        assert!(matches!(
            decide(&facts_for(&project, &alice), &event),
            Err(Rejection::ContentTooLarge { .. })
        ));
    }

    fn kv_set(
        project: &Project,
        from: &crate::test_support::Agent,
        expected: Option<u64>,
    ) -> Envelope {
        crate::event::Draft::new(
            project.id,
            Actor::Agent(from.id),
            EventBody::KvSet(crate::event::KvSet {
                key_ix: project
                    .keys
                    .blind_index(crate::event::KV_NAMESPACE, "lease:a"),
                expected_revision: expected,
                ttl_s: Some(60),
            }),
        )
        .seal(&project.keys, fields::KEY, b"lease:a")
        .seal(&project.keys, fields::VALUE, b"alice")
        .sign(&from.key)
    }

    #[test]
    fn a_compare_and_set_against_the_current_revision_is_accepted() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut facts = facts_for(&project, &alice);
        assert_eq!(decide(&facts, &kv_set(&project, &alice, Some(0))), Ok(()));
        assert_eq!(decide(&facts, &kv_set(&project, &alice, None)), Ok(()));
        facts.kv_revision = Some(7);
        assert_eq!(decide(&facts, &kv_set(&project, &alice, Some(7))), Ok(()));
    }

    #[test]
    fn a_stale_compare_and_set_names_the_current_revision() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut facts = facts_for(&project, &alice);
        facts.kv_revision = Some(9);
        let refused = decide(&facts, &kv_set(&project, &alice, Some(0))).unwrap_err();
        assert_eq!(
            refused,
            Rejection::RevisionMismatch {
                expected: 0,
                current: 9
            }
        );
        assert!(refused.to_string().contains("current_revision is 9"));
        facts.kv_revision = None;
        assert_eq!(
            decide(&facts, &kv_set(&project, &alice, Some(9))),
            Err(Rejection::RevisionMismatch {
                expected: 9,
                current: 0
            })
        );
    }

    #[test]
    fn deleting_an_absent_key_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::KvDeleted(crate::event::KvDeleted {
                key_ix: project.keys.blind_index(crate::event::KV_NAMESPACE, "k"),
                expected_revision: None,
            }),
        )
        .sign(&alice.key);
        let mut facts = facts_for(&project, &alice);
        assert_eq!(decide(&facts, &event), Err(Rejection::KvKeyNotFound));
        facts.kv_revision = Some(3);
        assert_eq!(decide(&facts, &event), Ok(()));
    }

    fn ref_shared(
        project: &Project,
        from: &crate::test_support::Agent,
        to: Option<AgentId>,
        lines: (u32, u32),
    ) -> crate::event::Draft {
        crate::event::Draft::new(
            project.id,
            Actor::Agent(from.id),
            EventBody::RefShared(crate::event::RefShared {
                to,
                start_line: lines.0,
                end_line: lines.1,
            }),
        )
        .seal(&project.keys, fields::PATH, b"src/lib.rs")
        .seal(&project.keys, fields::SNIPPET, b"fn main() {}")
    }

    #[test]
    fn a_ref_with_optional_fields_to_a_known_agent_is_accepted() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let mut facts = facts_for(&project, &alice);
        let event = ref_shared(&project, &alice, Some(bob.id), (3, 3))
            .seal(&project.keys, fields::NOTE, b"look")
            .seal(&project.keys, fields::LANGUAGE, b"rust")
            .seal(&project.keys, fields::COMMIT, b"main")
            .sign(&alice.key);
        facts.recipient = Lookup::Found;
        assert_eq!(decide(&facts, &event), Ok(()));
        facts.recipient = Lookup::Missing;
        assert_eq!(
            decide(&facts, &event),
            Err(Rejection::UnknownRecipient(bob.id))
        );
    }

    #[test]
    fn a_ref_with_a_bad_line_range_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let facts = facts_for(&project, &alice);
        for lines in [(0, 1), (5, 4), (1, MAX_REF_LINES + 1)] {
            let event = ref_shared(&project, &alice, None, lines).sign(&alice.key);
            assert!(matches!(
                decide(&facts, &event),
                Err(Rejection::InvalidLineRange { .. })
            ));
        }
        let widest = ref_shared(&project, &alice, None, (1, MAX_REF_LINES)).sign(&alice.key);
        assert_eq!(decide(&facts, &widest), Ok(()));
    }

    #[test]
    fn a_ref_without_its_snippet_or_with_a_stray_field_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let facts = facts_for(&project, &alice);
        let stray = ref_shared(&project, &alice, None, (1, 2))
            .seal(&project.keys, fields::BODY, b"x")
            .sign(&alice.key);
        assert_eq!(
            decide(&facts, &stray),
            Err(Rejection::UnexpectedSealedField(fields::BODY.into()))
        );
        let bare = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::RefShared(crate::event::RefShared {
                to: None,
                start_line: 1,
                end_line: 1,
            }),
        )
        .seal(&project.keys, fields::PATH, b"a.rs")
        .sign(&alice.key);
        assert_eq!(
            decide(&facts, &bare),
            Err(Rejection::MissingSealedField(fields::SNIPPET))
        );
        let forged = ref_shared(&project, &alice, None, (1, 2)).sign(&SigningKey::generate());
        assert_eq!(decide(&facts, &forged), Err(Rejection::BadSignature));
    }

    fn on_message(
        project: &Project,
        from: &crate::test_support::Agent,
        body: EventBody,
    ) -> crate::event::Draft {
        crate::event::Draft::new(project.id, Actor::Agent(from.id), body)
    }

    fn target(message: EventId) -> crate::event::MessageTarget {
        crate::event::MessageTarget { message }
    }

    fn reaction(project: &Project, message: EventId, emoji: &str) -> crate::event::Reaction {
        crate::event::Reaction {
            message,
            emoji_ix: crate::event::emoji_index(&project.keys, message, emoji),
        }
    }

    /// Facts of `caller` about a readable message sent by `sender`.
    fn facts_on(
        project: &Project,
        caller: &crate::test_support::Agent,
        sender: &crate::test_support::Agent,
    ) -> WriteFacts {
        let mut facts = facts_for(project, caller);
        facts.target = TargetFacts {
            lookup: Lookup::Found,
            sender: Some(sender.id),
            ..TargetFacts::default()
        };
        facts
    }

    #[test]
    fn a_reaction_to_a_readable_message_is_accepted_once_and_taken_back_once() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let message = EventId::generate();
        let added = on_message(
            &project,
            &bob,
            EventBody::ReactionAdded(reaction(&project, message, "👍")),
        )
        .seal(&project.keys, fields::EMOJI, "👍".as_bytes())
        .sign(&bob.key);
        let removed = on_message(
            &project,
            &bob,
            EventBody::ReactionRemoved(reaction(&project, message, "👍")),
        )
        .sign(&bob.key);
        let mut facts = facts_on(&project, &bob, &alice);
        assert_eq!(decide(&facts, &added), Ok(()));
        assert_eq!(
            decide(&facts, &removed),
            Err(Rejection::ReactionNotFound(message))
        );
        facts.target.caller_reacted = true;
        assert_eq!(
            decide(&facts, &added),
            Err(Rejection::AlreadyReacted(message))
        );
        assert_eq!(decide(&facts, &removed), Ok(()));
    }

    #[test]
    fn a_reaction_without_its_sealed_emoji_or_with_a_long_one_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let message = EventId::generate();
        let facts = facts_on(&project, &alice, &alice);
        let body = || EventBody::ReactionAdded(reaction(&project, message, "x"));
        let bare = on_message(&project, &alice, body()).sign(&alice.key);
        assert_eq!(
            decide(&facts, &bare),
            Err(Rejection::MissingSealedField(fields::EMOJI))
        );
        let long = on_message(&project, &alice, body())
            .seal(
                &project.keys,
                fields::EMOJI,
                &[b'x'; MAX_EMOJI_SEALED_BYTES],
            )
            .sign(&alice.key);
        assert!(matches!(
            decide(&facts, &long),
            Err(Rejection::ContentTooLarge { .. })
        ));
        let removal_with_content = on_message(
            &project,
            &alice,
            EventBody::ReactionRemoved(reaction(&project, message, "x")),
        )
        .seal(&project.keys, fields::EMOJI, b"x")
        .sign(&alice.key);
        assert_eq!(
            decide(&facts, &removal_with_content),
            Err(Rejection::UnexpectedSealedField(fields::EMOJI.into()))
        );
    }

    #[test]
    fn every_message_state_event_on_a_message_the_caller_may_not_read_is_refused_as_unknown() {
        let project = Project::new();
        let alice = project.agent("alice");
        let message = EventId::generate();
        let bodies = [
            EventBody::ReactionRemoved(reaction(&project, message, "x")),
            EventBody::MessageRead(target(message)),
            EventBody::MessagePinned(target(message)),
            EventBody::MessageUnpinned(target(message)),
            EventBody::MessageDeleted(target(message)),
        ];
        for lookup in [
            Lookup::Missing,
            Lookup::InAnotherProject,
            Lookup::NotReferenced,
        ] {
            let mut facts = facts_on(&project, &alice, &alice);
            facts.target.lookup = lookup;
            facts.target.pinned = true;
            facts.target.caller_reacted = true;
            for body in bodies.clone() {
                let event = on_message(&project, &alice, body).sign(&alice.key);
                assert_eq!(
                    decide(&facts, &event),
                    Err(Rejection::UnknownMessage(message))
                );
            }
        }
        let facts = facts_on(&project, &alice, &alice);
        let forged = on_message(&project, &alice, EventBody::MessageRead(target(message)))
            .sign(&SigningKey::generate());
        assert_eq!(decide(&facts, &forged), Err(Rejection::BadSignature));
    }

    #[test]
    fn only_the_sender_deletes_and_only_once() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let message = EventId::generate();
        let by = |agent: &crate::test_support::Agent| {
            on_message(&project, agent, EventBody::MessageDeleted(target(message))).sign(&agent.key)
        };
        let mut facts = facts_on(&project, &alice, &alice);
        assert_eq!(decide(&facts, &by(&alice)), Ok(()));
        facts.target.deleted = true;
        assert_eq!(
            decide(&facts, &by(&alice)),
            Err(Rejection::MessageDeleted(message))
        );
        let facts = facts_on(&project, &bob, &alice);
        assert_eq!(
            decide(&facts, &by(&bob)),
            Err(Rejection::NotTheSender(message))
        );
    }

    #[test]
    fn a_deleted_message_cannot_be_reacted_to_or_pinned_but_can_be_marked_read() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let message = EventId::generate();
        let mut facts = facts_on(&project, &bob, &alice);
        facts.target.deleted = true;
        let react = on_message(
            &project,
            &bob,
            EventBody::ReactionAdded(reaction(&project, message, "🎉")),
        )
        .seal(&project.keys, fields::EMOJI, "🎉".as_bytes())
        .sign(&bob.key);
        for event in [
            react,
            on_message(&project, &bob, EventBody::MessagePinned(target(message))).sign(&bob.key),
        ] {
            assert_eq!(
                decide(&facts, &event),
                Err(Rejection::MessageDeleted(message))
            );
        }
        let read =
            on_message(&project, &bob, EventBody::MessageRead(target(message))).sign(&bob.key);
        assert_eq!(decide(&facts, &read), Ok(()));
        facts.target.read_by_caller = true;
        assert_eq!(decide(&facts, &read), Err(Rejection::AlreadyRead(message)));
    }

    #[test]
    fn a_message_is_pinned_then_unpinned_and_neither_twice() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let message = EventId::generate();
        let pin =
            on_message(&project, &bob, EventBody::MessagePinned(target(message))).sign(&bob.key);
        let unpin =
            on_message(&project, &bob, EventBody::MessageUnpinned(target(message))).sign(&bob.key);
        let mut facts = facts_on(&project, &bob, &alice);
        assert_eq!(decide(&facts, &pin), Ok(()));
        assert_eq!(decide(&facts, &unpin), Err(Rejection::NotPinned(message)));
        facts.target.pinned = true;
        assert_eq!(decide(&facts, &pin), Err(Rejection::AlreadyPinned(message)));
        assert_eq!(decide(&facts, &unpin), Ok(()));
    }

    #[test]
    fn only_the_owner_registers_agents() {
        let project = Project::new();
        let alice = project.agent("alice");
        let registration = project.registration_of(&alice);
        let mut facts = WriteFacts::new(project.id, Actor::Owner, now());
        facts.owner_key = Some(project.owner.public_key());
        assert_eq!(decide(&facts, &registration), Ok(()));
        facts.agent_name_taken = true;
        assert!(matches!(
            decide(&facts, &registration),
            Err(Rejection::AgentNameTaken(_))
        ));
        facts.agent_name_taken = false;
        facts.token_hash_taken = true;
        assert_eq!(decide(&facts, &registration), Err(Rejection::TokenTaken));
        facts.token_hash_taken = false;
        facts.owner_key = Some(SigningKey::generate().public_key());
        assert_eq!(decide(&facts, &registration), Err(Rejection::BadSignature));
    }

    fn profile(project: &Project, of: &crate::test_support::Agent) -> crate::event::Draft {
        crate::event::Draft::new(
            project.id,
            Actor::Agent(of.id),
            EventBody::AgentProfileUpdated(crate::event::AgentProfileUpdated {}),
        )
        .seal(&project.keys, fields::ROLE, b"reviewer")
    }

    #[test]
    fn an_agent_sets_its_own_profile_signed_with_its_key() {
        let project = Project::new();
        let alice = project.agent("alice");
        let facts = facts_for(&project, &alice);
        let event = profile(&project, &alice)
            .seal(&project.keys, fields::DESCRIPTION, b"reads every diff")
            .sign(&alice.key);
        assert_eq!(decide(&facts, &event), Ok(()));
        let forged = profile(&project, &alice).sign(&SigningKey::generate());
        assert_eq!(decide(&facts, &forged), Err(Rejection::BadSignature));
        let extra = profile(&project, &alice)
            .seal(&project.keys, fields::BODY, b"x")
            .sign(&alice.key);
        assert_eq!(
            decide(&facts, &extra),
            Err(Rejection::UnexpectedSealedField(fields::BODY.into()))
        );
    }

    #[test]
    fn an_agent_cannot_set_another_agents_profile() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        // Bob signs a profile naming alice as its actor: the actor is not the caller.
        let event = profile(&project, &alice).sign(&bob.key);
        assert!(matches!(
            decide(&facts_for(&project, &bob), &event),
            Err(Rejection::ActorIsNotCaller { .. })
        ));
    }

    #[test]
    fn a_message_over_the_daily_quota_is_refused_and_kv_never_counts() {
        use crate::quota::{QuotaLimits, QuotaUsage};
        let project = Project::new();
        let alice = project.agent("alice");
        let mut facts = facts_for(&project, &alice);
        facts.quota = Some(Quota {
            limits: QuotaLimits {
                messages_per_day: 1,
                ..QuotaLimits::default()
            },
            usage: QuotaUsage {
                messages_today: 1,
                stored_bytes: 0,
            },
        });
        let event = message_from(&project, &alice, "one too many");
        assert!(matches!(
            decide(&facts, &event),
            Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::MessagesPerDay,
                ..
            })
        ));
        let set = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::KvSet(crate::event::KvSet {
                key_ix: project.keys.blind_index("kv", "k"),
                expected_revision: None,
                ttl_s: None,
            }),
        )
        .seal(&project.keys, fields::KEY, b"k")
        .seal(&project.keys, fields::VALUE, b"v")
        .sign(&alice.key);
        assert_eq!(decide(&facts, &set), Ok(()));
    }

    fn file_shared(
        project: &Project,
        from: &crate::test_support::Agent,
        size: u64,
    ) -> crate::event::Draft {
        crate::event::Draft::new(
            project.id,
            Actor::Agent(from.id),
            EventBody::FileShared(crate::event::FileShared {
                to: None,
                size,
                ciphertext_size: crate::crypto::file_stream::ciphertext_len(size, FILE_CHUNK_SIZE)
                    .unwrap(),
                digest: "0f".repeat(32),
                chunk_size: FILE_CHUNK_SIZE,
            }),
        )
    }

    #[test]
    fn a_file_with_a_sealed_name_and_consistent_sizes_is_accepted() {
        let project = Project::new();
        let alice = project.agent("alice");
        let event = file_shared(&project, &alice, 100_000)
            .seal(&project.keys, fields::NAME, b"report.pdf")
            .seal(&project.keys, fields::MEDIA_TYPE, b"application/pdf")
            .sign(&alice.key);
        assert_eq!(decide(&facts_for(&project, &alice), &event), Ok(()));
    }

    #[test]
    fn a_declaration_may_leave_the_digest_to_the_cdn_but_an_append_may_not() {
        let project = Project::new();
        let alice = project.agent("alice");
        let facts = facts_for(&project, &alice);
        let mut draft = file_shared(&project, &alice, 100_000);
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.digest = String::new();
        }
        let pending = draft
            .seal(&project.keys, fields::NAME, b"report.pdf")
            .sign(&alice.key);
        assert_eq!(decide_declaration(&facts, &pending), Ok(()));
        assert_eq!(
            decide(&facts, &pending),
            Err(Rejection::InvalidFileMetadata)
        );
        // Everything else is decided as for an append.
        let nameless = {
            let mut draft = file_shared(&project, &alice, 10);
            if let EventBody::FileShared(shared) = &mut draft.body {
                shared.digest = String::new();
            }
            draft.sign(&alice.key)
        };
        assert_eq!(
            decide_declaration(&facts, &nameless),
            Err(Rejection::MissingSealedField(fields::NAME))
        );
        let complete = file_shared(&project, &alice, 10)
            .seal(&project.keys, fields::NAME, b"a")
            .sign(&alice.key);
        assert_eq!(decide_declaration(&facts, &complete), Ok(()));
    }

    #[test]
    fn a_file_without_a_name_or_with_inconsistent_sizes_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let facts = facts_for(&project, &alice);
        let nameless = file_shared(&project, &alice, 10).sign(&alice.key);
        assert_eq!(
            decide(&facts, &nameless),
            Err(Rejection::MissingSealedField(fields::NAME))
        );
        let mut draft = file_shared(&project, &alice, 10);
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.ciphertext_size += 1;
        }
        let lying = draft
            .seal(&project.keys, fields::NAME, b"a")
            .sign(&alice.key);
        assert_eq!(decide(&facts, &lying), Err(Rejection::InvalidFileMetadata));
        let mut draft = file_shared(&project, &alice, 10);
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.digest = "XY".repeat(32);
        }
        let bad_digest = draft
            .seal(&project.keys, fields::NAME, b"a")
            .sign(&alice.key);
        assert_eq!(
            decide(&facts, &bad_digest),
            Err(Rejection::InvalidFileMetadata)
        );
        let extra = file_shared(&project, &alice, 10)
            .seal(&project.keys, fields::NAME, b"a")
            .seal(&project.keys, fields::BODY, b"b")
            .sign(&alice.key);
        assert_eq!(
            decide(&facts, &extra),
            Err(Rejection::UnexpectedSealedField(fields::BODY.into()))
        );
    }

    #[test]
    fn deleting_a_file_needs_the_file_to_be_there() {
        let project = Project::new();
        let alice = project.agent("alice");
        let file = EventId::generate();
        let event = crate::event::Draft::new(
            project.id,
            Actor::Agent(alice.id),
            EventBody::FileDeleted(crate::event::FileDeleted { file }),
        )
        .sign(&alice.key);
        let mut facts = facts_for(&project, &alice);
        facts.file = Lookup::Found;
        assert_eq!(decide(&facts, &event), Ok(()));
        for lookup in [Lookup::Missing, Lookup::InAnotherProject] {
            facts.file = lookup;
            assert_eq!(decide(&facts, &event), Err(Rejection::FileNotFound(file)));
        }
    }
}
