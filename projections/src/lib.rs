//! NexySync's read models: the projector runtime that applies the log to PostgreSQL, the
//! read models' migrations, and the queries the API makes of them.
//!
//! # Layout
//! - [`db`]: connect, create the database if missing, migrate (`sqlx::migrate!`).
//! - [`Projector`]: JetStream → Postgres in batches, each with its checkpoint in one
//!   transaction; `apply` holds what each event kind does to the tables.
//! - [`ProjectionWatch`]: how far the read models are, and bounded waits for
//!   read-your-writes.
//! - [`ReadModels`]: scoped queries (inbox, message, thread, agents, tokens, KV entries,
//!   code references, files and pending uploads).
//!
//! # Invariants
//! - Each event takes effect exactly once, across crashes and restarts.
//! - Content stays sealed: rows hold the envelope as stored in the log.
//! - Schemas come only from migrations.

mod apply;
pub mod db;
mod error;
mod projector;
mod read;
mod watch;

pub use error::ProjectionError;
pub use projector::{Projector, CHECKPOINT_CHANNEL, MAX_BATCH, READ_MODELS};
pub use read::{
    AgentRecord, FileFacts, FileRow, KvCurrent, KvRow, MessageFacts, PendingUpload, ReadModels,
    RefFacts, StoredJson, TokenOwner,
};
pub use watch::ProjectionWatch;
