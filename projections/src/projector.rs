//! The projector runtime: JetStream → PostgreSQL, exactly once.
//!
//! It reads the log from its checkpoint and applies events in batches, each batch and its
//! new checkpoint in one transaction: a crash anywhere loses nothing and applies nothing
//! twice. A batch takes whatever the log has ready (up to [`MAX_BATCH`]), so batches are
//! large while catching up and a single event when live.

use std::time::Duration;

use nexysync_domain::event::{Actor, EventBody};
use nexysync_domain::ids::Seq;
use nexysync_log::{EventLog, RawEvent, ReadAhead};
use sqlx::PgPool;
use tracing::{info, instrument, warn};

use crate::apply::{apply, MessageRun};
use crate::apply_state::advance_read_through;
use crate::db::begin_unhurried;
use crate::ProjectionError;

/// The projector that maintains the read models of this crate.
pub const READ_MODELS: &str = "read_models";
/// The channel on which a committed batch announces its checkpoint.
pub const CHECKPOINT_CHANNEL: &str = "nexysync_projection";
/// Largest batch applied in one transaction.
pub const MAX_BATCH: usize = 1000;
/// Batches read ahead of the one being applied.
const BATCHES_AHEAD: usize = 2;

/// Projects the log into the read models.
#[derive(Debug, Clone)]
pub struct Projector {
    name: &'static str,
    pool: PgPool,
    log: EventLog,
    /// Whether committed checkpoints are announced to readers: only the live read
    /// models' are (a rebuild's are not what readers read).
    announce: bool,
}

impl Projector {
    /// The projector of the live read models (`pool` resolves names in the live schema).
    pub fn new(pool: PgPool, log: EventLog) -> Self {
        Self {
            name: READ_MODELS,
            pool,
            log,
            announce: true,
        }
    }

    /// A projector filling read models that nobody reads yet (a rebuild's).
    pub(crate) fn unannounced(pool: PgPool, log: EventLog) -> Self {
        Self {
            announce: false,
            ..Self::new(pool, log)
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs for ever, restarting from the checkpoint after any error. Cancel it by
    /// dropping the future (an interrupted batch rolls back).
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.run_from_checkpoint().await {
                Ok(()) => backoff = Duration::from_millis(100),
                // A rebuild switched the read models under us: carry on from theirs.
                Err(ProjectionError::Retired) => {
                    info!(
                        projector = self.name,
                        "read models rebuilt; continuing from the new checkpoint"
                    );
                }
                Err(e) => {
                    warn!(error = %e, "projector stopped; restarting from its checkpoint");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The last sequence applied.
    pub async fn checkpoint(&self) -> Result<Seq, ProjectionError> {
        load_checkpoint(&self.pool, self.name).await
    }

    async fn run_from_checkpoint(&self) -> Result<(), ProjectionError> {
        let start = self.checkpoint().await?;
        info!(
            projector = self.name,
            from = start.0,
            "projector reading the log"
        );
        // Read ahead, so the log keeps coming while a batch is applied (a backlog is
        // caught up at the pace of the slower of the two, not of both in turn). A failed
        // read ends the run after the events before it are applied; the next starts
        // again from the checkpoint.
        let mut batches =
            ReadAhead::start(self.log.read_all(start).await?, MAX_BATCH, BATCHES_AHEAD);
        while let Some(batch) = batches.next().await {
            self.apply_batch(&batch?).await?;
        }
        Ok(())
    }

    /// Applies `batch` and moves the checkpoint, in one transaction. Events at or below
    /// the checkpoint (another projector got there first) are skipped.
    #[instrument(skip_all, fields(projector = self.name, first = batch.first().map(|e| e.seq.0), len = batch.len()))]
    pub(crate) async fn apply_batch(&self, batch: &[RawEvent]) -> Result<(), ProjectionError> {
        // The commit does not wait for the disk (ADR 0014): a crash that loses it loses its
        // checkpoint too, and the events are applied again from the log. What waits for it
        // is every read-your-writes read and every KV and message-state write.
        let mut tx = begin_unhurried(&self.pool).await?;
        self.apply_batch_in(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Projector::apply_batch`] inside a transaction of the caller's. Fails when the
    /// checkpoint row is gone: a rebuild has retired these read models, and the caller
    /// must start again from the checkpoint of the ones that replaced them.
    pub(crate) async fn apply_batch_in(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &[RawEvent],
    ) -> Result<(), ProjectionError> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let checkpoint: Option<i64> = sqlx::query_scalar(
            "SELECT last_seq FROM projector_checkpoints WHERE projector = $1 FOR UPDATE",
        )
        .bind(self.name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(checkpoint) = checkpoint else {
            return Err(ProjectionError::Retired);
        };
        // Messages are applied in runs; anything else first flushes the run before it,
        // so every event still sees the read models as the log had them (a broadcast
        // reaches the agents registered before it).
        let mut run = MessageRun::default();
        for raw in batch.iter().filter(|e| e.seq.0 as i64 > checkpoint) {
            match raw.envelope() {
                Ok(event) => {
                    if let Some(other) = run.push(raw.seq, &event, &raw.payload) {
                        run.flush(&mut *tx).await?;
                        apply(&mut *tx, raw.seq, other, &raw.payload).await?;
                        // Here rather than in `apply`, which a rebuild's loader also calls
                        // with the inbox's key set aside.
                        if let (EventBody::MessageRead(_), Actor::Agent(agent)) =
                            (&other.body, other.actor)
                        {
                            advance_read_through(&mut *tx, raw.seq.0 as i64, agent.as_uuid())
                                .await?;
                        }
                    }
                }
                Err(e) => warn!(seq = raw.seq.0, error = %e, "undecodable event skipped"),
            }
        }
        run.flush(&mut *tx).await?;
        save_checkpoint(&mut *tx, self.name, last.seq).await?;
        if self.announce {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHECKPOINT_CHANNEL)
                .bind(last.seq.0.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// Moves `projector`'s checkpoint forward to `seq` (never back).
pub(crate) async fn save_checkpoint(
    conn: &mut sqlx::PgConnection,
    projector: &str,
    seq: Seq,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projector_checkpoints SET last_seq = $2, updated_at = now()
         WHERE projector = $1 AND last_seq < $2",
    )
    .bind(projector)
    .bind(seq.0 as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads a projector's checkpoint, creating it at 0 the first time.
pub(crate) async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<Seq, ProjectionError> {
    sqlx::query("INSERT INTO projector_checkpoints (projector) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    let seq: i64 =
        sqlx::query_scalar("SELECT last_seq FROM projector_checkpoints WHERE projector = $1")
            .bind(name)
            .fetch_one(pool)
            .await?;
    Ok(Seq(seq as u64))
}
