//! Queries of shared files, and the pending uploads the API keeps until a file is
//! committed. An agent reads a file it shared, one shared with it, or one shared with
//! everyone in its project; nothing else, and nothing of another project.

use chrono::{DateTime, Utc};
use nexysync_domain::decide::Lookup;
use nexysync_domain::ids::{AgentId, EventId, ProjectId, Seq};
use sqlx::Row;

use super::{already_applied, lookup, stored, ReadModels, StoredJson};
use crate::ProjectionError;

/// What the write path needs to know about a `file_shared`, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// The file's own sequence, when this event id was already applied (a retry).
    pub already_applied: Option<(ProjectId, Seq)>,
    pub recipient: Lookup,
}

/// A file an agent may read, deleted or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub stored: StoredJson,
    pub ciphertext_size: u64,
    /// The sequence of the `file_deleted` that removed it.
    pub deleted_seq: Option<Seq>,
}

/// An upload declared and not committed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub uploader: AgentId,
    /// The signed `file_shared` the commit appends, as declared.
    pub envelope: String,
    pub ciphertext_size: u64,
    pub expires_at: DateTime<Utc>,
}

const READABLE: &str = "(sender = $2 OR recipient = $2 OR recipient IS NULL)";

/// The envelope of a `pending_uploads` row that only queues a deleted file's blob for the
/// sweeper ([`ReadModels::sweep_blob_after`]): no upload, nothing to commit.
const SWEEP_ONLY: &str = "'{}'";

impl ReadModels {
    /// Whether file `id` was already applied, and whether `to` exists (and where).
    pub async fn file_facts(
        &self,
        project: ProjectId,
        id: EventId,
        to: Option<AgentId>,
    ) -> Result<FileFacts, ProjectionError> {
        let row = sqlx::query(
            "SELECT (SELECT project_id FROM files WHERE id = $1) AS own_project,
                    (SELECT seq FROM files WHERE id = $1) AS own_seq,
                    (SELECT project_id FROM agents WHERE id = $2) AS recipient_project",
        )
        .bind(id.as_uuid())
        .bind(to.map(|a| *a.as_uuid()))
        .fetch_one(self.pool())
        .await?;
        Ok(FileFacts {
            already_applied: already_applied(&row),
            recipient: match to {
                Some(_) => lookup(row.get("recipient_project"), project),
                None => Lookup::NotReferenced,
            },
        })
    }

    /// Live files `agent` of `project` may read after `since` (exclusive), oldest first.
    pub async fn files_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, envelope::text AS envelope FROM files
             WHERE project_id = $1 AND {READABLE} AND seq > $3 AND deleted_seq IS NULL
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

    /// File `id`, deleted or not, if `agent` of `project` may read it.
    pub async fn file_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        id: EventId,
    ) -> Result<Option<FileRow>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT seq, envelope::text AS envelope, ciphertext_size, deleted_seq FROM files
             WHERE project_id = $1 AND {READABLE} AND id = $3"
        ))
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| FileRow {
            ciphertext_size: row.get::<i64, _>("ciphertext_size") as u64,
            deleted_seq: row
                .get::<Option<i64>, _>("deleted_seq")
                .map(|s| Seq(s as u64)),
            stored: stored(row),
        }))
    }

    /// Ciphertext bytes `project` holds: live files, plus uploads declared and not
    /// expired (other than `except`), which will become files when committed.
    pub async fn file_bytes_in_use(
        &self,
        project: ProjectId,
        except: Option<EventId>,
    ) -> Result<u64, ProjectionError> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(SUM(ciphertext_size), 0) FROM files
                     WHERE project_id = $1 AND deleted_seq IS NULL)::bigint
                  + (SELECT COALESCE(SUM(ciphertext_size), 0) FROM pending_uploads
                     WHERE project_id = $1 AND expires_at > now()
                       AND ($2::uuid IS NULL OR id <> $2))::bigint",
        )
        .bind(project.as_uuid())
        .bind(except.map(|id| *id.as_uuid()))
        .fetch_one(self.pool())
        .await?;
        Ok(bytes.max(0) as u64)
    }

    /// Records a declared upload (a repeated declaration of the same file by the same
    /// agent extends it; `false` when the id is taken by anything else).
    pub async fn declare_upload(
        &self,
        project: ProjectId,
        uploader: AgentId,
        id: EventId,
        ciphertext_size: u64,
        envelope: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, ProjectionError> {
        let done = sqlx::query(
            "INSERT INTO pending_uploads (id, project_id, uploader, ciphertext_size, envelope, expires_at)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE NOT EXISTS (SELECT 1 FROM files WHERE id = $1)
             ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
             WHERE pending_uploads.project_id = EXCLUDED.project_id
               AND pending_uploads.uploader = EXCLUDED.uploader
               AND pending_uploads.envelope::text = EXCLUDED.envelope::text",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(uploader.as_uuid())
        .bind(ciphertext_size.min(i64::MAX as u64) as i64)
        .bind(envelope)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The pending upload `id` of `project`, expired or not (a blob queued for the
    /// sweeper by [`ReadModels::sweep_blob_after`] is no upload).
    pub async fn pending_upload(
        &self,
        project: ProjectId,
        id: EventId,
    ) -> Result<Option<PendingUpload>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT uploader, envelope::text AS envelope, ciphertext_size, expires_at
             FROM pending_uploads WHERE project_id = $1 AND id = $2
               AND envelope::text <> {SWEEP_ONLY}"
        ))
        .bind(project.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| PendingUpload {
            uploader: AgentId::from_uuid(row.get("uploader")),
            envelope: row.get("envelope"),
            ciphertext_size: row.get::<i64, _>("ciphertext_size") as u64,
            expires_at: row.get("expires_at"),
        }))
    }

    /// Up to `limit` uploads whose URL expired before `before`, never committed (or whose
    /// file was deleted since: see [`ReadModels::sweep_blob_after`]).
    pub async fn expired_uploads(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(ProjectId, EventId)>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT project_id, id FROM pending_uploads p
             WHERE expires_at < $1
               AND NOT EXISTS (SELECT 1 FROM files f WHERE f.id = p.id AND f.deleted_seq IS NULL)
             ORDER BY expires_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                let id = EventId::try_from(row.get::<uuid::Uuid, _>("id")).map_err(|e| {
                    ProjectionError::Database(format!("pending upload with a bad id: {e}"))
                })?;
                Ok((ProjectId::from_uuid(row.get("project_id")), id))
            })
            .collect()
    }

    /// Asks the sweeper to remove the blob of deleted file `id` once `after` has passed
    /// (when every upload URL of the file has expired): recorded as an upload expiring
    /// then, of no bytes. The sweeper takes it once the `file_deleted` is applied.
    pub async fn sweep_blob_after(
        &self,
        project: ProjectId,
        by: AgentId,
        id: EventId,
        after: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(&format!(
            "INSERT INTO pending_uploads (id, project_id, uploader, ciphertext_size, envelope, expires_at)
             VALUES ($1, $2, $3, 0, {SWEEP_ONLY}, $4)
             ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, ciphertext_size = 0,
                                            envelope = EXCLUDED.envelope"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(by.as_uuid())
        .bind(after)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forgets a pending upload (after its blob was removed).
    pub async fn forget_upload(
        &self,
        project: ProjectId,
        id: EventId,
    ) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM pending_uploads WHERE project_id = $1 AND id = $2")
            .bind(project.as_uuid())
            .bind(id.as_uuid())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
