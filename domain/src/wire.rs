//! The HTTP API's JSON shapes, shared by the server (`api`) and the client (`mcp`) so the
//! two can never disagree. Events travel as [`Envelope`]s: ciphertext and signatures only.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crypto::{BlindIndex, PublicKey, Signature};
use crate::event::Envelope;
use crate::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};

/// Default and largest page size of list endpoints.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Answer to an accepted write: the event's id and its stream sequence, for
/// read-your-writes (`min_seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Appended {
    pub id: EventId,
    pub seq: Seq,
    /// True when this event id had already been appended (a retried request).
    pub duplicate: bool,
}

/// Answer to an accepted KV write (`kv_set` or `kv_deleted`). `revision` is the event's
/// sequence: the revision a following compare-and-set names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KvAppended {
    pub id: EventId,
    pub seq: Seq,
    pub revision: u64,
    pub duplicate: bool,
}

/// A live KV entry: the `kv_set` event that gave it its value, and its revision (that
/// event's sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KvEntry {
    pub key_ix: BlindIndex,
    pub revision: u64,
    /// When the entry disappears (Unix milliseconds), if it was set with a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    pub event: Envelope,
}

/// A page of live KV entries in `key_ix` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KvPage {
    pub entries: Vec<KvEntry>,
    /// Pass as `after` to get the next page (absent on the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<BlindIndex>,
    pub has_more: bool,
}

/// A page of code references (`ref_shared` events) the caller may read, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefPage {
    pub refs: Vec<StoredEvent>,
    /// Pass as `since_seq` to get the next page.
    pub next_since_seq: Seq,
    pub has_more: bool,
}

/// A page of live files (`file_shared` events) the caller may read, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FilePage {
    pub files: Vec<StoredEvent>,
    /// Pass as `since_seq` to get the next page.
    pub next_since_seq: Seq,
    pub has_more: bool,
}

/// Answer to a declared upload (`POST /v1/files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UploadTicket {
    pub file: EventId,
    /// `PUT` exactly `max_bytes` bytes of ciphertext here (with the declared SHA-256, when
    /// the declaration carried one).
    pub upload_url: String,
    pub expires_at_ms: i64,
    pub max_bytes: u64,
}

/// The CDN's answer to a stored upload: what it stored, as it measured it, and its
/// signature over that (`receipt`, under the secret it shares with the API only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredBlob {
    pub size: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    pub receipt: String,
}

/// Body of `POST /v1/files/{id}/commit`. Empty (`{}`) when the declaration carried its
/// digest. When it left the digest to the CDN: the CDN's [`StoredBlob`] and the
/// declared `file_shared` signed again with `digest` set to the stored SHA-256 (the
/// only change the API accepts).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct FileCommit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredBlob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
}

/// Answer to `GET /v1/files/{id}`: the file's event and a short-lived download URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDownload {
    pub file: StoredEvent,
    pub download_url: String,
    pub expires_at_ms: i64,
}

/// An event as read back: its position in the log and its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredEvent {
    pub seq: Seq,
    pub event: Envelope,
}

/// A message as read back (inbox, one message, thread): its position, its envelope, and
/// the state its reader sees. The state fields default when absent, so a
/// [`StoredEvent`] reader still parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageEntry {
    pub seq: Seq,
    /// The `message_sent` envelope. Once the message was deleted its `sealed` fields are
    /// gone, so its signature no longer verifies: `deletion` is what proves the deletion.
    pub event: Envelope,
    /// Live `reaction_added` events on it, oldest first (emoji sealed; who = the actor).
    #[serde(default)]
    pub reactions: Vec<StoredEvent>,
    #[serde(default)]
    pub pinned: bool,
    /// The reader marked it read (`message_read`).
    #[serde(default)]
    pub read_by_me: bool,
    #[serde(default)]
    pub deleted: bool,
    /// The sender's signed `message_deleted`, when `deleted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<StoredEvent>,
}

impl MessageEntry {
    /// The message as a plain stored event.
    pub fn stored(&self) -> StoredEvent {
        StoredEvent {
            seq: self.seq,
            event: self.event.clone(),
        }
    }
}

/// A page of an agent's inbox (direct messages to it and broadcasts), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageEntry>,
    /// Pass as `since_seq` to get the next page.
    pub next_since_seq: Seq,
    pub has_more: bool,
}

/// A thread: every message reachable through `reply_to` from the root that the caller
/// may read, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Thread {
    pub root: EventId,
    /// Deleted messages stay as nodes (`deleted`, no content), so the thread holds together.
    pub messages: Vec<MessageEntry>,
    /// Where messages of the thread were until they expired (retention): placeholders,
    /// no content, so the thread still shows how its replies connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<ExpiredNode>,
    /// More of the thread follows `messages` (a read answers at most 1,000): read on with
    /// `since_seq` = the last one's sequence.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_more: bool,
}

