//! Small builders for the domain's own tests.

use crate::crypto::{AgentToken, ContentKeys, ProjectKey, SigningKey};
use crate::event::{fields, Actor, AgentRegistered, Draft, Envelope, EventBody, MessageSent};
use crate::ids::{AgentId, AgentName, ProjectId};

pub struct Project {
    pub id: ProjectId,
    pub owner: SigningKey,
    pub keys: ContentKeys,
}

pub struct Agent {
    pub id: AgentId,
    pub name: AgentName,
    pub key: SigningKey,
}

impl Project {
    pub fn new() -> Self {
        Self {
            id: ProjectId::generate(),
            owner: SigningKey::generate(),
            keys: ProjectKey::generate().content_keys(),
        }
    }

    pub fn agent(&self, name: &str) -> Agent {
        Agent {
            id: AgentId::generate(),
            name: AgentName::parse(name).unwrap(),
            key: SigningKey::generate(),
        }
    }

    pub fn registration_of(&self, agent: &Agent) -> Envelope {
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
        .sign(&self.owner)
    }
}

pub fn message_with(project: &Project, from: &Agent, meta: MessageSent, body: &str) -> Envelope {
    Draft::new(
        project.id,
        Actor::Agent(from.id),
        EventBody::MessageSent(meta),
    )
    .seal(&project.keys, fields::BODY, body.as_bytes())
    .sign(&from.key)
}

pub fn message_from(project: &Project, from: &Agent, body: &str) -> Envelope {
    message_with(
        project,
        from,
        MessageSent {
            to: None,
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        },
        body,
    )
}
