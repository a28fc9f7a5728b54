//! Which project each agent belongs to, as far as this instance has seen. An agent's
//! project never changes, so a positive answer is cached for good and a send to a known
//! agent costs no query.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use nexysync_domain::decide::Lookup;
use nexysync_domain::ids::{AgentId, ProjectId};

/// Bounds memory: past this many agents, new ones are simply looked up each time.
const MAX_AGENTS: usize = 1_000_000;

#[derive(Debug, Clone, Default)]
pub struct AgentDirectory {
    projects: Arc<RwLock<HashMap<AgentId, ProjectId>>>,
}

impl AgentDirectory {
    /// Whether `agent` is in `project`, if this instance knows the agent.
    pub fn lookup(&self, project: ProjectId, agent: AgentId) -> Option<Lookup> {
        let projects = self.projects.read().unwrap_or_else(|e| e.into_inner());
        projects.get(&agent).map(|known| {
            if *known == project {
                Lookup::Found
            } else {
                Lookup::InAnotherProject
            }
        })
    }

    pub fn remember(&self, agent: AgentId, project: ProjectId) {
        let mut projects = self.projects.write().unwrap_or_else(|e| e.into_inner());
        if projects.len() < MAX_AGENTS {
            projects.insert(agent, project);
        }
    }
}
