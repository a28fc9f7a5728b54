//! The presence projector: `<prefix>_presence` → the presence tables, with its own
//! checkpoint (`presence`, counting that stream's sequences), one transaction per batch.
//!
//! Online is not stored: it is a connection row whose instance's last heartbeat is
//! recent, decided when read ([`crate::ReadModels::presence`]), so an instance that
//! stops without saying so needs nobody to write its agents offline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use nexysync_domain::presence::PresenceEvent;
use nexysync_log::{PresenceLog, StoredPresence};
use sqlx::{PgConnection, PgPool};
use tracing::{info, instrument, warn};

use crate::projector::load_checkpoint;
use crate::{ProjectionError, MAX_BATCH};

/// The presence projector's checkpoint name.
pub const PRESENCE: &str = "presence";

/// Projects presence events into Postgres.
#[derive(Debug, Clone)]
pub struct PresenceProjector {
    pool: PgPool,
    log: PresenceLog,
}

impl PresenceProjector {
    pub fn new(pool: PgPool, log: PresenceLog) -> Self {
        Self { pool, log }
    }

    /// Runs for ever, restarting from the checkpoint after any error.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.run_from_checkpoint().await {
                Ok(()) => backoff = Duration::from_millis(100),
                // A rebuild switched the read models: the new schema starts presence from
                // what the presence stream still holds (heartbeats refill it).
                Err(ProjectionError::Retired) => {
                    tracing::info!("read models rebuilt; presence projected afresh");
                }
                Err(e) => {
                    warn!(error = %e, "presence projector stopped; restarting from its checkpoint");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run_from_checkpoint(&self) -> Result<(), ProjectionError> {
        let start = load_checkpoint(&self.pool, PRESENCE).await?;
        info!(
            from = start.0,
            "presence projector reading the presence stream"
        );
        let mut events = self.log.read(start.0).await?;
        while let Some(first) = events.next().await {
            let mut batch = Vec::new();
            let mut last = None;
            take(&mut batch, &mut last, first)?;
            while batch.len() < MAX_BATCH {
                match events.next().now_or_never() {
                    Some(Some(item)) => {
                        if let Err(e) = take(&mut batch, &mut last, item) {
                            warn!(error = %e, "presence read failed mid-batch");
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if let Some(last) = last {
                self.apply_batch(&batch, last).await?;
            }
        }
        Ok(())
    }

    #[instrument(skip_all, fields(projector = PRESENCE, len = batch.len(), last))]
    async fn apply_batch(
        &self,
        batch: &[StoredPresence],
        last: u64,
    ) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let checkpoint: Option<i64> = sqlx::query_scalar(
            "SELECT last_seq FROM projector_checkpoints WHERE projector = $1 FOR UPDATE",
        )
        .bind(PRESENCE)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(checkpoint) = checkpoint else {
            return Err(ProjectionError::Retired);
        };
        for stored in batch.iter().filter(|s| s.seq as i64 > checkpoint) {
            apply(&mut tx, &stored.event).await?;
        }
        sqlx::query(
            "UPDATE projector_checkpoints SET last_seq = $2, updated_at = now()
             WHERE projector = $1 AND last_seq < $2",
        )
        .bind(PRESENCE)
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Adds a read event to the batch; an undecodable one only moves the checkpoint past it.
fn take(
    batch: &mut Vec<StoredPresence>,
    last: &mut Option<u64>,
    item: Result<StoredPresence, nexysync_log::LogError>,
) -> Result<(), nexysync_log::LogError> {
    match item {
        Ok(stored) => {
            *last = Some(stored.seq);
            batch.push(stored);
            Ok(())
        }
        Err(nexysync_log::LogError::Corrupt { seq, reason }) => {
            warn!(seq, %reason, "undecodable presence event skipped");
            *last = Some(seq);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn time(at: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(at).unwrap_or_default()
}

async fn heard_from(
    conn: &mut PgConnection,
    instance: &uuid::Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO presence_instances (instance_id, last_heartbeat) VALUES ($1, $2)
         ON CONFLICT (instance_id) DO UPDATE
         SET last_heartbeat = GREATEST(presence_instances.last_heartbeat, EXCLUDED.last_heartbeat)",
    )
    .bind(instance)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the instance's connected agents as seen at `at`.
async fn seen(
    conn: &mut PgConnection,
    instance: &uuid::Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO presence_last_seen (agent_id, project_id, last_seen)
         SELECT agent_id, project_id, $2 FROM presence_connections WHERE instance_id = $1
         ON CONFLICT (agent_id) DO UPDATE
         SET last_seen = GREATEST(presence_last_seen.last_seen, EXCLUDED.last_seen)",
    )
    .bind(instance)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks one agent as seen at `at`. A stream opening or closing says nothing new of the
/// instance's other agents (its heartbeats do): marking them all would make a thousand
/// streams opening through one instance a million writes.
async fn agent_seen(
    conn: &mut PgConnection,
    key: &nexysync_domain::presence::PresenceKey,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO presence_last_seen (agent_id, project_id, last_seen) VALUES ($1, $2, $3)
         ON CONFLICT (agent_id) DO UPDATE
         SET last_seen = GREATEST(presence_last_seen.last_seen, EXCLUDED.last_seen)",
    )
    .bind(key.agent.as_uuid())
    .bind(key.project.as_uuid())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply(conn: &mut PgConnection, event: &PresenceEvent) -> Result<(), sqlx::Error> {
    let instance = *event.instance().as_uuid();
    let at = time(event.at());
    match event {
        PresenceEvent::Connected { key, .. } => {
            heard_from(conn, &instance, at).await?;
            sqlx::query(
                "INSERT INTO presence_connections (instance_id, project_id, agent_id, since)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(instance)
            .bind(key.project.as_uuid())
            .bind(key.agent.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            agent_seen(conn, key, at).await?;
        }
        PresenceEvent::Disconnected { key, .. } => {
            heard_from(conn, &instance, at).await?;
            agent_seen(conn, key, at).await?;
            sqlx::query(
                "DELETE FROM presence_connections WHERE instance_id = $1 AND agent_id = $2",
            )
            .bind(instance)
            .bind(key.agent.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
        PresenceEvent::Heartbeat { connected, .. } => {
            heard_from(conn, &instance, at).await?;
            let projects: Vec<uuid::Uuid> =
                connected.iter().map(|k| *k.project.as_uuid()).collect();
            let agents: Vec<uuid::Uuid> = connected.iter().map(|k| *k.agent.as_uuid()).collect();
            // The heartbeat is the instance's whole state: drop what it no longer lists,
            // add what it lists.
            sqlx::query(
                "DELETE FROM presence_connections WHERE instance_id = $1 AND NOT (agent_id = ANY($2))",
            )
            .bind(instance)
            .bind(&agents)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO presence_connections (instance_id, project_id, agent_id, since)
                 SELECT $1, p, a, $4 FROM UNNEST($2::uuid[], $3::uuid[]) AS c(p, a)
                 ON CONFLICT DO NOTHING",
            )
            .bind(instance)
            .bind(&projects)
            .bind(&agents)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            seen(conn, &instance, at).await?;
            // Instances that died without a word long ago: their rows no longer matter
            // (they count as gone after the timeout already), so they do not pile up.
            sqlx::query(
                "WITH gone AS (DELETE FROM presence_instances
                               WHERE last_heartbeat < $1 - interval '1 hour' RETURNING instance_id)
                 DELETE FROM presence_connections c USING gone WHERE c.instance_id = gone.instance_id",
            )
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        PresenceEvent::Stopped { .. } => {
            seen(conn, &instance, at).await?;
            sqlx::query("DELETE FROM presence_connections WHERE instance_id = $1")
                .bind(instance)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM presence_instances WHERE instance_id = $1")
                .bind(instance)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
