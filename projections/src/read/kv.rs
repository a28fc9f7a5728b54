//! Queries of the shared key-value store. Only live entries are visible: an entry whose
//! `expires_at` has passed counts as absent, for reads and for compare-and-set alike.

use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::ids::{EventId, ProjectId};
use sqlx::Row;

use super::{corrupt, ReadModels};
use crate::ProjectionError;

/// A live KV entry as stored: the `kv_set` envelope's JSON text, never parsed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRow {
    pub key_ix: BlindIndex,
    /// The sequence of the `kv_set` that gave the current value.
    pub revision: u64,
    pub expires_at_ms: Option<i64>,
    pub envelope: String,
}

/// What a KV write needs to decide: the key's live revision and the event that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCurrent {
    pub revision: u64,
    pub event: EventId,
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

impl ReadModels {
    /// The live revision of `key_ix` in `project`, if the key exists and has not expired.
    pub async fn kv_current(
        &self,
        project: ProjectId,
        key_ix: &BlindIndex,
    ) -> Result<Option<KvCurrent>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT revision, event_id FROM kv_entries
             WHERE project_id = $1 AND key_ix = $2 AND {LIVE}"
        ))
        .bind(project.as_uuid())
        .bind(key_ix.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(KvCurrent {
                revision: row.get::<i64, _>("revision") as u64,
                event: EventId::try_from(row.get::<uuid::Uuid, _>("event_id"))
                    .map_err(|e| corrupt("kv event id", e))?,
            })
        })
        .transpose()
    }

    /// The live entry `key_ix` of `project`.
    pub async fn kv_entry(
        &self,
        project: ProjectId,
        key_ix: &BlindIndex,
    ) -> Result<Option<KvRow>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT key_ix, revision, expires_at, value_envelope::text AS envelope
             FROM kv_entries WHERE project_id = $1 AND key_ix = $2 AND {LIVE}"
        ))
        .bind(project.as_uuid())
        .bind(key_ix.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(kv_row).transpose()
    }

    /// Up to `limit` live entries of `project` after `after`, in `key_ix` order.
    pub async fn kv_list(
        &self,
        project: ProjectId,
        after: Option<&BlindIndex>,
        limit: u32,
    ) -> Result<Vec<KvRow>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT key_ix, revision, expires_at, value_envelope::text AS envelope
             FROM kv_entries
             WHERE project_id = $1 AND key_ix > $2 AND {LIVE}
             ORDER BY key_ix LIMIT $3"
        ))
        .bind(project.as_uuid())
        .bind(after.map(BlindIndex::as_str).unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(kv_row).collect()
    }
}

fn kv_row(row: sqlx::postgres::PgRow) -> Result<KvRow, ProjectionError> {
    let expires_at: Option<chrono::DateTime<chrono::Utc>> = row.get("expires_at");
    Ok(KvRow {
        key_ix: BlindIndex::try_from(row.get::<String, _>("key_ix"))
            .map_err(|e| corrupt("kv key index", e))?,
        revision: row.get::<i64, _>("revision") as u64,
        expires_at_ms: expires_at.map(|t| t.timestamp_millis()),
        envelope: row.get("envelope"),
    })
}
