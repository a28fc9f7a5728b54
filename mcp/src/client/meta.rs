//! ns_meta, client side: who I am, the project's agents with their profiles and
//! presence, presence alone, the quota, and setting my own profile. Role and description
//! are sealed before they leave; every profile read back is verified (an
//! `agent_profile_updated` of this project, by the agent it describes, signed with that
//! agent's owner-registered key, consistent with the hash chain) before it is opened.

use nexysync_domain::decide::MAX_SEALED_BYTES;
use nexysync_domain::event::{fields, Actor, AgentProfileUpdated, Draft, EventBody};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};
use nexysync_domain::wire::{AgentList, Appended, PresenceList, QuotaStatus, StoredEvent, WhoAmI};
use serde::Serialize;

use super::http::Attempts;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory, SEAL_OVERHEAD};

/// A verified, decrypted profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_at: String,
}

/// This agent, as the server knows it, with its verified profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Me {
    pub project: ProjectId,
    pub project_name: ProjectName,
    pub agent: AgentId,
    pub agent_name: AgentName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Why a served profile was not believed (it is then not shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_error: Option<String>,
}

/// One verified agent of the project, with its profile and presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentMeta {
    pub name: AgentName,
    pub id: AgentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_error: Option<String>,
}

impl Client {
    /// `GET /v1/whoami`, with this agent's profile verified and opened.
    pub async fn me(&self) -> Result<Me, ClientError> {
        let query = self.min_seq();
        let me: WhoAmI = self
            .http()
            .get("v1/whoami", &query, Attempts::Retry)
            .await?;
        let (profile, profile_error) = match &me.profile {
            None => (None, None),
            Some(stored) => {
                let directory = self.directory().await?;
                match self.check_profile(&directory, me.agent, stored) {
                    Ok(profile) => (Some(profile), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
        };
        Ok(Me {
            project: me.project,
            project_name: me.project_name,
            agent: me.agent,
            agent_name: me.agent_name,
            profile,
            profile_error,
        })
    }

    /// `GET /v1/agents`: the verified agents (sorted by name), their verified profiles and
    /// presence. Agents whose registration fails verification are left out.
    pub async fn agents_meta(&self) -> Result<Vec<AgentMeta>, ClientError> {
        let list: AgentList = self
            .http()
            .get("v1/agents", &self.min_seq(), Attempts::Retry)
            .await?;
        let key = &self.inner.key;
        let directory = Directory::verify(
            key.project.id,
            &key.project.owner_key,
            &list,
            &mut self.chain(),
        );
        let directory = std::sync::Arc::new(directory);
        *self.inner.directory.lock().await = Some(directory.clone());
        let mut agents: Vec<AgentMeta> = list
            .agents
            .iter()
            .filter(|info| directory.by_id(info.id).is_some())
            .map(|info| {
                let (profile, profile_error) = match &info.profile {
                    None => (None, None),
                    Some(stored) => match self.check_profile(&directory, info.id, stored) {
                        Ok(profile) => (Some(profile), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                };
                AgentMeta {
                    name: info.name.clone(),
                    id: info.id,
                    role: profile.as_ref().map(|p| p.role.clone()),
                    description: profile.and_then(|p| p.description),
                    online: info.online,
                    last_seen: info.last_seen_ms.map(rfc3339),
                    profile_error,
                }
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(agents)
    }

    /// `GET /v1/presence`.
    pub async fn presence(&self) -> Result<PresenceList, ClientError> {
        self.http().get("v1/presence", &[], Attempts::Retry).await
    }

    /// `GET /v1/quota`.
    pub async fn quota(&self) -> Result<QuotaStatus, ClientError> {
        self.http()
            .get("v1/quota", &self.min_seq(), Attempts::Retry)
            .await
    }

    /// Seals, signs and sends this agent's profile (`PUT /v1/profile`).
    pub async fn update_profile(
        &self,
        role: &str,
        description: Option<&str>,
    ) -> Result<Appended, ClientError> {
        let size = role.len() + SEAL_OVERHEAD + description.map_or(0, |d| d.len() + SEAL_OVERHEAD);
        if size > MAX_SEALED_BYTES {
            return Err(ClientError::ContentTooLarge {
                size,
                limit: MAX_SEALED_BYTES,
            });
        }
        let me = &self.inner.key;
        let keys = &self.inner.keys;
        let mut draft = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::AgentProfileUpdated(AgentProfileUpdated {}),
        )
        .seal(keys, fields::ROLE, role.as_bytes());
        if let Some(description) = description {
            draft = draft.seal(keys, fields::DESCRIPTION, description.as_bytes());
        }
        let envelope = draft.sign(&me.signing_key);
        tracing::debug!(event = %envelope.id, "updating this agent's profile");
        let appended: Appended = self.http().put("v1/profile", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    fn check_profile(
        &self,
        directory: &Directory,
        of: AgentId,
        stored: &StoredEvent,
    ) -> Result<Profile, VerifyError> {
        let reader = Reader {
            project: self.inner.key.project.id,
            keys: &self.inner.keys,
        };
        check_profile(reader, directory, &mut self.chain(), of, stored)
    }
}

/// Verifies and opens `stored` as the profile of agent `of`: an `agent_profile_updated`
/// of this project, written by `of` itself, signed with its registered key, consistent
/// with the hash chain seen so far.
fn check_profile(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    of: AgentId,
    stored: &StoredEvent,
) -> Result<Profile, VerifyError> {
    let event = &stored.event;
    if !matches!(event.body, EventBody::AgentProfileUpdated(_)) {
        return Err(VerifyError::NotAProfile {
            kind: event.body.kind().as_str(),
        });
    }
    let author = author(reader, directory, event)?;
    if author.id != of {
        return Err(VerifyError::ProfileOfAnotherAgent(author.name.clone()));
    }
    chain.observe(stored.seq, event)?;
    Ok(Profile {
        role: open_text(reader, stored, fields::ROLE)?
            .ok_or(VerifyError::MissingField(fields::ROLE))?,
        description: open_text(reader, stored, fields::DESCRIPTION)?,
        updated_at: rfc3339(event.at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::{Agent, Project, Sent};
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::wire::AgentList;

    fn profile_of(project: &Project, agent: &Agent, signer: &SigningKey) -> StoredEvent {
        project.append(
            Draft::new(
                project.id,
                Actor::Agent(agent.id),
                EventBody::AgentProfileUpdated(AgentProfileUpdated {}),
            )
            .seal(&project.keys, fields::ROLE, b"reviewer")
            .sign(signer),
        )
    }

    fn directory(project: &Project, agents: &[&Agent]) -> Directory {
        Directory::verify(
            project.id,
            &project.owner.public_key(),
            &AgentList {
                agents: agents.iter().map(|a| project.agent_info(a)).collect(),
            },
            &mut ChainMemory::new(),
        )
    }

    #[test]
    fn a_profile_signed_by_its_agent_opens_and_others_are_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let directory = directory(&project, &[&alice, &bob]);
        let reader = Reader {
            project: project.id,
            keys: &project.keys,
        };
        let mut chain = ChainMemory::new();

        let good = profile_of(&project, &alice, &alice.key);
        let opened = check_profile(reader, &directory, &mut chain, alice.id, &good).unwrap();
        assert_eq!(opened.role, "reviewer");

        let forged = profile_of(&project, &alice, &SigningKey::generate());
        assert!(matches!(
            check_profile(reader, &directory, &mut chain, alice.id, &forged),
            Err(VerifyError::BadSignature(_))
        ));
        // Bob's own profile, served as alice's.
        let bobs = profile_of(&project, &bob, &bob.key);
        assert!(matches!(
            check_profile(reader, &directory, &mut chain, alice.id, &bobs),
            Err(VerifyError::ProfileOfAnotherAgent(_))
        ));
        let message = project.message(&alice, Sent::broadcast(), "hi");
        assert!(matches!(
            check_profile(reader, &directory, &mut chain, alice.id, &message),
            Err(VerifyError::NotAProfile { .. })
        ));
    }
}
