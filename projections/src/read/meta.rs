//! Queries behind `ns_meta`: agent profiles, presence and quota usage, each scoped to
//! one project.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId};
use nexysync_domain::quota::QuotaUsage;
use sqlx::Row;

use super::{corrupt, stored, ReadModels, StoredJson};
use crate::ProjectionError;

/// One agent's presence as projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub agent: AgentId,
    pub name: AgentName,
    pub online: bool,
    /// Unix ms.
    pub last_seen_ms: Option<i64>,
}

impl ReadModels {
    /// The latest profile event of `agent` of `project`, as stored.
    pub async fn profile_of(
        &self,
        project: ProjectId,
        agent: AgentId,
    ) -> Result<Option<StoredJson>, ProjectionError> {
        let row = sqlx::query(
            "SELECT seq, envelope::text AS envelope FROM agent_profiles
             WHERE project_id = $1 AND agent_id = $2",
        )
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(stored))
    }

    /// Every agent of `project` with its presence: online while connected to an instance
    /// heard from within `timeout`.
    pub async fn presence(
        &self,
        project: ProjectId,
        timeout: Duration,
    ) -> Result<Vec<PresenceRow>, ProjectionError> {
        let timeout_ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let rows = sqlx::query(
            "SELECT a.id, a.name,
                    EXISTS (SELECT 1 FROM presence_connections c
                            JOIN presence_instances i ON i.instance_id = c.instance_id
                            WHERE c.agent_id = a.id AND c.project_id = a.project_id
                              AND i.last_heartbeat >= now() - make_interval(secs => $2::float8 / 1000))
                        AS online,
                    (EXTRACT(EPOCH FROM s.last_seen) * 1000)::int8 AS last_seen_ms
             FROM agents a
             LEFT JOIN presence_last_seen s ON s.agent_id = a.id AND s.project_id = a.project_id
             WHERE a.project_id = $1 ORDER BY a.registered_seq",
        )
        .bind(project.as_uuid())
        .bind(timeout_ms)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PresenceRow {
                    agent: AgentId::from_uuid(row.get("id")),
                    name: AgentName::parse(row.get("name"))
                        .map_err(|e| corrupt("agent name", e))?,
                    online: row.get("online"),
                    last_seen_ms: row.get("last_seen_ms"),
                })
            })
            .collect()
    }

    /// What `project` has used: messages on the UTC day of `now`, and stored bytes (the
    /// sealed bytes of its messages and references, plus the ciphertext of its live files
    /// and of uploads declared and not yet expired).
    pub async fn quota_usage(
        &self,
        project: ProjectId,
        now: DateTime<Utc>,
    ) -> Result<QuotaUsage, ProjectionError> {
        let row = sqlx::query(
            "SELECT COALESCE((SELECT messages FROM quota_daily
                              WHERE project_id = $1 AND day = ($2 AT TIME ZONE 'UTC')::date), 0)
                        AS messages_today,
                    (COALESCE((SELECT stored_bytes FROM projects WHERE id = $1), 0)
                     + (SELECT COALESCE(SUM(ciphertext_size), 0) FROM files
                        WHERE project_id = $1 AND deleted_seq IS NULL)
                     + (SELECT COALESCE(SUM(ciphertext_size), 0) FROM pending_uploads
                        WHERE project_id = $1 AND expires_at > now()))::bigint AS stored_bytes",
        )
        .bind(project.as_uuid())
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(QuotaUsage {
            messages_today: row.try_get::<i64, _>("messages_today")?.max(0) as u64,
            stored_bytes: row.try_get::<i64, _>("stored_bytes")?.max(0) as u64,
        })
    }
}
