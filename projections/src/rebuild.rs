//! Rebuilding the read models from sequence 1 without downtime.
//!
//! The next version is built in [`NEXT_SCHEMA`] while the live schema keeps serving, with
//! its foreign keys and secondary indexes set aside until it has nearly caught up
//! ([`crate::bulk`]), by a loader that writes runs of messages side by side
//! ([`crate::bulk_load`]) while the log is read ahead of it ([`ReadAhead`]). Then
//! one transaction
//! 1. locks the live checkpoint (the live projector's next batch waits on it),
//! 2. applies the last few events to the new schema, so both stand at the same sequence,
//! 3. carries over the few rows the API writes itself, not derived from the log
//!    ([`NOT_IN_THE_LOG`]),
//! 4. deletes the live checkpoint row (the waiting batch then finds none and its projector
//!    starts again from the new schema's checkpoint: nothing applied twice or skipped),
//! 5. renames the live schema away and the new one to [`LIVE_SCHEMA`].
//!
//! Readers resolve names through `search_path`, so their next statement reads the new
//! schema: the switch is atomic for every instance at once, and never goes back in time.
//! The old schema is dropped afterwards.

use std::time::{Duration, Instant};

use nexysync_domain::ids::Seq;
use nexysync_log::{EventLog, ReadAhead};
use sqlx::{Connection, PgConnection};
use tracing::info;

use crate::bulk;
use crate::bulk_load::{BulkLoader, WRITERS};
use crate::db::{self, LIVE_SCHEMA, NEXT_SCHEMA, RETIRED_SCHEMA};
use crate::projector::{load_checkpoint, READ_MODELS};
use crate::{ProjectionError, Projector};

/// Held (as a session lock) for a whole rebuild, so two never run at once.
const REBUILD_LOCK: i64 = 0x6e65_7879_7262; // "nexyrb"
/// The switch happens once the new read models are this close to the live ones; the
/// rest is applied inside the switching transaction, while the live projector waits.
const SWITCH_WITHIN: u64 = 200;
/// How long the log may say nothing before a catch-up counts it as read to the end (the
/// last sequence can be an event that was erased).
const QUIET_LOG: Duration = Duration::from_secs(2);
/// Largest batch a rebuild reads at once: larger than the live projector's, since nobody
/// waits for any one event (the loader cuts runs to its own measure).
const REBUILD_BATCH: usize = 2 * crate::projector::MAX_BATCH;
/// Batches read ahead of the loader ([`ReadAhead`]).
const BATCHES_AHEAD: usize = 4;
/// Longest the switch waits for the log to deliver the last events.
const SWITCH_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How far a rebuild has come, for progress displays.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    /// Events applied so far.
    pub events: u64,
    /// The last sequence handed to the new read models (the loader may still be writing
    /// the last run or two).
    pub applied: Seq,
    /// The log's last sequence when the rebuild last looked.
    pub target: Seq,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    pub events: u64,
    /// The sequence both read models stood at when readers switched.
    pub switched_at: Seq,
    pub version: i64,
    pub elapsed: Duration,
}

