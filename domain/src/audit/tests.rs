use super::*;
use crate::crypto::SigningKey;
use crate::event::{ChainError, Draft, EventKind, ProjectCreated};
use crate::ids::ProjectName;
use crate::test_support::{message_from, Agent, Project};

/// A project's log as the log would store it: chained, at sequences 10, 13, 16…
struct Log {
    project: Project,
    alice: Agent,
    events: Vec<(Seq, Envelope)>,
}

impl Log {
    /// ProjectCreated, alice registered, then `messages` messages from alice.
    fn with_messages(messages: usize) -> Self {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut log = Self {
            events: Vec::new(),
            alice,
            project,
        };
        log.append(created(&log.project, &log.project.owner));
        log.append(log.project.registration_of(&log.alice));
        for i in 0..messages {
            log.append(message_from(&log.project, &log.alice, &format!("m{i}")));
        }
        log
    }

    /// Appends as the log does: sets `prev` to the last event.
    fn append(&mut self, mut event: Envelope) -> Seq {
        event.prev = self.events.last().map(|(seq, last)| ChainLink {
            seq: *seq,
            hash: last.hash(),
        });
        let seq = Seq(10 + 3 * self.events.len() as u64);
        self.events.push((seq, event));
        seq
    }

    fn audit(&self) -> Result<AuditSummary, AuditError> {
        let mut auditor = ProjectAuditor::new(self.project.id);
        for (seq, event) in &self.events {
            auditor.push(*seq, event)?;
        }
        auditor.finish()?;
        Ok(auditor.summary())
    }
}

