//! Events: the envelope every event is stored in, the kinds of event, canonical bytes
//! for signatures, and the project hash chain.

pub mod canonical;
mod chain;
mod envelope;
mod erased;
mod kinds;
pub mod schema;

pub use chain::{ChainError, ChainVerifier};
pub use envelope::{Actor, ChainLink, Draft, Envelope, EventHash, ENVELOPE_VERSION};
pub use erased::{ErasedEvent, EventsErased};
pub use kinds::{
    emoji_index, fields, AgentProfileUpdated, AgentRegistered, EventBody, EventKind, FileDeleted,
    FileShared, KvDeleted, KvSet, MessageSent, MessageTarget, ProjectCreated, ProjectCreatedV1,
    Reaction, RefShared, RetentionPolicy, EMOJI_NAMESPACE, KV_NAMESPACE, MAX_FILE_BYTES,
    MAX_REF_LINES,
};