/// Rebuilds the read models of the database at `url` from the whole of `log`, beside the
/// live ones, then switches readers over and drops the old ones. The API keeps serving the
/// live read models until the switch. Calls `progress` after every batch.
pub async fn rebuild(
    url: &str,
    log: &EventLog,
    mut progress: impl FnMut(&RebuildProgress),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    // The lock's connection, the loader's writers and one for everything else.
    let pool = db::connect(url, WRITERS as u32 + 2, NEXT_SCHEMA).await?;
    let mut lock = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut lock)
        .await?;
    if !locked {
        return Err(ProjectionError::RebuildRunning);
    }
    // An interrupted rebuild leaves its schema behind: start it afresh.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {NEXT_SCHEMA} CASCADE"))
        .execute(&pool)
        .await?;
    db::create_schema(&pool, NEXT_SCHEMA).await?;
    load_checkpoint(&pool, READ_MODELS).await?;
    let projector = Projector::unannounced(pool.clone(), log.clone());
    let mut events = ReadAhead::start(log.read_all(Seq(0)).await?, REBUILD_BATCH, BATCHES_AHEAD);
    let mut state = RebuildProgress {
        events: 0,
        applied: Seq(0),
        target: Seq(log.last_seq().await?),
    };
    progress(&state);
    let mut loader = BulkLoader::new(pool.clone(), READ_MODELS);
    let set_aside = bulk::set_aside(&pool, NEXT_SCHEMA).await?;
    catch_up_nearly(log, &mut loader, &mut events, &mut state, &mut progress).await?;
    let loaded = started.elapsed();
    info!(
        events = state.events,
        elapsed_s = loaded.as_secs_f64(),
        "log loaded; making indexes and foreign keys again"
    );
    set_aside.restore(&pool).await?;
    info!(
        elapsed_s = (started.elapsed() - loaded).as_secs_f64(),
        "indexes and foreign keys made again"
    );
    // Making the indexes took a while: what the log gained meanwhile, before switching.
    catch_up_nearly(log, &mut loader, &mut events, &mut state, &mut progress).await?;
    let switched_at = switch(&projector, &mut events, &mut state).await?;
    progress(&state);
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
        .execute(&pool)
        .await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REBUILD_LOCK)
        .execute(&mut lock)
        .await?;
    lock.close().await.ok();
    pool.close().await;
    let report = RebuildReport {
        events: state.events,
        switched_at,
        version: db::expected_version(),
        elapsed: started.elapsed(),
    };
    info!(
        events = report.events,
        seq = switched_at.0,
        version = report.version,
        "read models rebuilt and switched"
    );
    Ok(report)
}

/// Applies the log until the new read models are within [`SWITCH_WITHIN`] of its end
/// (or it has been quiet for [`QUIET_LOG`]), everything written when it returns.
async fn catch_up_nearly(
    log: &EventLog,
    loader: &mut BulkLoader,
    events: &mut ReadAhead,
    state: &mut RebuildProgress,
    progress: &mut impl FnMut(&RebuildProgress),
) -> Result<(), ProjectionError> {
    loop {
        state.target = Seq(log.last_seq().await?.max(state.target.0));
        if state.applied.0 + SWITCH_WITHIN >= state.target.0 {
            break;
        }
        let until = state.target;
        if !catch_up(loader, events, until, state, progress).await? {
            break;
        }
    }
    loader.settle().await
}

/// Applies batches to the new read models until they reach `until` (the last ones may
/// still be being written). Answers `false` when the log went quiet before that.
async fn catch_up(
    loader: &mut BulkLoader,
    events: &mut ReadAhead,
    until: Seq,
    state: &mut RebuildProgress,
    progress: &mut impl FnMut(&RebuildProgress),
) -> Result<bool, ProjectionError> {
    while state.applied < until {
        let Some(batch) = read_batch(events).await? else {
            return Ok(false);
        };
        loader.load(&batch).await?;
        record(state, &batch);
        progress(state);
    }
    Ok(true)
}

/// The next batch of a catch-up, `None` when the log has been quiet for [`QUIET_LOG`].
async fn read_batch(
    events: &mut ReadAhead,
) -> Result<Option<Vec<nexysync_log::RawEvent>>, ProjectionError> {
    match tokio::time::timeout(QUIET_LOG, events.next()).await {
        Err(_quiet) => Ok(None),
        Ok(None) => Err(ProjectionError::Database(
            "the log ended mid-rebuild".into(),
        )),
        Ok(Some(batch)) => Ok(Some(batch?)),
    }
}

fn record(state: &mut RebuildProgress, batch: &[nexysync_log::RawEvent]) {
    if let Some(last) = batch.last() {
        state.events += batch.len() as u64;
        state.applied = state.applied.max(last.seq);
        state.target = state.target.max(last.seq);
    }
}

