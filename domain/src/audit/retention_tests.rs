//! The auditor over gaps the pruner left: covered by a tombstone, they verify; a gap never
//! covered, a tombstone that covers less than the gap or lists a wrong hash fail, naming
//! the sequence.

use super::*;
use crate::event::{Draft, ErasedEvent, EventsErased, MessageSent, ProjectCreated, Reaction};
use crate::ids::ProjectName;
use crate::test_support::{message_with, Agent, Project};

const TTL_S: u32 = 60;

/// A chained log at sequences 10, 13, 16…: the project, alice, then whatever is appended.
struct Log {
    project: Project,
    alice: Agent,
    events: Vec<(Seq, Envelope)>,
    /// The log's next sequence (erased events leave theirs unused).
    next: u64,
}

impl Log {
    fn new(policy: RetentionPolicy) -> Self {
        let project = Project::new();
        let alice = project.agent("alice");
        let created = Draft::new(
            project.id,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("retained").unwrap(),
                owner_key: project.owner.public_key(),
                retention: policy,
            }),
        )
        .sign(&project.owner);
        let mut log = Self {
            events: Vec::new(),
            alice,
            project,
            next: 10,
        };
        log.append(created);
        log.append(log.project.registration_of(&log.alice));
        log
    }

    fn append(&mut self, mut event: Envelope) -> Seq {
        event.prev = self.head();
        let seq = Seq(self.next);
        self.next += 3;
        self.events.push((seq, event));
        seq
    }

    fn head(&self) -> Option<ChainLink> {
        self.events.last().map(|(seq, last)| ChainLink {
            seq: *seq,
            hash: last.hash(),
        })
    }

    fn message(&mut self, ttl_s: Option<u32>) -> (Seq, EventId) {
        let meta = MessageSent {
            to: None,
            reply_to: None,
            ttl_s,
            topic_ix: None,
        };
        let event = message_with(&self.project, &self.alice, meta, "mortal");
        let id = event.id;
        (self.append(event), id)
    }

    fn reaction(&mut self, message: EventId) -> Seq {
        let body = EventBody::ReactionAdded(Reaction {
            message,
            emoji_ix: crate::event::emoji_index(&self.project.keys, message, "👍"),
        });
        let event = Draft::new(self.project.id, Actor::Agent(self.alice.id), body)
            .seal(
                &self.project.keys,
                crate::event::fields::EMOJI,
                "👍".as_bytes(),
            )
            .sign(&self.alice.key);
        self.append(event)
    }

    /// What the pruner does: removes the events at `seqs` from the log and appends a
    /// tombstone listing them stripped, dated `after_ms` after the first of them.
    fn prune(&mut self, seqs: &[Seq], after_ms: i64) -> Seq {
        let erased: Vec<ErasedEvent> = self
            .events
            .iter()
            .filter(|(seq, _)| seqs.contains(seq))
            .map(|(seq, event)| ErasedEvent::strip(*seq, event))
            .collect();
        let at = erased[0].event.at + after_ms;
        let tombstone = self.tombstone(at, erased);
        let seq = self.append(tombstone);
        self.events.retain(|(seq, _)| !seqs.contains(seq));
        seq
    }

    fn tombstone(&self, at: i64, erased: Vec<ErasedEvent>) -> Envelope {
        Envelope::tombstone(
            EventId::generate(),
            self.project.id,
            at,
            EventsErased { erased },
        )
    }

    fn audit(&self) -> Result<AuditSummary, AuditError> {
        let mut auditor = ProjectAuditor::new(self.project.id);
        for (seq, event) in &self.events {
            auditor.push(*seq, event)?;
        }
        auditor.finish()?;
        Ok(auditor.summary())
    }

    fn tombstone_at(&mut self, seq: Seq) -> &mut EventsErased {
        let (_, event) = self.events.iter_mut().find(|(s, _)| *s == seq).unwrap();
        let EventBody::EventsErased(erased) = &mut event.body else {
            panic!("not a tombstone")
        };
        erased
    }
}

