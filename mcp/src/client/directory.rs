//! The project's agents as this client believes them: only those whose registration is
//! signed by the owner key from the key file. The server lists agents, but cannot make
//! the client accept a key the owner did not sign.

use std::collections::HashMap;

use nexysync_domain::crypto::PublicKey;
use nexysync_domain::event::{Actor, EventBody};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId};
use nexysync_domain::wire::{AgentInfo, AgentList};

use super::chain::{ChainError, ChainMemory};

/// An agent whose registration verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAgent {
    pub id: AgentId,
    pub name: AgentName,
    pub signing_key: PublicKey,
}

/// Why a listed agent is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("its registration is a {kind} event, not agent_registered")]
    NotARegistration { kind: &'static str },
    #[error("its registration belongs to project {found}")]
    WrongProject { found: ProjectId },
    #[error("its registration was written by {actor}, not the project owner")]
    NotByOwner { actor: Actor },
    #[error("its registration is not signed by the project owner's key")]
    NotSignedByOwner,
    #[error("the listed {field} differs from the one in its signed registration")]
    ListingMismatch { field: &'static str },
    #[error("the name `{name}` is already registered to agent {holder}")]
    NameTaken { name: AgentName, holder: AgentId },
    #[error("its registration breaks the hash chain: {0}")]
    Chain(ChainError),
}

/// The verified agents, plus the listed ones that failed and why.
#[derive(Debug, Clone)]
pub struct Directory {
    agents: HashMap<AgentId, VerifiedAgent>,
    by_name: HashMap<AgentName, AgentId>,
    rejected: HashMap<AgentId, (AgentName, RegistrationError)>,
}

impl Directory {
    /// Verifies every listed registration against `owner_key` for `project`, and feeds
    /// the registrations' hashes to `chain`.
    pub fn verify(
        project: ProjectId,
        owner_key: &PublicKey,
        list: &AgentList,
        chain: &mut ChainMemory,
    ) -> Directory {
        let mut listed: Vec<&AgentInfo> = list.agents.iter().collect();
        // Earliest registration first, so a name clash keeps the agent that had it first.
        listed.sort_by_key(|info| info.registration.seq);
        let mut directory = Directory {
            agents: HashMap::new(),
            by_name: HashMap::new(),
            rejected: HashMap::new(),
        };
        for info in listed {
            match verify_registration(project, owner_key, info, chain) {
                Ok(agent) => {
                    if let Some(holder) = directory.by_name.get(&agent.name) {
                        let error = RegistrationError::NameTaken {
                            name: agent.name.clone(),
                            holder: *holder,
                        };
                        directory.reject(info, error);
                        continue;
                    }
                    directory.by_name.insert(agent.name.clone(), agent.id);
                    directory.agents.insert(agent.id, agent);
                }
                Err(error) => directory.reject(info, error),
            }
        }
        directory
    }

    fn reject(&mut self, info: &AgentInfo, error: RegistrationError) {
        tracing::warn!(agent = %info.id, name = %info.name, %error, "agent registration failed verification; ignoring the agent");
        self.rejected.insert(info.id, (info.name.clone(), error));
    }

    pub fn by_id(&self, id: AgentId) -> Option<&VerifiedAgent> {
        self.agents.get(&id)
    }

    /// The name of an event's recipient (`None` for everyone); an id the verified
    /// directory does not hold is refused.
    pub fn recipient_name(
        &self,
        to: Option<AgentId>,
    ) -> Result<Option<AgentName>, super::VerifyError> {
        to.map(|id| {
            self.by_id(id)
                .map(|agent| agent.name.clone())
                .ok_or(super::VerifyError::UnknownRecipient(id))
        })
        .transpose()
    }

    pub fn by_name(&self, name: &AgentName) -> Option<&VerifiedAgent> {
        self.by_name.get(name).and_then(|id| self.agents.get(id))
    }

    /// Why a listed agent was not believed, if it was listed and failed.
    pub fn rejection(&self, id: AgentId) -> Option<&(AgentName, RegistrationError)> {
        self.rejected.get(&id)
    }

    /// The verified agents, sorted by name.
    pub fn agents(&self) -> Vec<&VerifiedAgent> {
        let mut agents: Vec<_> = self.agents.values().collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }

    /// The verified agents' names, sorted.
    pub fn names(&self) -> Vec<AgentName> {
        self.agents().into_iter().map(|a| a.name.clone()).collect()
    }
}

fn verify_registration(
    project: ProjectId,
    owner_key: &PublicKey,
    info: &AgentInfo,
    chain: &mut ChainMemory,
) -> Result<VerifiedAgent, RegistrationError> {
    let event = &info.registration.event;
    let EventBody::AgentRegistered(registered) = &event.body else {
        return Err(RegistrationError::NotARegistration {
            kind: event.body.kind().as_str(),
        });
    };
    if event.project != project {
        return Err(RegistrationError::WrongProject {
            found: event.project,
        });
    }
    if event.actor != Actor::Owner {
        return Err(RegistrationError::NotByOwner { actor: event.actor });
    }
    event
        .verify_signature(owner_key)
        .map_err(|_| RegistrationError::NotSignedByOwner)?;
    for (field, matches) in [
        ("id", registered.agent == info.id),
        ("name", registered.name == info.name),
        ("signing key", registered.signing_key == info.signing_key),
    ] {
        if !matches {
            return Err(RegistrationError::ListingMismatch { field });
        }
    }
    chain
        .observe(info.registration.seq, event)
        .map_err(RegistrationError::Chain)?;
    Ok(VerifiedAgent {
        id: registered.agent,
        name: registered.name.clone(),
        signing_key: registered.signing_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::Project;
    use nexysync_domain::crypto::SigningKey;

    fn directory_of(project: &Project, agents: Vec<AgentInfo>) -> Directory {
        Directory::verify(
            project.id,
            &project.owner.public_key(),
            &AgentList { agents },
            &mut ChainMemory::new(),
        )
    }

    #[test]
    fn agents_registered_by_the_owner_are_believed() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let directory = directory_of(
            &project,
            vec![project.agent_info(&alice), project.agent_info(&bob)],
        );
        assert_eq!(
            directory.names(),
            vec![alice.name.clone(), bob.name.clone()]
        );
        assert_eq!(
            directory.by_name(&bob.name).unwrap().signing_key,
            bob.key.public_key()
        );
    }

    #[test]
    fn a_registration_not_signed_by_the_owner_is_refused() {
        let project = Project::new();
        let mallory = project.agent("mallory");
        let server_key = SigningKey::generate();
        let registration = project.registration_signed_by(&mallory, &server_key);
        let directory = directory_of(&project, vec![project.info_with(&mallory, registration)]);
        assert!(directory.by_id(mallory.id).is_none());
        assert_eq!(
            directory.rejection(mallory.id).map(|r| &r.1),
            Some(&RegistrationError::NotSignedByOwner)
        );
    }

    #[test]
    fn a_listing_that_swaps_the_signed_key_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut info = project.agent_info(&alice);
        info.signing_key = SigningKey::generate().public_key();
        let directory = directory_of(&project, vec![info]);
        assert!(directory.by_id(alice.id).is_none());
        assert_eq!(
            directory.rejection(alice.id).map(|r| &r.1),
            Some(&RegistrationError::ListingMismatch {
                field: "signing key"
            })
        );
    }

    #[test]
    fn a_registration_from_another_project_is_refused() {
        let project = Project::new();
        let other = Project::new();
        let alice = other.agent("alice");
        let info = other.agent_info(&alice);
        let directory = directory_of(&project, vec![info]);
        assert!(matches!(
            directory.rejection(alice.id).map(|r| &r.1),
            Some(RegistrationError::WrongProject { .. })
        ));
    }
}