/// The switch, in one transaction (see the module docs). Answers the sequence both read
/// models stood at.
async fn switch(
    projector: &Projector,
    events: &mut ReadAhead,
    state: &mut RebuildProgress,
) -> Result<Seq, ProjectionError> {
    let mut tx = projector.pool().begin().await?;
    let live_exists = live_exists(&mut tx).await?;
    let live = if live_exists {
        let seq: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT last_seq FROM {LIVE_SCHEMA}.projector_checkpoints WHERE projector = $1 FOR UPDATE"
        ))
        .bind(READ_MODELS)
        .fetch_optional(&mut *tx)
        .await?;
        Seq(seq.unwrap_or(0) as u64)
    } else {
        Seq(0)
    };
    while state.applied < live {
        let batch = tokio::time::timeout(SWITCH_READ_TIMEOUT, events.next())
            .await
            .map_err(|_| {
                ProjectionError::Database(format!(
                    "the log did not deliver up to seq {live} within {} s; nothing was switched",
                    SWITCH_READ_TIMEOUT.as_secs()
                ))
            })?
            .ok_or_else(|| ProjectionError::Database("the log ended mid-rebuild".into()))??;
        projector.apply_batch_in(&mut tx, &batch).await?;
        record(state, &batch);
    }
    if live_exists {
        carry_over_what_the_log_lacks(&mut tx).await?;
        sqlx::query(&format!(
            "DELETE FROM {LIVE_SCHEMA}.projector_checkpoints WHERE projector = $1"
        ))
        .bind(READ_MODELS)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "ALTER SCHEMA {LIVE_SCHEMA} RENAME TO {RETIRED_SCHEMA}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!(
        "ALTER SCHEMA {NEXT_SCHEMA} RENAME TO {LIVE_SCHEMA}"
    ))
    .execute(&mut *tx)
    .await?;
    // The catch-up's commits did not wait for the disk; this one does, and with it
    // everything written before it.
    sqlx::query("SET LOCAL synchronous_commit TO ON")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(state.applied)
}

/// Tables the API writes itself, not derived from the log: a rebuild carries their rows
/// over, or uploads in flight could no longer be committed and the blobs queued for the
/// sweeper (of expired uploads and deleted files) would stay on the CDN for ever.
const NOT_IN_THE_LOG: &[&str] = &["pending_uploads"];

/// How long the switch waits to lock a table of [`NOT_IN_THE_LOG`] against writes. The
/// API writes them one statement at a time, so only a transaction held open by hand (an
/// operator's `psql`) waits this long; the switch, which holds the live checkpoint and so
/// stops every live projector meanwhile, then fails and can be run again.
const CARRY_OVER_LOCK_TIMEOUT: &str = "5s";

/// PostgreSQL's error code for a lock not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Copies the rows of [`NOT_IN_THE_LOG`] from the live schema into the new one, inside the
/// switch. Each live table is locked against writes first: a writer waiting on it
/// resolves the name again once the switch commits, and so writes to the new schema.
/// Both schemas stand at the same sequence, so the rows agree with the new read models.
/// The columns copied are those both versions of the table have: a column a newer
/// migration added takes its default.
async fn carry_over_what_the_log_lacks(conn: &mut PgConnection) -> Result<(), ProjectionError> {
    for table in NOT_IN_THE_LOG {
        let Some(columns) = shared_columns(conn, table).await? else {
            continue;
        };
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = '{CARRY_OVER_LOCK_TIMEOUT}'"
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "LOCK TABLE {LIVE_SCHEMA}.{table} IN EXCLUSIVE MODE"
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| match e.as_database_error().and_then(|d| d.code()) {
            Some(code) if code == LOCK_NOT_AVAILABLE => ProjectionError::Database(format!(
                "could not lock {LIVE_SCHEMA}.{table} within {CARRY_OVER_LOCK_TIMEOUT} to carry \
                 its rows over: a transaction holds it; nothing was switched, run the rebuild \
                 again once it ends"
            )),
            _ => e.into(),
        })?;
        sqlx::query("SET LOCAL lock_timeout TO DEFAULT")
            .execute(&mut *conn)
            .await?;
        // No `ON CONFLICT`: nothing writes the new schema's table before this, so a
        // conflict is a bug, and fails the switch rather than losing a row.
        let carried = sqlx::query(&format!(
            "INSERT INTO {NEXT_SCHEMA}.{table} ({columns})
             SELECT {columns} FROM {LIVE_SCHEMA}.{table}"
        ))
        .execute(&mut *conn)
        .await?;
        info!(
            table,
            rows = carried.rows_affected(),
            "carried over to the new read models"
        );
    }
    Ok(())
}

