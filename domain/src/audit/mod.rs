//! Auditing a project's log without trusting the server that stored it.
//!
//! [`ProjectAuditor`] is fed a project's events in log order, as `(seq, envelope)`, and
//! stops at the first one that breaks a rule:
//! - the log is in strictly increasing sequence order, and every event names the audited
//!   project;
//! - the first event is `ProjectCreated`, written by the owner and signed by the owner key
//!   it names (the root of trust, ADR 0003); no later event creates the project again;
//! - every `AgentRegistered` is written by the owner and signed by that owner key, once
//!   per agent;
//! - every agent event is signed by the key registered for its actor earlier in the log;
//! - the hash chain holds from the first event ([`ChainVerifier::from_genesis`]), so a
//!   dropped, inserted, changed or reordered event is caught at the event after it;
//! - no event id appears twice (a replayed event would carry a valid signature);
//! - a reaction, read mark, pin or deletion names a message earlier in this log, and a
//!   deletion is by that message's sender;
//! - a gap in the chain (an event linking to a sequence the log no longer holds) is
//!   covered by a later retention tombstone whose stripped events re-hash to the links,
//!   verify against the registered keys and had expired ([`gaps`], ADR 0012). Call
//!   [`ProjectAuditor::finish`] at the end of the log: a gap never covered fails there.
//!
//! It is pure and holds only the registered keys, the chain head, one entry per event id
//! seen (its sequence and hash, about 70 bytes per event) and each message's sender,
//! never the events themselves, so a caller can stream a project of any length through
//! it. After an error the auditor's state is
//! unspecified: stop there.

mod error;
mod gaps;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

pub use error::AuditError;
pub use gaps::ERASURE_SLACK_MS;
use gaps::{Gap, Gaps};

use crate::crypto::PublicKey;
use crate::event::{
    Actor, ChainLink, ChainVerifier, Envelope, ErasedEvent, EventBody, EventHash, EventsErased,
    RetentionPolicy, ENVELOPE_VERSION,
};
use crate::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};

/// An agent as the log registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAgent {
    pub name: AgentName,
    pub signing_key: PublicKey,
    /// Where its registration is in the log.
    pub registered_at: Seq,
}

/// What an audit has verified so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    pub project: ProjectId,
    /// The name `ProjectCreated` gave the project (none before the first event).
    pub name: Option<ProjectName>,
    /// The owner key `ProjectCreated` named.
    pub owner_key: Option<PublicKey>,
    pub events: u64,
    pub agents: usize,
    pub first_seq: Option<Seq>,
    /// The last verified event: its sequence and hash.
    pub head: Option<ChainLink>,
    /// Events erased by retention, each proven by a tombstone.
    pub erased: u64,
}

/// Verifies one project's log, event by event, in log order.
#[derive(Debug)]
pub struct ProjectAuditor {
    project: ProjectId,
    name: Option<ProjectName>,
    owner_key: Option<PublicKey>,
    agents: HashMap<AgentId, RegisteredAgent>,
    seen: HashMap<EventId, (Seq, EventHash)>,
    /// The sender of every message seen, for the rules on message-state events.
    senders: HashMap<EventId, AgentId>,
    chain: ChainVerifier,
    first_seq: Option<Seq>,
    last_seq: Option<Seq>,
    events: u64,
    /// The retention policy in force.
    policy: RetentionPolicy,
    gaps: Gaps,
    /// Messages erased by retention, so their erased reactions and marks can follow.
    erased_messages: HashSet<EventId>,
    erased: u64,
}

impl ProjectAuditor {
    /// An auditor of `project`'s log, read from its first event.
    pub fn new(project: ProjectId) -> Self {
        Self {
            project,
            name: None,
            owner_key: None,
            agents: HashMap::new(),
            seen: HashMap::new(),
            senders: HashMap::new(),
            chain: ChainVerifier::from_genesis(),
            first_seq: None,
            last_seq: None,
            events: 0,
            policy: RetentionPolicy::default(),
            gaps: Gaps::default(),
            erased_messages: HashSet::new(),
            erased: 0,
        }
    }