fn created(project: &Project, signer: &SigningKey) -> Envelope {
    Draft::new(
        project.id,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("audited").unwrap(),
            owner_key: project.owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(signer)
}

#[test]
fn an_intact_log_verifies_and_is_summarised() {
    let log = Log::with_messages(3);
    let summary = log.audit().unwrap();
    assert_eq!(summary.events, 5);
    assert_eq!(summary.agents, 1);
    assert_eq!(summary.first_seq, Some(Seq(10)));
    let (last_seq, last) = log.events.last().unwrap();
    assert_eq!(
        summary.head,
        Some(ChainLink {
            seq: *last_seq,
            hash: last.hash()
        })
    );
    assert_eq!(summary.name.unwrap().as_str(), "audited");
}

#[test]
fn a_forged_agent_signature_is_caught_at_its_sequence() {
    let mut log = Log::with_messages(3);
    log.events[3].1.sig.flip_bit_for_test(3);
    assert_eq!(
        log.audit(),
        Err(AuditError::ForgedSignature {
            seq: Seq(19),
            agent: log.alice.id
        })
    );
}

#[test]
fn a_message_signed_by_another_key_than_the_actors_is_caught() {
    let mut log = Log::with_messages(1);
    let mallory = log.project.agent("mallory");
    let impostor = Agent {
        id: log.alice.id,
        name: log.alice.name.clone(),
        key: mallory.key,
    };
    let seq = log.append(message_from(&log.project, &impostor, "it was alice"));
    assert_eq!(
        log.audit(),
        Err(AuditError::ForgedSignature {
            seq,
            agent: log.alice.id
        })
    );
}

#[test]
fn an_event_by_an_agent_no_one_registered_is_caught() {
    let mut log = Log::with_messages(1);
    let stranger = log.project.agent("stranger");
    let seq = log.append(message_from(&log.project, &stranger, "hi"));
    assert_eq!(
        log.audit(),
        Err(AuditError::UnregisteredActor {
            seq,
            agent: stranger.id
        })
    );
}

#[test]
fn a_registration_not_signed_by_the_owner_is_caught() {
    let mut log = Log::with_messages(0);
    let bob = log.project.agent("bob");
    let mut forged = log.project.registration_of(&bob);
    forged.sig = SigningKey::generate().sign(&forged.signing_bytes());
    let seq = log.append(forged);
    assert_eq!(
        log.audit(),
        Err(AuditError::OwnerSignatureInvalid {
            seq,
            kind: EventKind::AgentRegistered
        })
    );
}

#[test]
fn a_project_created_not_signed_by_the_key_it_names_is_caught() {
    let mut log = Log::with_messages(1);
    log.events[0].1 = created(&log.project, &SigningKey::generate());
    assert_eq!(
        log.audit(),
        Err(AuditError::OwnerSignatureInvalid {
            seq: Seq(10),
            kind: EventKind::ProjectCreated
        })
    );
}

#[test]
fn a_dropped_event_is_an_uncovered_gap_named_at_the_next_one() {
    let mut log = Log::with_messages(3);
    log.events.remove(2);
    assert_eq!(
        log.audit(),
        Err(AuditError::UncoveredGap {
            seq: Seq(19),
            claims: Seq(16)
        })
    );
    assert_eq!(log.audit().unwrap_err().seq(), Seq(19));
}

#[test]
fn a_changed_event_is_caught_by_its_signature() {
    let mut log = Log::with_messages(2);
    log.events[2].1.at += 1;
    assert_eq!(
        log.audit(),
        Err(AuditError::ForgedSignature {
            seq: Seq(16),
            agent: log.alice.id
        })
    );
}

#[test]
fn two_swapped_events_are_caught() {
    // Moved with their sequences: the log is out of order at the second one.
    let mut log = Log::with_messages(3);
    log.events.swap(2, 3);
    assert_eq!(
        log.audit(),
        Err(AuditError::OutOfOrder {
            seq: Seq(16),
            previous: Seq(19)
        })
    );
    // Moved into each other's sequences: the same.
    let mut log = Log::with_messages(3);
    let moved = log.events[3].1.clone();
    log.events[3].1 = log.events[2].1.clone();
    log.events[2].1 = moved;
    assert!(matches!(
        log.audit(),
        Err(AuditError::Chain(ChainError::WrongPreviousSeq {
            seq: Seq(16),
            ..
        }))
    ));
}

#[test]
fn an_event_of_another_project_is_caught() {
    let mut log = Log::with_messages(1);
    let other = Project::new();
    let intruder = other.agent("alice");
    let seq = log.append(message_from(&other, &intruder, "wrong place"));
    assert_eq!(
        log.audit(),
        Err(AuditError::WrongProject {
            seq,
            expected: log.project.id,
            found: other.id
        })
    );
}

#[test]
fn a_log_that_does_not_start_with_project_created_is_caught() {
    let project = Project::new();
    let alice = project.agent("alice");
    let mut auditor = ProjectAuditor::new(project.id);
    assert_eq!(
        auditor.push(Seq(1), &project.registration_of(&alice)),
        Err(AuditError::FirstEventNotProjectCreated {
            seq: Seq(1),
            kind: EventKind::AgentRegistered
        })
    );
}

#[test]
fn a_second_project_created_is_caught() {
    let mut log = Log::with_messages(0);
    let seq = log.append(created(&log.project, &log.project.owner));
    assert_eq!(log.audit(), Err(AuditError::ProjectCreatedAgain { seq }));
}

#[test]
fn an_owner_event_written_by_an_agent_is_caught() {
    let mut log = Log::with_messages(0);
    let bob = log.project.agent("bob");
    let mut registration = log.project.registration_of(&bob);
    registration.actor = Actor::Agent(log.alice.id);
    registration.sig = log.project.owner.sign(&registration.signing_bytes());
    let seq = log.append(registration);
    assert!(matches!(
        log.audit(),
        Err(AuditError::WrongActor { seq: s, .. }) if s == seq
    ));
}

#[test]
fn a_replayed_event_is_caught_even_with_a_fresh_chain_link() {
    let mut log = Log::with_messages(2);
    let replayed = log.events[3].1.clone();
    let seq = log.append(replayed);
    assert_eq!(
        log.audit(),
        Err(AuditError::EventRepeated {
            seq,
            id: log.events[3].1.id,
            first: Seq(19)
        })
    );
}

#[test]
fn unreadable_stored_json_is_named_by_its_sequence() {
    let project = Project::new();
    let mut auditor = ProjectAuditor::new(project.id);
    let err = auditor.push_json(Seq(7), b"{\"v\":1").unwrap_err();
    assert!(matches!(err, AuditError::Unreadable { seq: Seq(7), .. }));
    assert_eq!(err.rule(), "unreadable");
}

#[test]
fn stored_json_is_decoded_checked_and_returned() {
    let log = Log::with_messages(1);
    let mut auditor = ProjectAuditor::new(log.project.id);
    for (seq, event) in &log.events {
        let (back, hash) = auditor.push_json(*seq, &event.to_json()).unwrap();
        assert_eq!(&back, event);
        assert_eq!(hash, event.hash());
    }
    assert_eq!(
        auditor.agent(&log.alice.id).map(|a| a.name.as_str()),
        Some("alice")
    );
}

fn kv_set_by(project: &Project, writer: &Agent, signer: &SigningKey) -> Envelope {
    Draft::new(
        project.id,
        Actor::Agent(writer.id),
        EventBody::KvSet(crate::event::KvSet {
            key_ix: project
                .keys
                .blind_index(crate::event::KV_NAMESPACE, "lease:a"),
            expected_revision: Some(0),
            ttl_s: Some(600),
        }),
    )
    .seal(&project.keys, crate::event::fields::KEY, b"lease:a")
    .seal(&project.keys, crate::event::fields::VALUE, b"alice")
    .sign(signer)
}

#[test]
fn kv_writes_by_a_registered_agent_pass_the_audit() {
    let mut log = Log::with_messages(1);
    let set = kv_set_by(&log.project, &log.alice, &log.alice.key);
    log.append(set);
    let deleted = Draft::new(
        log.project.id,
        Actor::Agent(log.alice.id),
        EventBody::KvDeleted(crate::event::KvDeleted {
            key_ix: log
                .project
                .keys
                .blind_index(crate::event::KV_NAMESPACE, "lease:a"),
            expected_revision: None,
        }),
    )
    .sign(&log.alice.key);
    log.append(deleted);
    assert_eq!(log.audit().unwrap().events, 5);
}

#[test]
fn a_kv_write_signed_by_another_key_is_caught() {
    let mut log = Log::with_messages(0);
    let forged = kv_set_by(&log.project, &log.alice, &SigningKey::generate());
    let seq = log.append(forged);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ForgedSignature { seq: s, .. }) if s == seq
    ));
}