/// The columns `table` has in both the live schema and the new one, quoted and joined
/// with commas, but those the new one computes itself (generated, or identities always
/// generated); `None` when either schema lacks the table (the live one is older than its
/// migration, or a newer version dropped it). A shared column whose type changed to one
/// the old values do not convert to fails the switch, naming the column.
async fn shared_columns(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT string_agg(quote_ident(n.column_name), ', ' ORDER BY n.ordinal_position)
         FROM information_schema.columns n
         JOIN information_schema.columns l
           ON l.table_schema = $2 AND l.table_name = n.table_name AND l.column_name = n.column_name
         WHERE n.table_schema = $1 AND n.table_name = $3
           AND n.is_generated = 'NEVER' AND n.identity_generation IS DISTINCT FROM 'ALWAYS'",
    )
    .bind(NEXT_SCHEMA)
    .bind(LIVE_SCHEMA)
    .bind(table)
    .fetch_one(&mut *conn)
    .await?)
}

async fn live_exists(conn: &mut PgConnection) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{LIVE_SCHEMA}.projector_checkpoints"))
        .fetch_one(conn)
        .await?)
}

/// One read model's state, for `nexysync projections status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadModelStatus {
    pub name: &'static str,
    /// The live schema's version (its latest migration), `None` when there is none.
    pub version: Option<i64>,
    /// The version this build expects.
    pub expected_version: i64,
    /// Whether the live version is the one this build serves.
    pub current: bool,
    pub checkpoint: u64,
    /// The log's last sequence.
    pub log_head: u64,
    pub lag: u64,
    /// The checkpoint of a rebuild in progress, if one is.
    pub rebuilding_at: Option<u64>,
}

/// The state of every read model of the database at `url` against `log`.
pub async fn status(url: &str, log: &EventLog) -> Result<Vec<ReadModelStatus>, ProjectionError> {
    let live_pool = db::connect(url, 1, LIVE_SCHEMA).await?;
    let version = db::version_of(&live_pool, LIVE_SCHEMA).await?;
    let checkpoint = match version {
        db::SchemaVersion::Missing => Seq(0),
        _ => load_checkpoint(&live_pool, READ_MODELS).await?,
    };
    let next_pool = db::connect(url, 1, NEXT_SCHEMA).await?;
    let rebuilding_at = match db::version_of(&next_pool, NEXT_SCHEMA).await? {
        db::SchemaVersion::Missing => None,
        _ => {
            let seq: Option<i64> = sqlx::query_scalar(
                "SELECT last_seq FROM projector_checkpoints WHERE projector = $1",
            )
            .bind(READ_MODELS)
            .fetch_optional(&next_pool)
            .await?;
            Some(seq.unwrap_or(0) as u64)
        }
    };
    let log_head = log.last_seq().await?;
    let (version, current) = match version {
        db::SchemaVersion::Missing => (None, false),
        db::SchemaVersion::Current { version } => (Some(version), true),
        db::SchemaVersion::Outdated { version, .. } | db::SchemaVersion::Newer { version, .. } => {
            (Some(version), false)
        }
    };
    live_pool.close().await;
    next_pool.close().await;
    Ok(vec![ReadModelStatus {
        name: READ_MODELS,
        version,
        expected_version: db::expected_version(),
        current,
        checkpoint: checkpoint.0,
        log_head,
        lag: log_head.saturating_sub(checkpoint.0),
        rebuilding_at,
    }])
}