    /// Decodes the stored JSON of the event at `seq`, checks it as [`Self::push`] does and
    /// returns it with its hash.
    pub fn push_json(
        &mut self,
        seq: Seq,
        stored: &[u8],
    ) -> Result<(Envelope, EventHash), AuditError> {
        let prepared = PreparedEvent::from_json(seq, stored)?;
        let hash = self.push_prepared(&prepared)?.verify(&prepared)?;
        Ok((prepared.event, hash))
    }

    /// Checks the event found at `seq` against every rule and the events before it;
    /// returns its hash.
    pub fn push(&mut self, seq: Seq, event: &Envelope) -> Result<EventHash, AuditError> {
        let prepared = PreparedEvent::new(seq, event.clone());
        self.push_prepared(&prepared)?.verify(&prepared)
    }

    /// Checks a prepared event against every rule but its signature, which the answer
    /// checks when asked: the auditor's order-dependent part, so that callers can check
    /// the signatures of many events on several threads ([`SignatureCheck::verify`]).
    /// An audit holds only when every returned check is verified; report the failure of
    /// the lowest sequence first.
    pub fn push_prepared(
        &mut self,
        prepared: &PreparedEvent,
    ) -> Result<SignatureCheck, AuditError> {
        let (seq, event) = (prepared.seq, &prepared.event);
        if let Some(previous) = self.last_seq {
            if seq <= previous {
                return Err(AuditError::OutOfOrder { seq, previous });
            }
        }
        if event.v != ENVELOPE_VERSION {
            return Err(AuditError::UnsupportedVersion {
                seq,
                found: event.v,
            });
        }
        if event.project != self.project {
            return Err(AuditError::WrongProject {
                seq,
                expected: self.project,
                found: event.project,
            });
        }
        if let Some((first, _)) = self.seen.get(&event.id) {
            return Err(AuditError::EventRepeated {
                seq,
                id: event.id,
                first: *first,
            });
        }
        self.note_gap(seq, event);
        self.chain.push_hashed(seq, event, prepared.hash)?;
        let check = self.check_authority(seq, event)?;
        self.seen.insert(event.id, (seq, prepared.hash));
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.events += 1;
        Ok(check)
    }

    /// Who may have written `event`: the key its signature must verify against.
    fn check_authority(
        &mut self,
        seq: Seq,
        event: &Envelope,
    ) -> Result<SignatureCheck, AuditError> {
        let kind = event.body.kind();
        let owner_signed = |key: PublicKey| {
            SignatureCheck::signed_by(key, AuditError::OwnerSignatureInvalid { seq, kind })
        };
        let Some(owner_key) = self.owner_key else {
            let EventBody::ProjectCreated(created) = &event.body else {
                return Err(AuditError::FirstEventNotProjectCreated { seq, kind });
            };
            self.expect_owner(seq, event)?;
            // The first event is signed by the key it introduces: the root of trust.
            self.owner_key = Some(created.owner_key);
            self.name = Some(created.name.clone());
            self.policy = created.retention;
            return Ok(owner_signed(created.owner_key));
        };
        match &event.body {
            EventBody::ProjectCreated(_) => Err(AuditError::ProjectCreatedAgain { seq }),
            EventBody::RetentionSet(policy) => {
                self.expect_owner(seq, event)?;
                self.policy = *policy;
                Ok(owner_signed(owner_key))
            }
            EventBody::EventsErased(erased) => {
                if event.actor != Actor::Pruner {
                    return Err(AuditError::WrongActor {
                        seq,
                        kind,
                        actor: event.actor,
                        allowed: "the server's pruner",
                    });
                }
                // Unsigned: every entry proves itself against the chain and its signer.
                self.cover(seq, event.at, erased)?;
                Ok(SignatureCheck::unsigned())
            }
            EventBody::AgentRegistered(registered) => {
                self.expect_owner(seq, event)?;
                if let Some(earlier) = self.agents.get(&registered.agent) {
                    return Err(AuditError::AgentRegisteredAgain {
                        seq,
                        agent: registered.agent,
                        first: earlier.registered_at,
                    });
                }
                self.agents.insert(
                    registered.agent,
                    RegisteredAgent {
                        name: registered.name.clone(),
                        signing_key: registered.signing_key,
                        registered_at: seq,
                    },
                );
                Ok(owner_signed(owner_key))
            }
            EventBody::MessageSent(_) => {
                let check = self.agent_signature(seq, event)?;
                if let Actor::Agent(sender) = event.actor {
                    self.senders.insert(event.id, sender);
                }
                Ok(check)
            }
            EventBody::KvSet(_)
            | EventBody::KvDeleted(_)
            | EventBody::RefShared(_)
            | EventBody::AgentProfileUpdated(_)
            | EventBody::FileShared(_)
            | EventBody::FileDeleted(_) => self.agent_signature(seq, event),
            EventBody::ReactionAdded(_)
            | EventBody::ReactionRemoved(_)
            | EventBody::MessageRead(_)
            | EventBody::MessagePinned(_)
            | EventBody::MessageUnpinned(_)
            | EventBody::MessageDeleted(_) => {
                let check = self.agent_signature(seq, event)?;
                self.check_target(seq, event)?;
                Ok(check)
            }
        }
    }

