//! Provisioning projects and agents through the API, as the CLI does, and sending
//! sealed, signed messages as the MCP client does.

use nexysync_domain::crypto::{AgentToken, ContentKeys, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, Draft, Envelope, EventBody, MessageSent, ProjectCreated,
    RetentionPolicy,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName};
use nexysync_domain::wire::Appended;

use crate::{json_of, TestApi};

/// A project provisioned on a test API.
#[derive(Debug)]
pub struct TestProject {
    pub id: ProjectId,
    pub key: ProjectKey,
    pub owner: SigningKey,
}

/// An agent with everything its key file would hold.
#[derive(Debug, Clone)]
pub struct TestAgent {
    pub id: AgentId,
    pub name: AgentName,
    pub key: SigningKey,
    pub token: AgentToken,
    pub project: ProjectId,
}

impl TestProject {
    /// Creates a project through `POST /v1/projects`.
    pub async fn create(api: &TestApi, name: &str) -> Self {
        let project = Self {
            id: ProjectId::generate(),
            key: ProjectKey::generate(),
            owner: SigningKey::generate(),
        };
        let event = Draft::new(
            project.id,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse(name).unwrap(),
                owner_key: project.owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&project.owner);
        let (status, body) = api.admin_post("/v1/projects", &event).await;
        assert_eq!(status, 201, "project created: {body}");
        project
    }

    pub fn keys(&self) -> ContentKeys {
        self.key.content_keys()
    }

    /// The signed registration of a new agent, not yet sent.
    pub fn registration(&self, name: &str) -> (TestAgent, Envelope) {
        let agent = TestAgent {
            id: AgentId::generate(),
            name: AgentName::parse(name).unwrap(),
            key: SigningKey::generate(),
            token: AgentToken::generate(),
            project: self.id,
        };
        let event = Draft::new(
            self.id,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent: agent.id,
                name: agent.name.clone(),
                signing_key: agent.key.public_key(),
                token_hash: agent.token.hash(),
            }),
        )
        .sign(&self.owner);
        (agent, event)
    }

    /// Sets the project's retention policy through `POST /v1/projects/{id}/retention`,
    /// signed by its owner; the status and JSON answer.
    pub async fn set_retention(
        &self,
        api: &TestApi,
        policy: RetentionPolicy,
    ) -> (u16, serde_json::Value) {
        let event =
            Draft::new(self.id, Actor::Owner, EventBody::RetentionSet(policy)).sign(&self.owner);
        api.admin_post(&format!("/v1/projects/{}/retention", self.id), &event)
            .await
    }

    /// Registers an agent through `POST /v1/projects/{id}/agents`.
    pub async fn add_agent(&self, api: &TestApi, name: &str) -> TestAgent {
        let (agent, event) = self.registration(name);
        let (status, body) = api
            .admin_post(&format!("/v1/projects/{}/agents", self.id), &event)
            .await;
        assert_eq!(status, 201, "agent registered: {body}");
        agent
    }
}

impl TestAgent {
    /// A sealed, signed message, not yet sent.
    pub fn message(
        &self,
        project: &TestProject,
        to: Option<&TestAgent>,
        reply_to: Option<EventId>,
        body: &str,
    ) -> Envelope {
        let sent = MessageSent {
            to: to.map(|a| a.id),
            reply_to,
            ttl_s: None,
            topic_ix: None,
        };
        self.message_sent(project, sent, body, None)
    }

    /// A sealed, signed message with any routing and, given a `topic`, its sealed topic;
    /// its blind index replaces `sent.topic_ix`. Not yet sent.
    pub fn message_sent(
        &self,
        project: &TestProject,
        mut sent: MessageSent,
        body: &str,
        topic: Option<&str>,
    ) -> Envelope {
        let keys = project.keys();
        sent.topic_ix = topic.map(|topic| keys.blind_index(fields::TOPIC, topic));
        let draft = Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::MessageSent(sent),
        )
        .seal(&keys, fields::BODY, body.as_bytes());
        match topic {
            Some(topic) => draft.seal(&keys, fields::TOPIC, topic.as_bytes()),
            None => draft,
        }
        .sign(&self.key)
    }

    /// POSTs `event` as this agent; the status and JSON answer.
    pub async fn post(&self, api: &TestApi, event: &Envelope) -> (u16, serde_json::Value) {
        let response = api
            .http
            .post(format!("{}/v1/messages", api.url))
            .bearer_auth(self.token.expose_secret())
            .json(event)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }

    /// Sends a message and expects it accepted.
    pub async fn send(
        &self,
        api: &TestApi,
        project: &TestProject,
        to: Option<&TestAgent>,
        reply_to: Option<EventId>,
        body: &str,
    ) -> Appended {
        let event = self.message(project, to, reply_to, body);
        let (status, answer) = self.post(api, &event).await;
        assert!(status == 201, "message accepted: {status} {answer}");
        serde_json::from_value(answer).unwrap()
    }

    /// GETs `path` (under the API URL) as this agent.
    pub async fn get(&self, api: &TestApi, path: &str) -> (u16, serde_json::Value) {
        let response = api
            .http
            .get(format!("{}{}", api.url, path))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }
}
