//! Applying the log to read models that nobody reads yet (a rebuild's), faster than the
//! live projector may: runs of messages are written side by side, each on a connection
//! and in a transaction of its own, with `COPY` ([`crate::bulk_copy`]), while the next
//! batch is decoded.
//!
//! What keeps the result the same as applying the log one batch at a time:
//! - Messages do not depend on one another: a message needs only its project and agents,
//!   which come from other events. Only two with the same id do (the log deduplicates ids
//!   per project, so another project's message may reuse one; the first is kept): a run
//!   holding an id of a run still being written waits until that one has committed.
//! - Any other event waits until every run before it is written, and is applied before any
//!   run after it starts: it sees the read models as the log had them. So do short runs
//!   (under [`SIDE_BY_SIDE_RUN`]), which go in the same transaction as the events around
//!   them: a log where messages alternate with read marks loads as before, a batch a
//!   transaction.
//! - The runs' counters (a project's messages, bytes and quota days) are added up here and
//!   written before any other event and at the end, not by each run: side-by-side runs
//!   would otherwise queue on the same project row. Only additions are deferred, and none
//!   is read before it is written.
//! - The checkpoint moves only when everything before it is written ([`BulkLoader::settle`]).
//!   A rebuild cut off in between starts again from scratch anyway, so no run's commit
//!   waits for the disk either: the switch's commit does, and with it every commit before.

use std::sync::Arc;

use bytes::Bytes;
use nexysync_domain::event::Envelope;
use nexysync_domain::ids::Seq;
use nexysync_log::RawEvent;
use rustc_hash::FxHashSet;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tracing::{info, warn};
use uuid::Uuid;

use crate::apply::{apply, MessageCounts, MessageRun};
use crate::bulk_copy::{copy_run, load_rosters, Copied, Rosters};
use crate::db::begin_unhurried;
use crate::projector::save_checkpoint;
use crate::ProjectionError;

/// Runs of messages being written at once: with fewer, the database waits for the loader
/// to decode; with more, the writers mostly wait for one another (measured on two cores).
pub(crate) const WRITERS: usize = 3;

/// A run of at least this many messages is written side by side with others; a shorter
/// one is applied in order with the events around it.
const SIDE_BY_SIDE_RUN: usize = 256;

/// The most events applied in order at once.
const LONGEST_IN_ORDER: usize = 2_000;

/// The longest run written side by side. Each of a run's `COPY`s costs the database a
/// setup of its own, up to a thousand tuple slots whose creation slows as they add up
/// (PostgreSQL 15 files every slot's reference to the table's row type under one hash
/// key), which a longer run shares among more rows: measured in psql, 100,000 rows took
/// 160 ms in `COPY`s of 2,000 and 117-131 ms in `COPY`s of 10,000.
const LONGEST_RUN: usize = 10_000;

/// What [`BulkLoader::apply_in_order`] applies, in log order.
enum Step {
    /// A short run of messages, counted as it is applied.
    Run(Box<MessageRun>),
    /// Any other event: its sequence, stored form and decoded envelope.
    Other(Seq, Bytes, Box<Envelope>),
}

/// Applies batches of the log to read models nobody reads (see the module docs).
pub(crate) struct BulkLoader {
    pool: PgPool,
    projector: &'static str,
    /// The runs being written; each answers its counts and its message ids.
    writing: JoinSet<Result<(MessageCounts, Vec<Uuid>), sqlx::Error>>,
    /// The message ids of every run being written.
    ids_being_written: FxHashSet<Uuid>,
    counts: MessageCounts,
    /// The run of messages the last events make, not yet placed.
    run: MessageRun,
    /// What waits to be applied in order (see [`BulkLoader::place_run`]).
    in_order: Vec<Step>,
    /// How many events those steps hold.
    in_order_events: usize,
    /// The last sequence handed to the loader.
    loaded: Seq,
    /// The rosters of the projects of runs written since any other event was applied.
    rosters: Rosters,
}

impl BulkLoader {
    /// A loader for the read models of `pool`, whose checkpoint is `projector`'s.
    pub(crate) fn new(pool: PgPool, projector: &'static str) -> Self {
        Self {
            pool,
            projector,
            writing: JoinSet::new(),
            ids_being_written: FxHashSet::default(),
            counts: MessageCounts::default(),
            run: MessageRun::default(),
            in_order: Vec::new(),
            in_order_events: 0,
            loaded: Seq(0),
            rosters: Rosters::default(),
        }
    }

    /// Starts applying `batch`, the events after the last batch loaded. Returns once its
    /// runs of messages are being written, or wait to be (a run goes on into the next
    /// batch); [`BulkLoader::settle`] applies what is left and waits for it all.
    pub(crate) async fn load(&mut self, batch: &[RawEvent]) -> Result<(), ProjectionError> {
        for raw in batch {
            // The log sends each event once; should it repeat one, it is applied once, as
            // by the live projector (nothing set aside catches a repeat).
            if raw.seq <= self.loaded {
                continue;
            }
            self.loaded = raw.seq;
            let event = match raw.envelope() {
                Ok(event) => event,
                Err(e) => {
                    warn!(seq = raw.seq.0, error = %e, "undecodable event skipped");
                    continue;
                }
            };
            if self.run.push(raw.seq, &event, &raw.payload).is_none() {
                if self.run.len() >= LONGEST_RUN {
                    self.place_run().await?;
                }
                continue;
            }
            self.place_run().await?;
            self.in_order
                .push(Step::Other(raw.seq, raw.payload.clone(), Box::new(event)));
            self.in_order_events += 1;
            if self.in_order_events >= LONGEST_IN_ORDER {
                self.apply_in_order().await?;
            }
        }
        Ok(())
    }