    /// An event linking past the head opens a gap, taken on trust until a tombstone
    /// covers it (anything else about the link is the chain's to judge).
    fn note_gap(&mut self, seq: Seq, event: &Envelope) {
        let (Some(head), Some(link)) = (self.chain.head(), event.prev) else {
            return;
        };
        if link.seq > head.seq && link.seq < seq {
            self.gaps.open(Gap {
                found_at: seq,
                cursor: head,
                until: link,
                policy: self.policy,
            });
            self.chain.bridge(link);
        }
    }

    /// Walks the tombstone at `seq` (dated `at`) through the gaps it explains.
    fn cover(&mut self, seq: Seq, at: i64, erased: &EventsErased) -> Result<(), AuditError> {
        for entry in &erased.erased {
            let Some(gap) = self.gaps.containing(entry.seq) else {
                self.erasure_pending(seq, entry)?;
                continue;
            };
            let event = &entry.event;
            let found = event.prev.map(|link| link.seq).unwrap_or(Seq(0));
            if event.prev != Some(gap.cursor) {
                return Err(AuditError::ErasedEventMisplaced {
                    seq,
                    erased: entry.seq,
                    expected: gap.cursor.seq,
                    found,
                });
            }
            let signed = entry.signing_bytes();
            if event.hash_with_signing_bytes(&signed) != entry.hash {
                return Err(AuditError::ErasedHashMismatch {
                    seq,
                    erased: entry.seq,
                });
            }
            if entry.seq == gap.until.seq && entry.hash != gap.until.hash {
                return Err(AuditError::ErasedHashNotChained {
                    seq,
                    erased: entry.seq,
                    listed: entry.hash,
                    claimed: gap.until.hash,
                });
            }
            let policy = gap.policy;
            gap.cursor = ChainLink {
                seq: entry.seq,
                hash: entry.hash,
            };
            self.check_erasable(seq, at, entry.seq, event, &signed, policy)?;
            self.seen.insert(event.id, (entry.seq, entry.hash));
            self.erased += 1;
        }
        self.gaps.close_covered();
        Ok(())
    }

    /// An erased event is an agent's, signed by its registered key, and either a message
    /// that had expired by the tombstone's date or an event about an erased message.
    /// A tombstone entry for an event still in the log: the pruner appends its tombstones
    /// before it erases, so an audit between the two (or after a crash, until the next
    /// run) reads both. Nothing is lost yet, and the event itself was verified in full
    /// when it was read: the entry must only describe it exactly. Once the event is gone,
    /// audits check the erasure through the gap it leaves, expiry included.
    fn erasure_pending(&mut self, seq: Seq, entry: &ErasedEvent) -> Result<(), AuditError> {
        let not_missing = AuditError::ErasedEventNotMissing {
            seq,
            erased: entry.seq,
        };
        let Some(&(read_at, read_hash)) = self.seen.get(&entry.event.id) else {
            return Err(not_missing);
        };
        if read_at != entry.seq {
            return Err(not_missing);
        }
        let rehashed = entry.event.hash_with_signing_bytes(&entry.signing_bytes());
        if rehashed != entry.hash || entry.hash != read_hash {
            return Err(AuditError::ErasedHashMismatch {
                seq,
                erased: entry.seq,
            });
        }
        if matches!(entry.event.body, EventBody::MessageSent(_)) {
            // Its reactions may be listed beside it, present or already gone.
            self.erased_messages.insert(entry.event.id);
        }
        Ok(())
    }

