//! What an audit found wrong: the first rule the log breaks, and where.

use crate::event::{Actor, ChainError, EventHash, EventKind};
use crate::ids::{AgentId, EventId, ProjectId, Seq};

/// The first event of a project's log that breaks a rule. Every variant names the
/// sequence of that event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("event at seq {seq} is not a valid event envelope: {reason}")]
    Unreadable { seq: Seq, reason: String },
    #[error("event at seq {seq} has envelope version {found}, which this auditor cannot read")]
    UnsupportedVersion { seq: Seq, found: u16 },
    #[error("event at seq {seq} comes after seq {previous}: the log is out of order")]
    OutOfOrder { seq: Seq, previous: Seq },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(
        "event at seq {seq} belongs to project {found}, not to the audited project {expected}"
    )]
    WrongProject {
        seq: Seq,
        expected: ProjectId,
        found: ProjectId,
    },
    #[error("the project's first event (seq {seq}) is {}, not the owner's project_created", .kind.as_str())]
    FirstEventNotProjectCreated { seq: Seq, kind: EventKind },
    #[error("event at seq {seq} creates the project again; only the first event may")]
    ProjectCreatedAgain { seq: Seq },
    #[error("event at seq {seq} is {} by {actor}, but only {allowed} may write it", .kind.as_str())]
    WrongActor {
        seq: Seq,
        kind: EventKind,
        actor: Actor,
        allowed: &'static str,
    },
    #[error("event at seq {seq} ({}) is not signed by the project's owner key", .kind.as_str())]
    OwnerSignatureInvalid { seq: Seq, kind: EventKind },
    #[error("event at seq {seq} is by agent {agent}, which no earlier event registered")]
    UnregisteredActor { seq: Seq, agent: AgentId },
    #[error("event at seq {seq} is not signed by the key registered for its actor, agent {agent}")]
    ForgedSignature { seq: Seq, agent: AgentId },
    #[error("event at seq {seq} registers agent {agent} again (first registered at seq {first})")]
    AgentRegisteredAgain {
        seq: Seq,
        agent: AgentId,
        first: Seq,
    },
    #[error("event at seq {seq} repeats event {id}, already in the log at seq {first}")]
    EventRepeated { seq: Seq, id: EventId, first: Seq },
    #[error("event at seq {seq} is about message {message}, which is not earlier in this log")]
    UnknownTargetMessage { seq: Seq, message: EventId },
    #[error("event at seq {seq} deletes message {message}, but {actor} is not its sender")]
    DeletedByAnotherAgent {
        seq: Seq,
        message: EventId,
        actor: Actor,
    },
    #[error("event at seq {seq} links to seq {claims}, which is not in the log, and no retention tombstone covers it")]
    UncoveredGap { seq: Seq, claims: Seq },
    #[error(
        "retention tombstone at seq {seq} lists seq {erased}, which is not missing from the log"
    )]
    ErasedEventNotMissing { seq: Seq, erased: Seq },
    #[error("retention tombstone at seq {seq} lists seq {erased} with a link to seq {found}, but the chain there comes from seq {expected}")]
    ErasedEventMisplaced {
        seq: Seq,
        erased: Seq,
        expected: Seq,
        found: Seq,
    },
    #[error("retention tombstone at seq {seq} lists a hash for seq {erased} that is not the hash of the event it lists")]
    ErasedHashMismatch { seq: Seq, erased: Seq },
    #[error("retention tombstone at seq {seq} lists seq {erased} with hash {listed:?}, but the chain named {claimed:?} for it")]
    ErasedHashNotChained {
        seq: Seq,
        erased: Seq,
        listed: EventHash,
        claimed: EventHash,
    },
    #[error("retention tombstone at seq {seq} lists seq {erased}, a {} that retention may not erase: {why}", .kind.as_str())]
    ErasedWithoutExpiry {
        seq: Seq,
        erased: Seq,
        kind: EventKind,
        why: &'static str,
    },
    #[error("retention tombstone at seq {seq} lists seq {erased}, which is not signed by the key registered for its actor")]
    ErasedEventForged { seq: Seq, erased: Seq },
}

impl AuditError {
    /// The sequence of the offending event.
    pub fn seq(&self) -> Seq {
        match self {
            Self::Unreadable { seq, .. }
            | Self::UnsupportedVersion { seq, .. }
            | Self::OutOfOrder { seq, .. }
            | Self::WrongProject { seq, .. }
            | Self::FirstEventNotProjectCreated { seq, .. }
            | Self::ProjectCreatedAgain { seq }
            | Self::WrongActor { seq, .. }
            | Self::OwnerSignatureInvalid { seq, .. }
            | Self::UnregisteredActor { seq, .. }
            | Self::ForgedSignature { seq, .. }
            | Self::AgentRegisteredAgain { seq, .. }
            | Self::EventRepeated { seq, .. }
            | Self::UnknownTargetMessage { seq, .. }
            | Self::DeletedByAnotherAgent { seq, .. }
            | Self::UncoveredGap { seq, .. }
            | Self::ErasedEventNotMissing { seq, .. }
            | Self::ErasedEventMisplaced { seq, .. }
            | Self::ErasedHashMismatch { seq, .. }
            | Self::ErasedHashNotChained { seq, .. }
            | Self::ErasedWithoutExpiry { seq, .. }
            | Self::ErasedEventForged { seq, .. } => *seq,
            Self::Chain(chain) => chain.seq(),
        }
    }

    /// A stable name of the rule that was broken, for machine-readable output.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "unreadable",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::OutOfOrder { .. } => "out_of_order",
            Self::Chain(ChainError::MissingLink { .. }) => "missing_link",
            Self::Chain(ChainError::PrecedingEventMissing { .. }) => "preceding_event_missing",
            Self::Chain(ChainError::WrongPreviousSeq { .. }) => "wrong_previous_seq",
            Self::Chain(ChainError::HashMismatch { .. }) => "hash_mismatch",
            Self::WrongProject { .. } => "wrong_project",
            Self::FirstEventNotProjectCreated { .. } => "first_event_not_project_created",
            Self::ProjectCreatedAgain { .. } => "project_created_again",
            Self::WrongActor { .. } => "wrong_actor",
            Self::OwnerSignatureInvalid { .. } => "owner_signature_invalid",
            Self::UnregisteredActor { .. } => "unregistered_actor",
            Self::ForgedSignature { .. } => "forged_signature",
            Self::AgentRegisteredAgain { .. } => "agent_registered_again",
            Self::EventRepeated { .. } => "event_repeated",
            Self::UnknownTargetMessage { .. } => "unknown_target_message",
            Self::DeletedByAnotherAgent { .. } => "deleted_by_another_agent",
            Self::UncoveredGap { .. } => "uncovered_gap",
            Self::ErasedEventNotMissing { .. } => "erased_event_not_missing",
            Self::ErasedEventMisplaced { .. } => "erased_event_misplaced",
            Self::ErasedHashMismatch { .. } => "erased_hash_mismatch",
            Self::ErasedHashNotChained { .. } => "erased_hash_not_chained",
            Self::ErasedWithoutExpiry { .. } => "erased_without_expiry",
            Self::ErasedEventForged { .. } => "erased_event_forged",
        }
    }
}