fn ref_shared_by(project: &Project, sharer: &Agent, signer: &SigningKey) -> Envelope {
    Draft::new(
        project.id,
        Actor::Agent(sharer.id),
        EventBody::RefShared(crate::event::RefShared {
            to: None,
            start_line: 10,
            end_line: 12,
        }),
    )
    .seal(&project.keys, crate::event::fields::PATH, b"src/lib.rs")
    .seal(&project.keys, crate::event::fields::SNIPPET, b"fn x() {}")
    .sign(signer)
}

#[test]
fn a_ref_shared_by_a_registered_agent_passes_the_audit() {
    let mut log = Log::with_messages(1);
    let shared = ref_shared_by(&log.project, &log.alice, &log.alice.key);
    log.append(shared);
    assert_eq!(log.audit().unwrap().events, 4);
}

#[test]
fn a_ref_signed_by_another_key_is_caught() {
    let mut log = Log::with_messages(0);
    let forged = ref_shared_by(&log.project, &log.alice, &SigningKey::generate());
    let seq = log.append(forged);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ForgedSignature { seq: s, .. }) if s == seq
    ));
}

fn on(project: &Project, actor: &Agent, signer: &SigningKey, body: EventBody) -> Envelope {
    let mut draft = Draft::new(project.id, Actor::Agent(actor.id), body.clone());
    if let EventBody::ReactionAdded(_) = body {
        draft = draft.seal(&project.keys, crate::event::fields::EMOJI, "👍".as_bytes());
    }
    draft.sign(signer)
}

fn every_state_event(project: &Project, message: EventId) -> Vec<EventBody> {
    use crate::event::{emoji_index, MessageTarget, Reaction};
    let reaction = Reaction {
        message,
        emoji_ix: emoji_index(&project.keys, message, "👍"),
    };
    let target = MessageTarget { message };
    vec![
        EventBody::ReactionAdded(reaction.clone()),
        EventBody::ReactionRemoved(reaction),
        EventBody::MessageRead(target.clone()),
        EventBody::MessagePinned(target.clone()),
        EventBody::MessageUnpinned(target.clone()),
        EventBody::MessageDeleted(target),
    ]
}

#[test]
fn reactions_reads_pins_and_a_deletion_by_the_sender_pass_the_audit() {
    let mut log = Log::with_messages(1);
    let message = log.events[2].1.id;
    let bodies = every_state_event(&log.project, message);
    for body in bodies {
        let event = on(&log.project, &log.alice, &log.alice.key, body);
        log.append(event);
    }
    assert_eq!(log.audit().unwrap().events, 9);
}

