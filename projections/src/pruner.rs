//! The pruner: retention that actually deletes (ADR 0012).
//!
//! Each run, under a Postgres advisory lock (one active pruner however many API
//! instances run it), with the read models caught up to the log:
//! 1. finishes erasures a previous run left undone (`pending_erasures`);
//! 2. per project, takes the messages expired for longer than the grace period, and every
//!    event about them (reactions, read marks, pins, deletion: `message_updates`), reads
//!    each from the log and strips its ciphertext ([`ErasedEvent::strip`]);
//! 3. appends `events_erased` tombstones listing them in log order, each under
//!    [`MAX_TOMBSTONE_BYTES`], **then** erases the events from the stream (overwriting
//!    their bytes). The projector applying a tombstone removes the events' rows from the
//!    read models and leaves a placeholder in the thread.
//!
//! A crash after a tombstone and before its erasure is finished by step 1 on the next
//! run; erasing twice is harmless. The grace period keeps a reaction decided just before
//! the message expired, and appended just after, from being left behind in the log.

use std::time::Duration;

use nexysync_domain::event::{Envelope, ErasedEvent, EventsErased};
use nexysync_domain::ids::{EventId, ProjectId, Seq};
use nexysync_log::{EventLog, MAX_TOMBSTONE_BYTES};
use sqlx::{PgPool, Row};
use tracing::{info, instrument, warn};

use crate::{ProjectionError, ProjectionWatch};

/// The advisory lock key of the pruner ("nxprune" as a number).
const PRUNER_LOCK: i64 = 0x6e_78_70_72_75_6e_65;
/// Most expired messages a run takes per project; the next run takes the rest.
const MESSAGES_PER_RUN: i64 = 1000;
/// Room for the tombstone's own envelope around its entries.
const ENVELOPE_ROOM: usize = 4096;

/// How the pruner runs.
#[derive(Debug, Clone, Copy)]
pub struct PrunerSettings {
    /// Time between runs.
    pub interval: Duration,
    /// How long after its expiry a message is erased (it is hidden from its expiry on).
    pub grace: Duration,
    /// Longest wait for the read models to catch up with the log before a run.
    pub catch_up: Duration,
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub tombstones: usize,
    pub erased: usize,
}

/// Erases expired messages from the log and, through their tombstones, the read models.
#[derive(Debug, Clone)]
pub struct Pruner {
    log: EventLog,
    pool: PgPool,
    watch: ProjectionWatch,
    settings: PrunerSettings,
}

impl Pruner {
    pub fn new(
        log: EventLog,
        pool: PgPool,
        watch: ProjectionWatch,
        settings: PrunerSettings,
    ) -> Self {
        Self {
            log,
            pool,
            watch,
            settings,
        }
    }

    /// Runs every interval until `stopped` says so.
    pub async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            match self.run_once().await {
                Ok(report) if report.erased > 0 => {
                    info!(
                        erased = report.erased,
                        tombstones = report.tombstones,
                        "pruned expired messages"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruner run failed; retrying at the next interval"),
            }
        }
    }

