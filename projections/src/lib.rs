//! NexySync's read models: the projector runtime that applies the log to PostgreSQL, the
//! read models' migrations, and the queries the API makes of them.
//!
//! # Layout
//! - [`db`]: connect, create the database if missing, migrate (`sqlx::migrate!`).
//! - [`Projector`]: JetStream → Postgres in batches, each with its checkpoint in one
//!   transaction; `apply` holds what each event kind does to the tables.
//! - [`rebuild()`]: a new version of the read models built from sequence 1 beside the
//!   live one, then switched to atomically; [`status`] for operators.
//! - [`Pruner`]: retention: erases expired messages from the log behind a tombstone
//!   (ADR 0012); `apply_erased` removes them from the read models.
//! - [`PresenceProjector`]: the presence stream → the presence tables, own checkpoint.
//! - [`ProjectionWatch`]: how far the read models are, and bounded waits for
//!   read-your-writes.
//! - [`ReadModels`]: scoped queries (inbox, message, thread, agents, tokens, KV entries,
//!   code references, message state: reactions, read marks, pins, deletions; profiles,
//!   presence, quota usage; files and pending uploads).
//!
//! # Invariants
//! - Each event takes effect exactly once, across crashes and restarts.
//! - Content stays sealed: rows hold the envelope as stored in the log, except that a
//!   deleted message's envelope loses its sealed fields (and its reactions go).
//! - Schemas come only from migrations, and read models of another version are never
//!   migrated in place: they are rebuilt beside the live ones (see `db`).

#[macro_use]
mod inbox_sql;
mod apply;
mod apply_erased;
mod apply_state;
mod bulk;
mod bulk_copy;
mod bulk_load;
mod copy_binary;
pub mod db;
mod error;
mod presence;
mod projector;
mod pruner;
mod read;
mod rebuild;
mod watch;

pub use error::ProjectionError;
pub use presence::{PresenceProjector, PRESENCE};
pub use projector::{Projector, CHECKPOINT_CHANNEL, MAX_BATCH, READ_MODELS};
pub use pruner::{PruneReport, Pruner, PrunerSettings};
pub use read::{
    AgentRecord, Audience, FileFacts, FileRow, KvCurrent, KvRow, MessageFacts, MessageState,
    PendingUpload, PresenceRow, ReadModels, RefFacts, StateFacts, StoredJson, TokenOwner,
};
pub use rebuild::{rebuild, status, ReadModelStatus, RebuildProgress, RebuildReport};
pub use watch::ProjectionWatch;