#[test]
fn a_message_state_event_signed_by_another_key_is_caught() {
    for body in every_state_event(&Project::new(), EventId::generate()) {
        let mut log = Log::with_messages(1);
        let body = retarget(body, log.events[2].1.id);
        let forged = on(&log.project, &log.alice, &SigningKey::generate(), body);
        let seq = log.append(forged);
        assert!(matches!(
            log.audit(),
            Err(AuditError::ForgedSignature { seq: s, .. }) if s == seq
        ));
    }
}

fn retarget(body: EventBody, message: EventId) -> EventBody {
    match body {
        EventBody::ReactionAdded(mut r) => {
            r.message = message;
            EventBody::ReactionAdded(r)
        }
        EventBody::ReactionRemoved(mut r) => {
            r.message = message;
            EventBody::ReactionRemoved(r)
        }
        EventBody::MessageRead(_) => {
            EventBody::MessageRead(crate::event::MessageTarget { message })
        }
        EventBody::MessagePinned(_) => {
            EventBody::MessagePinned(crate::event::MessageTarget { message })
        }
        EventBody::MessageUnpinned(_) => {
            EventBody::MessageUnpinned(crate::event::MessageTarget { message })
        }
        EventBody::MessageDeleted(_) => {
            EventBody::MessageDeleted(crate::event::MessageTarget { message })
        }
        other => other,
    }
}

#[test]
fn a_deletion_by_another_agent_or_of_a_message_not_in_the_log_is_caught() {
    let mut log = Log::with_messages(1);
    let message = log.events[2].1.id;
    let bob = log.project.agent("bob");
    log.append(log.project.registration_of(&bob));
    let target = crate::event::MessageTarget { message };
    let deletion = on(
        &log.project,
        &bob,
        &bob.key,
        EventBody::MessageDeleted(target),
    );
    let seq = log.append(deletion);
    assert!(matches!(
        log.audit(),
        Err(AuditError::DeletedByAnotherAgent { seq: s, message: m, .. }) if s == seq && m == message
    ));

    let mut log = Log::with_messages(0);
    let elsewhere = EventId::generate();
    let pin = on(
        &log.project,
        &log.alice,
        &log.alice.key,
        EventBody::MessagePinned(crate::event::MessageTarget { message: elsewhere }),
    );
    let seq = log.append(pin);
    assert_eq!(
        log.audit().unwrap_err(),
        AuditError::UnknownTargetMessage {
            seq,
            message: elsewhere
        }
    );
}

#[test]
fn a_profile_update_signed_by_its_agent_passes_and_a_forged_one_is_caught() {
    let mut log = Log::with_messages(0);
    let draft = |agent: &Agent| {
        Draft::new(
            log.project.id,
            Actor::Agent(agent.id),
            EventBody::AgentProfileUpdated(crate::event::AgentProfileUpdated {}),
        )
        .seal(&log.project.keys, crate::event::fields::ROLE, b"reviewer")
    };
    let good = draft(&log.alice).sign(&log.alice.key);
    let forged = draft(&log.alice).sign(&SigningKey::generate());
    log.append(good);
    assert_eq!(log.audit().unwrap().events, 3);
    let seq = log.append(forged);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ForgedSignature { seq: s, .. }) if s == seq
    ));
}

#[test]
fn a_file_shared_then_deleted_by_registered_agents_passes_and_a_forged_delete_is_caught() {
    let mut log = Log::with_messages(0);
    let shared = Draft::new(
        log.project.id,
        Actor::Agent(log.alice.id),
        EventBody::FileShared(crate::event::FileShared {
            to: None,
            size: 0,
            ciphertext_size: crate::crypto::file_stream::ciphertext_len(
                0,
                crate::crypto::file_stream::FILE_CHUNK_SIZE,
            )
            .unwrap(),
            digest: "00".repeat(32),
            chunk_size: crate::crypto::file_stream::FILE_CHUNK_SIZE,
        }),
    )
    .seal(&log.project.keys, crate::event::fields::NAME, b"a.txt")
    .sign(&log.alice.key);
    let file = shared.id;
    log.append(shared);
    let deleted = |signer: &SigningKey| {
        Draft::new(
            log.project.id,
            Actor::Agent(log.alice.id),
            EventBody::FileDeleted(crate::event::FileDeleted { file }),
        )
        .sign(signer)
    };
    let honest = deleted(&log.alice.key);
    let forged = deleted(&SigningKey::generate());
    log.append(honest);
    assert!(log.audit().is_ok());
    let seq = log.append(forged);
    assert!(matches!(
        log.audit(),
        Err(AuditError::ForgedSignature { seq: s, .. }) if s == seq
    ));
}