    /// One run, if no other pruner holds the lock.
    #[instrument(skip_all)]
    pub async fn run_once(&self) -> Result<PruneReport, ProjectionError> {
        let mut lock = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRUNER_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            return Ok(PruneReport::default());
        }
        let result = self.run_locked().await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PRUNER_LOCK)
            .execute(&mut *lock)
            .await?;
        result
    }

    async fn run_locked(&self) -> Result<PruneReport, ProjectionError> {
        // Decided on read models that have applied the whole log: an earlier tombstone
        // not applied yet would have its messages tombstoned twice.
        let head = Seq(self.log.last_seq().await?);
        self.watch.wait_for(head, self.settings.catch_up).await?;
        self.finish_pending().await?;
        let mut report = PruneReport::default();
        for project in self.projects_with_expired().await? {
            let done = self.prune_project(project).await?;
            report.tombstones += done.tombstones;
            report.erased += done.erased;
        }
        Ok(report)
    }

    /// Erases what projected tombstones list and the log may still hold.
    async fn finish_pending(&self) -> Result<(), ProjectionError> {
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM pending_erasures ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        for seq in seqs {
            self.log.erase(Seq(seq as u64)).await?;
            sqlx::query("DELETE FROM pending_erasures WHERE seq = $1")
                .bind(seq)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn projects_with_expired(&self) -> Result<Vec<ProjectId>, ProjectionError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            // One probe of `messages_expiring_by_project` per project: projects are
            // few next to messages.
            "SELECT p.id FROM projects p
             WHERE EXISTS (SELECT 1 FROM messages m
                           WHERE m.project_id = p.id
                             AND m.expires_at <= now() - make_interval(secs => $1))",
        )
        .bind(self.settings.grace.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(ProjectId::from_uuid).collect())
    }

    /// The expired messages of `project` and every event about them, in log order.
    async fn doomed(&self, project: ProjectId) -> Result<Vec<(Seq, EventId)>, ProjectionError> {
        let rows = sqlx::query(
            "WITH expired AS (
                 -- Soonest expired first, through `messages_expiring_by_project`: in seq
                 -- order the scan would walk every older message that never expires.
                 SELECT id, seq FROM messages
                 WHERE project_id = $1 AND expires_at <= now() - make_interval(secs => $2)
                 ORDER BY expires_at, seq LIMIT $3
             )
             SELECT seq, id FROM expired
             UNION ALL
             SELECT u.seq, u.id FROM message_updates u JOIN expired e ON u.message_id = e.id
             ORDER BY seq",
        )
        .bind(project.as_uuid())
        .bind(self.settings.grace.as_secs_f64())
        .bind(MESSAGES_PER_RUN)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let id = EventId::try_from(row.get::<uuid::Uuid, _>("id"))
                    .map_err(|e| ProjectionError::Database(format!("bad event id: {e}")))?;
                Ok((Seq(row.get::<i64, _>("seq") as u64), id))
            })
            .collect()
    }

    async fn prune_project(&self, project: ProjectId) -> Result<PruneReport, ProjectionError> {
        let mut entries = Vec::new();
        for (seq, id) in self.doomed(project).await? {
            let Some(stored) = self.log.stored_event(project, seq).await? else {
                // Already gone from the log: nothing left to prove or erase.
                continue;
            };
            let event: Envelope = serde_json::from_slice(&stored)
                .map_err(|e| ProjectionError::Database(format!("seq {}: {e}", seq.0)))?;
            if event.id != id {
                warn!(
                    seq = seq.0,
                    "the log holds another event than the read models say; not erased"
                );
                continue;
            }
            entries.push(ErasedEvent::strip(seq, &event));
        }
        let mut report = PruneReport::default();
        for batch in batches(entries) {
            let seqs: Vec<Seq> = batch.iter().map(|entry| entry.seq).collect();
            let tombstone = Envelope::tombstone(
                EventId::generate(),
                project,
                chrono::Utc::now().timestamp_millis(),
                EventsErased { erased: batch },
            );
            // The tombstone first: once it is in the log, erasing is safe to redo.
            self.log.append(tombstone).await?;
            report.tombstones += 1;
            for seq in seqs {
                self.log.erase(seq).await?;
                report.erased += 1;
            }
        }
        Ok(report)
    }
}

/// `entries` cut into tombstones that each stay under the log's message limit.
fn batches(entries: Vec<ErasedEvent>) -> Vec<Vec<ErasedEvent>> {
    let limit = MAX_TOMBSTONE_BYTES - ENVELOPE_ROOM;
    let mut out: Vec<Vec<ErasedEvent>> = Vec::new();
    let mut size = 0;
    for entry in entries {
        let len = entry.stored_len() + 1;
        match out.last_mut() {
            Some(batch) if size + len <= limit => batch.push(entry),
            _ => {
                out.push(vec![entry]);
                size = 0;
            }
        }
        size += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::event::{Actor, Draft, EventBody, MessageSent};
    use nexysync_domain::ids::AgentId;

    use super::*;

    fn entry(seq: u64) -> ErasedEvent {
        let body = EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: None,
            ttl_s: Some(1),
            topic_ix: None,
        });
        let event = Draft::new(
            ProjectId::generate(),
            Actor::Agent(AgentId::generate()),
            body,
        )
        .sign(&SigningKey::generate());
        ErasedEvent::strip(Seq(seq), &event)
    }

    #[test]
    fn tombstones_stay_under_the_log_limit_and_keep_log_order() {
        let per_entry = entry(1).stored_len() + 1;
        let count = 3 * (MAX_TOMBSTONE_BYTES - ENVELOPE_ROOM) / per_entry;
        let entries: Vec<ErasedEvent> = (1..=count as u64).map(entry).collect();
        let cut = batches(entries);
        assert!(cut.len() >= 3, "{} batches", cut.len());
        for batch in &cut {
            let bytes: usize = batch.iter().map(|e| e.stored_len() + 1).sum();
            assert!(bytes <= MAX_TOMBSTONE_BYTES - ENVELOPE_ROOM);
        }
        let seqs: Vec<u64> = cut.iter().flatten().map(|e| e.seq.0).collect();
        assert_eq!(seqs, (1..=count as u64).collect::<Vec<_>>());
    }
}