    fn check_erasable(
        &mut self,
        seq: Seq,
        at: i64,
        erased: Seq,
        event: &Envelope,
        signed: &[u8],
        policy: RetentionPolicy,
    ) -> Result<(), AuditError> {
        let kind = event.body.kind();
        let refuse = |why| AuditError::ErasedWithoutExpiry {
            seq,
            erased,
            kind,
            why,
        };
        if event.project != self.project {
            return Err(refuse("it belongs to another project"));
        }
        if let Some((first, _)) = self.seen.get(&event.id) {
            return Err(AuditError::EventRepeated {
                seq,
                id: event.id,
                first: *first,
            });
        }
        let Actor::Agent(agent) = event.actor else {
            return Err(refuse("only agents' events expire"));
        };
        let signed_by_registered = self
            .agents
            .get(&agent)
            .filter(|registered| registered.registered_at < erased)
            .is_some_and(|registered| {
                registered
                    .signing_key
                    .verify_cofactored(signed, &event.sig)
                    .is_ok()
            });
        if !signed_by_registered {
            return Err(AuditError::ErasedEventForged { seq, erased });
        }
        match &event.body {
            EventBody::MessageSent(sent) => {
                let Some(ttl_s) = policy.effective_ttl(sent.ttl_s) else {
                    return Err(refuse("the message had no time-to-live"));
                };
                if at + ERASURE_SLACK_MS < event.at + i64::from(ttl_s) * 1000 {
                    return Err(refuse("the message had not expired yet"));
                }
                self.erased_messages.insert(event.id);
                Ok(())
            }
            body => match body.target_message() {
                Some(message) if self.erased_messages.contains(&message) => Ok(()),
                _ => Err(refuse("it is not about an erased message")),
            },
        }
    }

    /// Ends the audit at the end of the log: every gap must have been covered.
    pub fn finish(&self) -> Result<(), AuditError> {
        match self.gaps.first() {
            Some(gap) => Err(AuditError::UncoveredGap {
                seq: gap.found_at,
                claims: gap.until.seq,
            }),
            None => Ok(()),
        }
    }

    /// The retention policy in force at this point of the log.
    pub fn retention(&self) -> RetentionPolicy {
        self.policy
    }

    /// A message-state event names a message of this log; a deletion is by its sender.
    fn check_target(&self, seq: Seq, event: &Envelope) -> Result<(), AuditError> {
        let Some(message) = event.body.target_message() else {
            return Ok(());
        };
        let sender = self
            .senders
            .get(&message)
            .ok_or(AuditError::UnknownTargetMessage { seq, message })?;
        if matches!(event.body, EventBody::MessageDeleted(_))
            && event.actor != Actor::Agent(*sender)
        {
            return Err(AuditError::DeletedByAnotherAgent {
                seq,
                message,
                actor: event.actor,
            });
        }
        Ok(())
    }

    fn expect_owner(&self, seq: Seq, event: &Envelope) -> Result<(), AuditError> {
        match event.actor {
            Actor::Owner => Ok(()),
            actor => Err(AuditError::WrongActor {
                seq,
                kind: event.body.kind(),
                actor,
                allowed: "the project owner",
            }),
        }
    }

    fn agent_signature(&self, seq: Seq, event: &Envelope) -> Result<SignatureCheck, AuditError> {
        let Actor::Agent(agent) = event.actor else {
            return Err(AuditError::WrongActor {
                seq,
                kind: event.body.kind(),
                actor: event.actor,
                allowed: "an agent",
            });
        };
        let registered = self
            .agents
            .get(&agent)
            .ok_or(AuditError::UnregisteredActor { seq, agent })?;
        Ok(SignatureCheck::signed_by(
            registered.signing_key,
            AuditError::ForgedSignature { seq, agent },
        ))
    }

