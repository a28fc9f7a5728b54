//! Builders for the client's own tests: a project with an owner, agents registered by it,
//! and messages laid out on a hash chain the way the log would store them.

use std::cell::{Cell, RefCell};

use nexysync_domain::crypto::{AgentToken, ContentKeys, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, ChainLink, Draft, Envelope, EventBody, EventHash, MessageSent,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, Seq};
use nexysync_domain::wire::{AgentInfo, StoredEvent};

pub struct Project {
    pub id: ProjectId,
    pub owner: SigningKey,
    pub keys: ContentKeys,
    next_seq: Cell<u64>,
    last: RefCell<Option<ChainLink>>,
}

pub struct Agent {
    pub id: AgentId,
    pub name: AgentName,
    pub key: SigningKey,
}

/// The clear metadata of a message to build.
#[derive(Default)]
pub struct Sent {
    pub to: Option<AgentId>,
    pub reply_to: Option<EventId>,
    pub topic: Option<String>,
}

impl Sent {
    pub fn broadcast() -> Self {
        Self::default()
    }

    pub fn to(agent: &Agent) -> Self {
        Self {
            to: Some(agent.id),
            ..Self::default()
        }
    }
}

impl Project {
    pub fn new() -> Self {
        let key = ProjectKey::generate();
        Self {
            id: ProjectId::generate(),
            owner: SigningKey::generate(),
            keys: key.content_keys(),
            // Seq 1 is the project's creation, which these tests never look at.
            next_seq: Cell::new(2),
            last: RefCell::new(Some(ChainLink {
                seq: Seq(1),
                hash: EventHash::try_from("ab".repeat(32)).unwrap(),
            })),
        }
    }

    pub fn agent(&self, name: &str) -> Agent {
        Agent {
            id: AgentId::generate(),
            name: AgentName::parse(name).unwrap(),
            key: SigningKey::generate(),
        }
    }

    /// Appends `event` to the simulated log: the next seq and a link to the last event.
    pub fn append(&self, mut event: Envelope) -> StoredEvent {
        let seq = Seq(self.next_seq.get());
        self.next_seq.set(seq.0 + 1);
        event.prev = *self.last.borrow();
        *self.last.borrow_mut() = Some(ChainLink {
            seq,
            hash: event.hash(),
        });
        StoredEvent { seq, event }
    }

    pub fn registration_signed_by(&self, agent: &Agent, signer: &SigningKey) -> StoredEvent {
        self.append(
            Draft::new(
                self.id,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent: agent.id,
                    name: agent.name.clone(),
                    signing_key: agent.key.public_key(),
                    token_hash: AgentToken::generate().hash(),
                }),
            )
            .sign(signer),
        )
    }

    /// The `GET /v1/agents` entry of an agent registered by the owner.
    pub fn agent_info(&self, agent: &Agent) -> AgentInfo {
        self.info_with(agent, self.registration_signed_by(agent, &self.owner))
    }

    pub fn info_with(&self, agent: &Agent, registration: StoredEvent) -> AgentInfo {
        AgentInfo {
            id: agent.id,
            name: agent.name.clone(),
            signing_key: agent.key.public_key(),
            registration,
            profile: None,
            online: false,
            last_seen_ms: None,
        }
    }

    pub fn draft(&self, from: &Agent, sent: Sent, body: &str) -> Draft {
        let topic_ix = sent
            .topic
            .as_deref()
            .map(|topic| self.keys.blind_index("topic", topic));
        let mut draft = Draft::new(
            self.id,
            Actor::Agent(from.id),
            EventBody::MessageSent(MessageSent {
                to: sent.to,
                reply_to: sent.reply_to,
                ttl_s: None,
                topic_ix,
            }),
        )
        .seal(&self.keys, fields::BODY, body.as_bytes());
        if let Some(topic) = &sent.topic {
            draft = draft.seal(&self.keys, fields::TOPIC, topic.as_bytes());
        }
        draft
    }

    pub fn message(&self, from: &Agent, sent: Sent, body: &str) -> StoredEvent {
        self.append(self.draft(from, sent, body).sign(&from.key))
    }

    pub fn chain(&self, from: &Agent, n: usize) -> Vec<StoredEvent> {
        (0..n)
            .map(|i| self.message(from, Sent::broadcast(), &format!("message {i}")))
            .collect()
    }
}