const EXPIRED_MS: i64 = (TTL_S as i64) * 1000 + 1;

#[test]
fn an_expired_message_and_its_reaction_erased_under_a_tombstone_verify() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, id) = log.message(Some(TTL_S));
    let reaction = log.reaction(id);
    log.message(None);
    log.prune(&[message, reaction], EXPIRED_MS);
    log.message(None);
    let summary = log.audit().unwrap();
    assert_eq!(summary.erased, 2);
}

#[test]
fn the_project_default_ttl_makes_a_message_erasable() {
    let mut log = Log::new(RetentionPolicy {
        default_ttl_s: Some(TTL_S),
        max_ttl_s: None,
    });
    let (message, _) = log.message(None);
    log.prune(&[message], EXPIRED_MS);
    assert_eq!(log.audit().unwrap().erased, 1);
}

#[test]
fn a_gap_no_tombstone_covers_is_caught_at_the_event_after_it() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let next = log.message(None).0;
    log.events.retain(|(seq, _)| *seq != message);
    assert_eq!(
        log.audit(),
        Err(AuditError::UncoveredGap {
            seq: next,
            claims: message
        })
    );
}

#[test]
fn a_tombstone_that_covers_less_than_the_gap_is_caught() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, id) = log.message(Some(TTL_S));
    let reaction = log.reaction(id);
    let tombstone = log.prune(&[message, reaction], EXPIRED_MS);
    log.tombstone_at(tombstone).erased.pop();
    assert_eq!(
        log.audit(),
        Err(AuditError::UncoveredGap {
            seq: tombstone,
            claims: reaction
        })
    );
}

#[test]
fn a_tombstone_listing_a_changed_hash_is_caught_naming_both_sequences() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let tombstone = log.prune(&[message], EXPIRED_MS);
    let other = log.events[0].1.hash();
    log.tombstone_at(tombstone).erased[0].hash = other;
    assert_eq!(
        log.audit(),
        Err(AuditError::ErasedHashMismatch {
            seq: tombstone,
            erased: message
        })
    );
}

#[test]
fn a_tombstone_whose_stripped_event_was_changed_is_caught() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let tombstone = log.prune(&[message], EXPIRED_MS);
    log.tombstone_at(tombstone).erased[0].event.at += 1;
    assert_eq!(
        log.audit(),
        Err(AuditError::ErasedHashMismatch {
            seq: tombstone,
            erased: message
        })
    );
}

#[test]
fn a_message_without_a_ttl_may_not_be_erased() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(None);
    let tombstone = log.prune(&[message], EXPIRED_MS);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ErasedWithoutExpiry { seq, erased, .. }) if seq == tombstone && erased == message
    ));
}

#[test]
fn a_message_erased_before_it_expired_is_caught() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(3600));
    let tombstone = log.prune(&[message], EXPIRED_MS);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ErasedWithoutExpiry { seq, .. }) if seq == tombstone
    ));
}

