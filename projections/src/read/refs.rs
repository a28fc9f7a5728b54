//! Queries of shared code references. An agent reads a reference it shared, one shared
//! with it, or one shared with everyone in its project; nothing else, and nothing of
//! another project.

use nexysync_domain::decide::Lookup;
use nexysync_domain::ids::{AgentId, EventId, ProjectId, Seq};
use sqlx::Row;

use super::{already_applied, lookup, stored, ReadModels, StoredJson};
use crate::ProjectionError;

/// What the write path needs to know about a `ref_shared`, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefFacts {
    /// The reference's own sequence, when this event id was already applied (a retry).
    pub already_applied: Option<(ProjectId, Seq)>,
    pub recipient: Lookup,
}

const READABLE: &str = "(sender = $2 OR recipient = $2 OR recipient IS NULL)";

impl ReadModels {
    /// Whether reference `id` was already applied, and whether `to` exists (and where).
    pub async fn ref_facts(
        &self,
        project: ProjectId,
        id: EventId,
        to: Option<AgentId>,
    ) -> Result<RefFacts, ProjectionError> {
        let row = sqlx::query(
            "SELECT (SELECT project_id FROM refs WHERE id = $1) AS own_project,
                    (SELECT seq FROM refs WHERE id = $1) AS own_seq,
                    (SELECT project_id FROM agents WHERE id = $2) AS recipient_project",
        )
        .bind(id.as_uuid())
        .bind(to.map(|a| *a.as_uuid()))
        .fetch_one(self.pool())
        .await?;
        Ok(RefFacts {
            already_applied: already_applied(&row),
            recipient: match to {
                Some(_) => lookup(row.get("recipient_project"), project),
                None => Lookup::NotReferenced,
            },
        })
    }

    /// References `agent` of `project` may read after `since` (exclusive), oldest first,
    /// at most `limit`.
    pub async fn refs_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, envelope::text AS envelope FROM refs
             WHERE project_id = $1 AND {READABLE} AND seq > $3
             ORDER BY seq LIMIT $4"
        ))
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .bind(since.0.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Reference `id`, if `agent` of `project` may read it.
    pub async fn ref_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        id: EventId,
    ) -> Result<Option<StoredJson>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT seq, envelope::text AS envelope FROM refs
             WHERE project_id = $1 AND {READABLE} AND id = $3"
        ))
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(stored))
    }
}
