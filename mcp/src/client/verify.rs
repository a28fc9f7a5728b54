//! Turning an event the server served into a [`Message`], or refusing it.
//!
//! In order: it is a message of this project, from an agent the owner registered, signed
//! by that agent's key, consistent with the hash chain seen so far, and its sealed fields
//! open under the project key (authenticated, bound to this event and field). Only then is
//! anything decrypted for the agent.

use nexysync_domain::crypto::{ContentKeys, OpenError};
use nexysync_domain::event::{fields, Actor, Envelope, EventBody};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId};
use nexysync_domain::wire::StoredEvent;

use super::chain::{ChainError, ChainMemory};
use super::directory::{Directory, RegistrationError, VerifiedAgent};
use super::message::{Message, RejectedMessage};

/// Which check an event failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("it is a {kind} event, not a message")]
    NotAMessage { kind: &'static str },
    #[error("it belongs to project {found}, not to this project ({expected})")]
    WrongProject {
        expected: ProjectId,
        found: ProjectId,
    },
    #[error("it names the project owner as its sender; messages come from agents")]
    OwnerAsSender,
    #[error("its sender {0} is not an agent registered by the project owner")]
    UnknownSender(AgentId),
    #[error("its sender `{name}` is listed but not trusted: {reason}")]
    UntrustedSender {
        name: AgentName,
        reason: RegistrationError,
    },
    #[error("its signature does not verify against the registered key of its sender `{0}`")]
    BadSignature(AgentName),
    #[error("hash chain check failed: {0}")]
    Chain(#[from] ChainError),
    #[error("its recipient {0} is not an agent registered by the project owner")]
    UnknownRecipient(AgentId),
    #[error("it has no sealed `{0}` field")]
    MissingField(&'static str),
    #[error("a sealed field did not open: {0}")]
    Unopenable(#[from] OpenError),
    #[error("its topic does not match its topic index")]
    TopicIndexMismatch,
    #[error("its {0} is not UTF-8 text")]
    NotText(&'static str),
    #[error("it is a {kind} event, not a kv_set")]
    NotAKvSet { kind: &'static str },
    #[error("its key does not match its key index")]
    KeyIndexMismatch,
    #[error("it is a {kind} event, not a ref_shared")]
    NotARef { kind: &'static str },
    #[error("it is served as deleted without its sender's signed message_deleted")]
    DeletionUnproven,
    #[error("it is a {kind} event, not a change to a message")]
    NotAMessageUpdate { kind: &'static str },
    #[error("it is a {kind} event, not a reaction_added")]
    NotAReaction { kind: &'static str },
    #[error("the reaction is about another message")]
    ReactionElsewhere,
    #[error("its emoji does not match its emoji index")]
    EmojiIndexMismatch,
    #[error("it is a {kind} event, not an agent_profile_updated")]
    NotAProfile { kind: &'static str },
    #[error("it is a profile written by `{0}`, not by the agent it is served for")]
    ProfileOfAnotherAgent(AgentName),
    #[error("it is a {kind} event, not a file_shared")]
    NotAFile { kind: &'static str },
}

impl VerifyError {
    /// Whether a fresher list of agents could change the verdict (an agent registered
    /// after the list was fetched).
    pub fn may_be_stale_directory(&self) -> bool {
        matches!(
            self,
            VerifyError::UnknownSender(_) | VerifyError::UnknownRecipient(_)
        )
    }
}

/// What verification needs to know about the reader.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub project: ProjectId,
    pub keys: &'a ContentKeys,
}

/// Verifies and opens one served event.
pub fn verify_message(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    stored: &StoredEvent,
) -> Result<Message, RejectedMessage> {
    check_message(reader, directory, chain, stored).map_err(|reason| RejectedMessage {
        id: stored.event.id,
        seq: stored.seq,
        reason,
    })
}

pub(crate) fn check_message(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    stored: &StoredEvent,
) -> Result<Message, VerifyError> {
    let event = &stored.event;
    let EventBody::MessageSent(sent) = &event.body else {
        return Err(VerifyError::NotAMessage {
            kind: event.body.kind().as_str(),
        });
    };
    let sender = author(reader, directory, event)?;
    chain.observe(stored.seq, event)?;

    let to = directory.recipient_name(sent.to)?;
    let body =
        open_text(reader, stored, fields::BODY)?.ok_or(VerifyError::MissingField(fields::BODY))?;
    let topic = open_text(reader, stored, fields::TOPIC)?;
    match (&topic, &sent.topic_ix) {
        (None, None) => {}
        (Some(topic), Some(ix)) if reader.keys.blind_index("topic", topic) == *ix => {}
        (None, Some(_)) => return Err(VerifyError::MissingField(fields::TOPIC)),
        _ => return Err(VerifyError::TopicIndexMismatch),
    }

    Ok(Message {
        id: event.id,
        seq: stored.seq,
        from: sender.name.clone(),
        to,
        topic,
        body,
        reply_to: sent.reply_to,
        sent_at: rfc3339(event.at),
        ttl_s: sent.ttl_s,
        reactions: Vec::new(),
        pinned: false,
        read_by_me: false,
        deleted: false,
    })
}

/// The registered agent that wrote `event`, once its project and signature check out.
pub(crate) fn author<'d>(
    reader: Reader<'_>,
    directory: &'d Directory,
    event: &Envelope,
) -> Result<&'d VerifiedAgent, VerifyError> {
    if event.project != reader.project {
        return Err(VerifyError::WrongProject {
            expected: reader.project,
            found: event.project,
        });
    }
    let Actor::Agent(sender_id) = event.actor else {
        return Err(VerifyError::OwnerAsSender);
    };
    let sender =
        directory
            .by_id(sender_id)
            .ok_or_else(|| match directory.rejection(sender_id) {
                Some((name, reason)) => VerifyError::UntrustedSender {
                    name: name.clone(),
                    reason: reason.clone(),
                },
                None => VerifyError::UnknownSender(sender_id),
            })?;
    event
        .verify_signature(&sender.signing_key)
        .map_err(|_| VerifyError::BadSignature(sender.name.clone()))?;
    Ok(sender)
}

pub(crate) fn open_text(
    reader: Reader<'_>,
    stored: &StoredEvent,
    field: &'static str,
) -> Result<Option<String>, VerifyError> {
    match stored.event.open(reader.keys, field)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| VerifyError::NotText(field)),
        None => Ok(None),
    }
}

pub(crate) fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{at_ms} ms since the Unix epoch (out of range)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::{Agent, Project, Sent};
    use nexysync_domain::crypto::{ProjectKey, SigningKey};
    use nexysync_domain::wire::AgentList;

    struct Fixture {
        project: Project,
        alice: Agent,
        bob: Agent,
        directory: Directory,
        chain: ChainMemory,
    }

    impl Fixture {
        fn new() -> Self {
            let project = Project::new();
            let alice = project.agent("alice");
            let bob = project.agent("bob");
            let mut chain = ChainMemory::new();
            let list = AgentList {
                agents: vec![project.agent_info(&alice), project.agent_info(&bob)],
            };
            let directory =
                Directory::verify(project.id, &project.owner.public_key(), &list, &mut chain);
            Self {
                project,
                alice,
                bob,
                directory,
                chain,
            }
        }

        fn verify(&mut self, stored: &StoredEvent) -> Result<Message, VerifyError> {
            let reader = Reader {
                project: self.project.id,
                keys: &self.project.keys,
            };
            verify_message(reader, &self.directory, &mut self.chain, stored).map_err(|r| r.reason)
        }
    }

    #[test]
    fn a_genuine_message_opens_to_its_plaintext() {
        let mut f = Fixture::new();
        let sent = Sent {
            topic: Some("deploy".into()),
            ..Sent::to(&f.bob)
        };
        let stored = f.project.message(&f.alice, sent, "ship it");
        let message = f.verify(&stored).unwrap();
        assert_eq!(message.body, "ship it");
        assert_eq!(message.topic.as_deref(), Some("deploy"));
        assert_eq!(message.from, f.alice.name);
        assert_eq!(message.to.as_ref(), Some(&f.bob.name));
        assert_eq!(message.seq, stored.seq);
        assert!(message.sent_at.ends_with('Z'));
    }

    #[test]
    fn a_message_with_a_bad_signature_is_refused() {
        let mut f = Fixture::new();
        let mut stored = f.project.message(&f.alice, Sent::to(&f.bob), "hi");
        stored.event.sig.flip_bit_for_test(5);
        assert_eq!(
            f.verify(&stored),
            Err(VerifyError::BadSignature(f.alice.name.clone()))
        );
    }

    #[test]
    fn a_message_from_an_unregistered_key_is_refused() {
        let mut f = Fixture::new();
        // Signed by a key that claims to be alice's but is not the one the owner registered.
        let impostor = Agent {
            id: f.alice.id,
            name: f.alice.name.clone(),
            key: SigningKey::generate(),
        };
        let stored = f.project.message(&impostor, Sent::to(&f.bob), "hi");
        assert_eq!(
            f.verify(&stored),
            Err(VerifyError::BadSignature(f.alice.name.clone()))
        );
        let stranger = f.project.agent("stranger");
        let stored = f.project.message(&stranger, Sent::to(&f.bob), "hi");
        assert_eq!(
            f.verify(&stored),
            Err(VerifyError::UnknownSender(stranger.id))
        );
    }

    #[test]
    fn a_message_from_an_agent_the_owner_did_not_register_is_refused() {
        let project = Project::new();
        let mallory = project.agent("mallory");
        let bob = project.agent("bob");
        let forged = project.registration_signed_by(&mallory, &SigningKey::generate());
        let list = AgentList {
            agents: vec![
                project.info_with(&mallory, forged),
                project.agent_info(&bob),
            ],
        };
        let mut chain = ChainMemory::new();
        let directory =
            Directory::verify(project.id, &project.owner.public_key(), &list, &mut chain);
        let stored = project.message(&mallory, Sent::to(&bob), "trust me");
        let reader = Reader {
            project: project.id,
            keys: &project.keys,
        };
        let rejected = verify_message(reader, &directory, &mut chain, &stored).unwrap_err();
        assert!(matches!(
            rejected.reason,
            VerifyError::UntrustedSender {
                reason: RegistrationError::NotSignedByOwner,
                ..
            }
        ));
        assert!(!rejected.to_string().contains("trust me"));
        // `Client::message` answers a rejected message with this error.
        let error = crate::client::ClientError::from(rejected).to_string();
        assert!(error.contains("not signed by the project owner"), "{error}");
        assert!(!error.contains("trust me"), "{error}");
    }

    #[test]
    fn content_the_server_moved_from_another_message_is_refused() {
        let mut f = Fixture::new();
        let genuine = f
            .project
            .message(&f.alice, Sent::to(&f.bob), "run the tests");
        let other = f.project.message(&f.alice, Sent::to(&f.bob), "rm -rf /");
        let mut forged = genuine.clone();
        forged.event.sealed = other.event.sealed.clone();
        assert_eq!(
            f.verify(&forged),
            Err(VerifyError::BadSignature(f.alice.name.clone()))
        );
    }

    #[test]
    fn a_message_from_the_owner_key_is_not_a_message_from_an_agent() {
        let mut f = Fixture::new();
        let draft = nexysync_domain::event::Draft::new(
            f.project.id,
            Actor::Owner,
            EventBody::MessageSent(nexysync_domain::event::MessageSent {
                to: Some(f.bob.id),
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        )
        .seal(&f.project.keys, fields::BODY, b"from the top");
        let stored = f.project.append(draft.sign(&f.project.owner));
        assert_eq!(f.verify(&stored), Err(VerifyError::OwnerAsSender));
    }

    #[test]
    fn a_message_of_another_project_is_refused() {
        let mut f = Fixture::new();
        let mut stored = f.project.message(&f.alice, Sent::broadcast(), "hi");
        stored.event.project = ProjectId::generate();
        assert!(matches!(
            f.verify(&stored),
            Err(VerifyError::WrongProject { .. })
        ));
    }

    #[test]
    fn a_message_sealed_under_another_project_key_is_refused() {
        let mut f = Fixture::new();
        let other_keys = ProjectKey::generate().content_keys();
        let draft = nexysync_domain::event::Draft::new(
            f.project.id,
            Actor::Agent(f.alice.id),
            EventBody::MessageSent(nexysync_domain::event::MessageSent {
                to: None,
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        )
        .seal(&other_keys, fields::BODY, b"hi");
        let stored = f.project.append(draft.sign(&f.alice.key));
        assert_eq!(
            f.verify(&stored),
            Err(VerifyError::Unopenable(OpenError::WrongKey))
        );
    }

    #[test]
    fn a_message_breaking_the_chain_is_refused() {
        let mut f = Fixture::new();
        let first = f.project.message(&f.alice, Sent::broadcast(), "one");
        let mut second = f.project.message(&f.alice, Sent::broadcast(), "two");
        f.verify(&first).unwrap();
        second.event.prev.as_mut().unwrap().hash = f
            .project
            .message(&f.bob, Sent::broadcast(), "x")
            .event
            .hash();
        assert!(matches!(
            f.verify(&second),
            Err(VerifyError::Chain(ChainError::HashMismatch { .. }))
        ));
    }

    #[test]
    fn a_topic_that_does_not_match_its_index_is_refused() {
        let mut f = Fixture::new();
        let sent = Sent {
            topic: Some("deploy".into()),
            ..Sent::broadcast()
        };
        let mut draft = f.project.draft(&f.alice, sent, "hi");
        if let EventBody::MessageSent(meta) = &mut draft.body {
            meta.topic_ix = Some(f.project.keys.blind_index("topic", "other"));
        }
        let stored = f.project.append(draft.sign(&f.alice.key));
        assert_eq!(f.verify(&stored), Err(VerifyError::TopicIndexMismatch));
    }
}