    /// The owner key the project's first event named (none before it).
    pub fn owner_key(&self) -> Option<PublicKey> {
        self.owner_key
    }

    /// The agent `id` as registered so far.
    pub fn agent(&self, id: &AgentId) -> Option<&RegisteredAgent> {
        self.agents.get(id)
    }

    /// What has been verified so far.
    pub fn summary(&self) -> AuditSummary {
        AuditSummary {
            project: self.project,
            name: self.name.clone(),
            owner_key: self.owner_key,
            events: self.events,
            agents: self.agents.len(),
            first_seq: self.first_seq,
            head: self.chain.head(),
            erased: self.erased,
        }
    }
}

/// An event decoded, with its canonical signing bytes and its hash: the costly part of an
/// audit step that does not depend on the events before it, so callers may prepare many
/// events on several threads before pushing them in order.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub seq: Seq,
    pub event: Envelope,
    signed: Vec<u8>,
    hash: EventHash,
}

impl PreparedEvent {
    /// Prepares `event`, found at `seq`.
    pub fn new(seq: Seq, event: Envelope) -> Self {
        let signed = event.signing_bytes();
        let hash = event.hash_with_signing_bytes(&signed);
        Self {
            seq,
            event,
            signed,
            hash,
        }
    }

    /// Decodes and prepares the stored JSON of the event at `seq`.
    pub fn from_json(seq: Seq, stored: &[u8]) -> Result<Self, AuditError> {
        let event: Envelope =
            serde_json::from_slice(stored).map_err(|e| AuditError::Unreadable {
                seq,
                reason: e.to_string(),
            })?;
        Ok(Self::new(seq, event))
    }

    /// The event's hash.
    pub fn hash(&self) -> EventHash {
        self.hash
    }
}

/// The signature an event must carry, as [`ProjectAuditor::push_prepared`] found it: the
/// key the log registered for its writer, and the failure to report if it does not verify.
#[derive(Debug, Clone)]
#[must_use = "an event is verified only once its signature check is"]
pub struct SignatureCheck {
    /// The key and the failure to report; `None` for an event that carries no signature
    /// of its own (a tombstone, whose entries the auditor checked one by one).
    signer: Option<(PublicKey, AuditError)>,
}

impl SignatureCheck {
    fn signed_by(key: PublicKey, forged: AuditError) -> Self {
        Self {
            signer: Some((key, forged)),
        }
    }

    fn unsigned() -> Self {
        Self { signer: None }
    }

    /// Verifies the signatures of `events`, each with its check, in one batch
    /// ([`crate::crypto::verify_batch`]); when the batch fails, one by one, to name the
    /// first that does not verify.
    pub fn verify_all(checked: &[(SignatureCheck, &PreparedEvent)]) -> Result<(), AuditError> {
        let items: Vec<_> = checked
            .iter()
            .filter_map(|(check, event)| {
                let (key, _) = check.signer.as_ref()?;
                Some((*key, event.signed.as_slice(), &event.event.sig))
            })
            .collect();
        if crate::crypto::verify_batch(&items).is_ok() {
            return Ok(());
        }
        for (check, event) in checked {
            check.verify(event)?;
        }
        // Every signature verified on its own (so the batch equation holds after all).
        Ok(())
    }

    /// Verifies `prepared`'s signature (the event this check was made for) by the audit's
    /// cofactored rule, the one [`crate::crypto::verify_batch`] applies (ADR 0013); answers
    /// its hash.
    pub fn verify(&self, prepared: &PreparedEvent) -> Result<EventHash, AuditError> {
        if let Some((key, forged)) = &self.signer {
            key.verify_cofactored(&prepared.signed, &prepared.event.sig)
                .map_err(|_| forged.clone())?;
        }
        Ok(prepared.hash)
    }
}
