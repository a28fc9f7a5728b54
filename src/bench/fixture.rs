//! The bench's own project and agents, provisioned through the API like any other.

use anyhow::Context;
use nexysync_domain::crypto::{AgentToken, ContentKeys, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, Draft, Envelope, EventBody, MessageSent, ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};
use nexysync_domain::wire::Appended;

use super::BenchOptions;
use crate::provisioning::Provisioning;

/// The body every bench message carries: a few lines, like an agent's status note.
pub const BODY: &str = "Finished the refactor of the storage layer; tests pass locally. \
     Next: wire the retry policy into the uploader and re-run the integration suite. \
     Ping me before touching src/upload.rs.";

/// Bytes of a stored bench event, so the raw floor publishes the same size.
pub fn typical_payload_len() -> usize {
    let keys = ProjectKey::generate().content_keys();
    let agent = BenchAgent::generate();
    message(ProjectId::generate(), &keys, &agent, None)
        .to_json()
        .len()
}

#[derive(Debug, Clone)]
pub struct BenchAgent {
    pub id: AgentId,
    pub key: SigningKey,
    pub token: AgentToken,
}

impl BenchAgent {
    fn generate() -> Self {
        Self {
            id: AgentId::generate(),
            key: SigningKey::generate(),
            token: AgentToken::generate(),
        }
    }
}

/// A sealed, signed bench message.
pub fn message(
    project: ProjectId,
    keys: &ContentKeys,
    from: &BenchAgent,
    to: Option<AgentId>,
) -> Envelope {
    Draft::new(
        project,
        Actor::Agent(from.id),
        EventBody::MessageSent(MessageSent {
            to,
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    )
    .seal(keys, fields::BODY, BODY.as_bytes())
    .sign(&from.key)
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub http: reqwest::Client,
    pub server: String,
    pub project: ProjectId,
    pub keys: ContentKeys,
    pub agents: Vec<BenchAgent>,
    owner: SigningKey,
    provisioning: Provisioning,
}

impl Fixture {
    /// A fresh project with `agents` agents.
    pub async fn provision(options: &BenchOptions, agents: usize) -> anyhow::Result<Self> {
        let provisioning = Provisioning::new(options.server.clone(), options.admin_token.clone())?;
        let project = ProjectId::generate();
        let owner = SigningKey::generate();
        let name = format!("bench-{}", &project.to_string()[..8]);
        let created = Draft::new(
            project,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse(&name).context("bench project name")?,
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&owner);
        provisioning
            .create_project(&created)
            .await
            .context("failed to create the bench project")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .build()
            .context("failed to build the HTTP client")?;
        let mut fixture = Self {
            http,
            server: options.server.clone(),
            project,
            keys: ProjectKey::generate().content_keys(),
            agents: Vec::new(),
            owner,
            provisioning,
        };
        fixture.agents = fixture.add_agents(agents).await?;
        Ok(fixture)
    }

    /// Waits until the server's read models have applied everything its log tail has
    /// seen (`/readyz`), so one measurement's backlog does not weigh on the next.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let ready: serde_json::Value = self
                .http
                .get(format!("{}/readyz", self.server))
                .send()
                .await
                .context("failed to ask the server whether it is ready")?
                .json()
                .await
                .context("unreadable /readyz answer")?;
            let applied = ready["applied_seq"].as_u64().unwrap_or(0);
            let seen = ready["hub_seq"].as_u64().unwrap_or(0);
            if applied >= seen {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the read models did not catch up within 5 minutes ({applied} of {seen})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Registers `count` more agents.
    pub async fn add_agents(&self, count: usize) -> anyhow::Result<Vec<BenchAgent>> {
        let mut added = Vec::with_capacity(count);
        for _ in 0..count {
            let agent = BenchAgent::generate();
            let registered = Draft::new(
                self.project,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent: agent.id,
                    name: AgentName::parse(&format!("agent-{}", agent.id))
                        .context("bench agent name")?,
                    signing_key: agent.key.public_key(),
                    token_hash: agent.token.hash(),
                }),
            )
            .sign(&self.owner);
            self.provisioning
                .register_agent(self.project, &registered)
                .await
                .context("failed to register a bench agent")?;
            added.push(agent);
        }
        Ok(added)
    }

    /// Seals, signs and sends one message; fails on anything but an accepted append.
    pub async fn send(&self, from: &BenchAgent, to: Option<AgentId>) -> anyhow::Result<Appended> {
        let event = message(self.project, &self.keys, from, to);
        self.post(from, &event).await
    }

    pub async fn post(&self, from: &BenchAgent, event: &Envelope) -> anyhow::Result<Appended> {
        let response = self
            .http
            .post(format!("{}/v1/messages", self.server))
            .bearer_auth(from.token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event.to_json())
            .send()
            .await
            .context("failed to send a bench message")?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("failed to read the answer")?;
        anyhow::ensure!(
            status.is_success(),
            "the server refused a bench message: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).context("unreadable answer to a send")
    }
}