    /// Writes the run so far side by side if it holds [`SIDE_BY_SIDE_RUN`] messages or
    /// more, once what waits to be applied in order before it is; a shorter one waits with
    /// those (a transaction of its own would cost more than it saves).
    async fn place_run(&mut self) -> Result<(), ProjectionError> {
        let run = std::mem::take(&mut self.run);
        if run.len() == 0 {
            return Ok(());
        }
        if run.len() < SIDE_BY_SIDE_RUN {
            self.in_order_events += run.len();
            self.in_order.push(Step::Run(Box::new(run)));
            if self.in_order_events >= LONGEST_IN_ORDER {
                self.apply_in_order().await?;
            }
            return Ok(());
        }
        self.apply_in_order().await?;
        self.write(run).await
    }

    /// Applies what waits, waits for every run being written, then writes the counters
    /// and the checkpoint.
    pub(crate) async fn settle(&mut self) -> Result<(), ProjectionError> {
        self.place_run().await?;
        self.apply_in_order().await?;
        self.finish_writing().await?;
        let mut tx = begin_unhurried(&self.pool).await?;
        self.counts.write(&mut tx).await?;
        save_checkpoint(&mut tx, self.projector, self.loaded).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts writing `run` once fewer than [`WRITERS`] runs are, and none that holds one
    /// of its ids.
    async fn write(&mut self, mut run: MessageRun) -> Result<(), ProjectionError> {
        if run
            .ids()
            .iter()
            .any(|id| self.ids_being_written.contains(id))
        {
            self.finish_writing().await?;
        }
        while self.writing.len() >= WRITERS {
            self.finish_one().await?;
        }
        let rosters = self.rosters_of(&run).await?;
        let ids = run.ids().to_vec();
        self.ids_being_written.extend(ids.iter().copied());
        let pool = self.pool.clone();
        self.writing.spawn(async move {
            let counts = write_run(&pool, &mut run, &rosters).await?;
            Ok((counts, ids))
        });
        Ok(())
    }

    /// The rosters of `run`'s projects, read once since any other event was applied (a
    /// run changes none).
    async fn rosters_of(&mut self, run: &MessageRun) -> Result<Rosters, sqlx::Error> {
        let mut projects = run.projects().to_vec();
        projects.sort_unstable();
        projects.dedup();
        let unread: Vec<Uuid> = projects
            .iter()
            .filter(|p| !self.rosters.contains_key(p))
            .copied()
            .collect();
        if !unread.is_empty() {
            self.rosters
                .extend(load_rosters(&self.pool, &unread).await?);
        }
        Ok(projects
            .iter()
            .filter_map(|p| Some((*p, Arc::clone(self.rosters.get(p)?))))
            .collect())
    }

    /// Applies what waits in [`BulkLoader::in_order`], in one transaction, after every
    /// run being written.
    async fn apply_in_order(&mut self) -> Result<(), ProjectionError> {
        if self.in_order.is_empty() {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.in_order);
        self.in_order_events = 0;
        self.finish_writing().await?;
        let mut tx = begin_unhurried(&self.pool).await?;
        // Anything else may read what the counters hold.
        self.counts.write(&mut tx).await?;
        for step in steps {
            match step {
                Step::Run(mut run) => run.flush(&mut tx).await?,
                Step::Other(seq, payload, event) => {
                    // It may change a project or its agents.
                    self.rosters.clear();
                    apply(&mut tx, seq, &event, &payload).await?
                }
            }
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
            let (counts, ids) = done.map_err(|e| {
                ProjectionError::Database(format!("a rebuild's writer stopped: {e}"))
            })??;
            self.counts.merge(counts);
            for id in ids {
                self.ids_being_written.remove(&id);
            }
        }
        Ok(())
    }
}

/// Writes `run` in a transaction of its own, answering its counts: with `COPY`, or, when
/// one of its ids is taken, with the live projector's statement, which skips that message
/// (or, for an erased reply's id, keeps the erased reply's thread edge).
async fn write_run(
    pool: &PgPool,
    run: &mut MessageRun,
    rosters: &Rosters,
) -> Result<MessageCounts, sqlx::Error> {
    let mut tx = begin_unhurried(pool).await?;
    let constraint = match copy_run(&mut tx, run, rosters).await? {
        Copied::Written(counts) => {
            tx.commit().await?;
            return Ok(counts);
        }
        Copied::IdTaken(constraint) => constraint,
    };
    tx.rollback().await?;
    info!(
        constraint = constraint.as_deref().unwrap_or("?"),
        "a run holds a message id already taken: written again with the live statement"
    );
    let mut tx = begin_unhurried(pool).await?;
    let counts = run.flush_uncounted(&mut tx).await?;
    tx.commit().await?;
    Ok(counts)
}