/// A message of a thread that expired: where it was, nothing it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExpiredNode {
    pub seq: Seq,
    pub id: EventId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<EventId>,
}

/// Who the token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    pub project: ProjectId,
    pub project_name: ProjectName,
    pub agent: AgentId,
    pub agent_name: AgentName,
    /// The caller's latest `agent_profile_updated` (role and description sealed), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StoredEvent>,
    /// The project's retention policy in force: how long messages live by default, and
    /// the longest `ttl_s` a message may ask for.
    #[serde(default)]
    pub retention: crate::event::RetentionPolicy,
}

/// One agent of the project, with the signed registration that vouches for its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentInfo {
    pub id: AgentId,
    pub name: AgentName,
    pub signing_key: PublicKey,
    pub registration: StoredEvent,
    /// The agent's latest `agent_profile_updated` (role and description sealed; clients
    /// verify its signature against `signing_key`), if it ever set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StoredEvent>,
    /// Whether the agent holds an SSE stream on a live API instance (see
    /// [`PresenceEntry`]).
    #[serde(default)]
    pub online: bool,
    /// When the agent was last seen connected (Unix ms), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<i64>,
}

/// One agent's presence: online while it holds at least one SSE stream on an API
/// instance whose heartbeat is recent (the bound is the server's `presence_timeout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceEntry {
    pub agent: AgentId,
    pub name: AgentName,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<i64>,
}

/// `GET /v1/presence`: every agent of the caller's project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceList {
    pub agents: Vec<PresenceEntry>,
    /// How long an instance that stops without saying so can keep an agent online (ms).
    pub bound_ms: u64,
}

/// `GET /v1/quota`: the project's limits, what it used, and when the daily count resets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaStatus {
    pub limits: crate::quota::QuotaLimits,
    pub usage: crate::quota::QuotaUsage,
    /// The next UTC midnight (Unix ms), when `messages_today` starts again from 0.
    pub messages_reset_at_ms: u64,
}

/// The project's agents. Clients verify each registration against the owner key they
/// hold, so the server cannot slip in a key of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    pub agents: Vec<AgentInfo>,
}

/// The one error shape of the API: `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Server-sent events of `GET /v1/stream`. The SSE `id:` is the stream sequence.
pub mod sse {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use crate::ids::Seq;

    /// A message for this agent; `data` is a [`super::StoredEvent`].
    pub const NEW_MESSAGE: &str = "new_message";
    /// Another agent set or deleted a KV key; `data` is a [`super::StoredEvent`] of kind
    /// `kv_set` or `kv_deleted`. Live only: a resumed stream does not replay these
    /// (read the store with `GET /v1/kv`).
    pub const KV_UPDATE: &str = "kv_update";
    /// A code reference for this agent (direct or broadcast) shared by another agent;
    /// `data` is a [`super::StoredEvent`] of kind `ref_shared`.
    pub const NEW_REF: &str = "new_ref";
    /// Someone reacted to, took back a reaction from, marked read, pinned, unpinned or
    /// deleted a message this agent may read; `data` is a [`super::StoredEvent`] of kind
    /// `reaction_added`, `reaction_removed`, `message_read`, `message_pinned`,
    /// `message_unpinned` or `message_deleted`, naming the message in `meta.message`.
    /// Not sent to the agent who acted. Live only: a resumed stream does not replay these
    /// (read the message again).
    pub const MESSAGE_UPDATE: &str = "message_update";
    /// An agent of the project came online or went offline; `data` is a
    /// [`PresenceChange`]. No `id:` (presence is not in the audited log) and live only.
    pub const PRESENCE_CHANGE: &str = "presence_change";
    /// A file for this agent (direct or broadcast) shared by another agent; `data` is a
    /// [`super::StoredEvent`] of kind `file_shared`.
    pub const NEW_FILE: &str = "new_file";
    /// The stream fell behind and closes; reconnect with `Last-Event-ID` to catch up.
    /// `data` is a [`CatchUp`].
    pub const CATCH_UP: &str = "catch_up";
    /// The resume cursor is older than what the server still holds; `data` is a
    /// [`CursorTooOld`]. The client should re-read its inbox from `oldest_seq`.
    pub const CURSOR_TOO_OLD: &str = "cursor_too_old";
    /// The stream is live: every event up to `seq` has been sent. `data` is a [`Ready`].
    pub const READY: &str = "ready";

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct PresenceChange {
        pub agent: crate::ids::AgentId,
        pub online: bool,
        /// When the change happened (Unix ms, the observing server's clock).
        pub at: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct CatchUp {
        pub last_seq: Seq,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct CursorTooOld {
        pub requested: Seq,
        pub oldest_seq: Seq,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct Ready {
        pub seq: Seq,
    }
}