/// The pruner appends a tombstone before it erases: an audit in between reads both.
#[test]
fn a_tombstone_ahead_of_its_erasure_verifies_if_it_describes_the_events_exactly() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, id) = log.message(Some(TTL_S));
    let reaction = log.reaction(id);
    let listed: Vec<ErasedEvent> = log.events[log.events.len() - 2..]
        .iter()
        .map(|(seq, event)| ErasedEvent::strip(*seq, event))
        .collect();
    let at = listed[0].event.at + EXPIRED_MS;
    let tombstone = log.tombstone(at, listed.clone());
    log.append(tombstone);
    log.message(None);
    let summary = log.audit().unwrap();
    assert_eq!(summary.events, 6);

    // Once erased, the same tombstone is checked through the gap, expiry and all.
    let mut erased = log;
    erased
        .events
        .retain(|(seq, _)| *seq != message && *seq != reaction);
    assert!(erased.audit().is_ok());

    // An entry that does not describe the event at its sequence is caught.
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let event = log.events.last().unwrap().1.clone();
    let mut entry = ErasedEvent::strip(message, &event);
    entry.event.at += 1;
    let tombstone = log.tombstone(event.at + EXPIRED_MS, vec![entry]);
    let seq = log.append(tombstone);
    assert_eq!(
        log.audit(),
        Err(AuditError::ErasedHashMismatch {
            seq,
            erased: message
        })
    );

    // So is an entry for an event that was never in the log at that sequence.
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let mut other = log.events.last().unwrap().1.clone();
    other.id = EventId::generate();
    let tombstone = log.tombstone(
        other.at + EXPIRED_MS,
        vec![ErasedEvent::strip(message, &other)],
    );
    let seq = log.append(tombstone);
    assert_eq!(
        log.audit(),
        Err(AuditError::ErasedEventNotMissing {
            seq,
            erased: message
        })
    );
}

#[test]
fn a_tombstone_not_written_by_the_pruner_is_caught() {
    let mut log = Log::new(RetentionPolicy::default());
    let (message, _) = log.message(Some(TTL_S));
    let tombstone = log.prune(&[message], EXPIRED_MS);
    log.events.last_mut().unwrap().1.actor = Actor::Owner;
    assert!(matches!(
        log.audit(),
        Err(AuditError::WrongActor { seq, .. }) if seq == tombstone
    ));
}

#[test]
fn a_policy_change_by_the_owner_is_followed() {
    let mut log = Log::new(RetentionPolicy::default());
    let policy = RetentionPolicy {
        default_ttl_s: Some(TTL_S),
        max_ttl_s: Some(3600),
    };
    let set = Draft::new(
        log.project.id,
        Actor::Owner,
        EventBody::RetentionSet(policy),
    )
    .sign(&log.project.owner);
    log.append(set);
    let (message, _) = log.message(None);
    log.prune(&[message], EXPIRED_MS);
    let mut auditor = ProjectAuditor::new(log.project.id);
    for (seq, event) in &log.events {
        auditor.push(*seq, event).unwrap();
    }
    auditor.finish().unwrap();
    assert_eq!(auditor.retention(), policy);
}

#[test]
fn a_version_1_project_created_is_upcast_with_no_retention_policy() {
    let project = Project::new();
    let created = Draft::new(
        project.id,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("old").unwrap(),
            owner_key: project.owner.public_key(),
            retention: RetentionPolicy::default(),
        }),
    )
    .sign_at_version(&project.owner, 1);
    let stored = created.to_json();
    let text = String::from_utf8(stored.clone()).unwrap();
    assert!(
        !text.contains("kind_v") && !text.contains("retention"),
        "{text}"
    );
    let read: Envelope = serde_json::from_slice(&stored).unwrap();
    assert_eq!(read.kind_v, 1);
    read.verify_signature(&project.owner.public_key()).unwrap();
    assert_eq!(read.to_json(), stored, "written back exactly as stored");
    let mut auditor = ProjectAuditor::new(project.id);
    auditor.push(Seq(1), &read).unwrap();
    assert_eq!(auditor.retention(), RetentionPolicy::default());
}

#[test]
fn a_kind_at_a_version_no_code_knows_is_unreadable() {
    let project = Project::new();
    let created = Draft::new(
        project.id,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("new").unwrap(),
            owner_key: project.owner.public_key(),
            retention: RetentionPolicy::default(),
        }),
    )
    .sign(&project.owner);
    let text = String::from_utf8(created.to_json())
        .unwrap()
        .replace("\"kind_v\":2", "\"kind_v\":9");
    let err = serde_json::from_str::<Envelope>(&text).unwrap_err();
    assert!(err.to_string().contains("has no version 9"), "{err}");
}
