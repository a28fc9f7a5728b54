//! Applying the log to read models that nobody reads yet (a rebuild's), faster than the
//! live projector may: runs of messages are written side by side, each on a connection
//! and in a transaction of its own, while the next batch is decoded.
//!
//! What keeps the result the same as applying the log one batch at a time:
//! - Messages do not depend on one another: a message needs only its project and agents,
//!   which come from other events, and two runs holding the same id agree through the
//!   primary key (the later one waits for the earlier and skips it).
//! - Any other event waits until every run before it is written, and is applied before any
//!   run after it starts: it sees the read models as the log had them.
//! - The runs' counters (a project's messages, bytes and quota days) are added up here and
//!   written before any other event and at the end, not by each run: side-by-side runs
//!   would otherwise queue on the same project row. Only additions are deferred, and none
//!   is read before it is written.
//! - The checkpoint moves only when everything before it is written ([`BulkLoader::settle`]).
//!   A rebuild cut off in between starts again from scratch anyway, so no run's commit
//!   waits for the disk either: the switch's commit does, and with it every commit before.

use nexysync_domain::ids::Seq;
use nexysync_log::RawEvent;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tracing::warn;

use crate::apply::{apply, MessageCounts, MessageRun};
use crate::ProjectionError;

/// Runs of messages being written at once: with fewer, the database waits for the loader
/// to decode; with more, the writers mostly wait for one another (measured on two cores).
pub(crate) const WRITERS: usize = 3;

/// Applies batches of the log to read models nobody reads (see the module docs).
pub(crate) struct BulkLoader {
    pool: PgPool,
    projector: &'static str,
    writing: JoinSet<Result<MessageCounts, sqlx::Error>>,
    counts: MessageCounts,
    /// The last sequence handed to the loader, not yet in the checkpoint.
    loaded: Option<Seq>,
}

impl BulkLoader {
    /// A loader for the read models of `pool`, whose checkpoint is `projector`'s.
    pub(crate) fn new(pool: PgPool, projector: &'static str) -> Self {
        Self {
            pool,
            projector,
            writing: JoinSet::new(),
            counts: MessageCounts::default(),
            loaded: None,
        }
    }

    /// Starts applying `batch`, the events after the last batch loaded. Returns once its
    /// last run of messages is being written; [`BulkLoader::settle`] waits for it.
    pub(crate) async fn load(&mut self, batch: &[RawEvent]) -> Result<(), ProjectionError> {
        let mut run = MessageRun::default();
        let mut others = Vec::new();
        for raw in batch {
            let event = match raw.envelope() {
                Ok(event) => event,
                Err(e) => {
                    warn!(seq = raw.seq.0, error = %e, "undecodable event skipped");
                    continue;
                }
            };
            if run.push(raw.seq, &event, &raw.payload).is_none() {
                // A message: the other events before it go first (the run waits for them).
                if !others.is_empty() {
                    self.apply_in_order(std::mem::take(&mut others)).await?;
                }
                continue;
            }
            if run.len() > 0 {
                self.write(std::mem::take(&mut run)).await?;
            }
            others.push((raw, event));
        }
        if !others.is_empty() {
            self.apply_in_order(others).await?;
        }
        self.write(run).await?;
        if let Some(last) = batch.last() {
            self.loaded = Some(last.seq);
        }
        Ok(())
    }

    /// Waits for every run being written, then writes the counters and the checkpoint.
    pub(crate) async fn settle(&mut self) -> Result<(), ProjectionError> {
        self.finish_writing().await?;
        let mut tx = self.begin().await?;
        self.counts.write(&mut tx).await?;
        if let Some(loaded) = self.loaded.take() {
            sqlx::query(
                "UPDATE projector_checkpoints SET last_seq = $2, updated_at = now()
                 WHERE projector = $1 AND last_seq < $2",
            )
            .bind(self.projector)
            .bind(loaded.0 as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts writing `run` once fewer than [`WRITERS`] runs are.
    async fn write(&mut self, mut run: MessageRun) -> Result<(), ProjectionError> {
        if run.len() == 0 {
            return Ok(());
        }
        while self.writing.len() >= WRITERS {
            self.finish_one().await?;
        }
        let pool = self.pool.clone();
        self.writing.spawn(async move {
            let mut tx = pool.begin().await?;
            unhurried(&mut tx).await?;
            let counts = run.flush_uncounted(&mut tx).await?;
            tx.commit().await?;
            Ok(counts)
        });
        Ok(())
    }

    /// Applies events other than messages, in log order, after every run before them.
    async fn apply_in_order(
        &mut self,
        events: Vec<(&RawEvent, nexysync_domain::event::Envelope)>,
    ) -> Result<(), ProjectionError> {
        self.finish_writing().await?;
        let mut tx = self.begin().await?;
        // Anything else may read what the counters hold.
        self.counts.write(&mut tx).await?;
        for (raw, event) in &events {
            apply(&mut tx, raw.seq, event, &raw.payload).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_writing(&mut self) -> Result<(), ProjectionError> {
        while !self.writing.is_empty() {
            self.finish_one().await?;
        }
        Ok(())
    }

    async fn finish_one(&mut self) -> Result<(), ProjectionError> {
        if let Some(done) = self.writing.join_next().await {
            let counts = done.map_err(|e| {
                ProjectionError::Database(format!("a rebuild's writer stopped: {e}"))
            })??;
            self.counts.merge(counts);
        }
        Ok(())
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        unhurried(&mut tx).await?;
        Ok(tx)
    }
}

/// The transaction's commit does not wait for the disk (see the module docs).
async fn unhurried(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(tx)
        .await?;
    Ok(())
}
