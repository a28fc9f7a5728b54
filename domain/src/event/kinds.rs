//! The event kinds: past-tense facts with their clear metadata. Content lives in the
//! envelope's sealed fields, never here.
//!
//! Each kind has a version ([`EventKind::current_version`], stored in the envelope as
//! `kind_v`, absent meaning 1). An older version keeps its own frozen type here
//! ([`ProjectCreatedV1`]) and is upcast to the current one on read ([`EventBody::from_stored`]);
//! the log is never rewritten (ADR 0012).

use schemars::JsonSchema;
use serde::de::value::StrDeserializer;
use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::erased::EventsErased;
use crate::crypto::{BlindIndex, ContentKeys, PublicKey, TokenHash};
use crate::ids::{AgentId, AgentName, EventId, ProjectName};

/// What happened, with the clear metadata the server needs to route it.
/// Serialised as `"kind": "...", "meta": {...}` inside the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "meta", rename_all = "snake_case")]
pub enum EventBody {
    ProjectCreated(ProjectCreated),
    AgentRegistered(AgentRegistered),
    MessageSent(MessageSent),
    KvSet(KvSet),
    KvDeleted(KvDeleted),
    RefShared(RefShared),
    ReactionAdded(Reaction),
    ReactionRemoved(Reaction),
    MessageRead(MessageTarget),
    MessagePinned(MessageTarget),
    MessageUnpinned(MessageTarget),
    MessageDeleted(MessageTarget),
    AgentProfileUpdated(AgentProfileUpdated),
    FileShared(FileShared),
    FileDeleted(FileDeleted),
    RetentionSet(RetentionPolicy),
    EventsErased(EventsErased),
}

/// The bodies of kinds at an older version than [`EventKind::current_version`], in the
/// shape they were stored in: what an old envelope's signature and hash cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "meta", rename_all = "snake_case")]
pub(super) enum LegacyBody {
    ProjectCreated(ProjectCreatedV1),
}

impl EventBody {
    /// Reads a stored body: `kind` at version `kind_v` with its `meta`, upcast to the
    /// current type when the version is an older one. `meta` is decoded straight into the
    /// kind's type, with no JSON tree in between.
    pub fn from_stored(kind: &str, kind_v: u16, meta: Option<&RawValue>) -> Result<Self, String> {
        let parsed =
            EventKind::from_wire(kind).ok_or_else(|| format!("unknown event kind `{kind}`"))?;
        let meta = meta.ok_or_else(|| "missing field `meta`".to_owned())?.get();
        if kind_v == parsed.current_version() {
            return Self::current_from_meta(parsed, meta).map_err(without_position);
        }
        match (parsed, kind_v) {
            (EventKind::ProjectCreated, 1) => {
                let v1: ProjectCreatedV1 = serde_json::from_str(meta).map_err(without_position)?;
                Ok(LegacyBody::ProjectCreated(v1).upcast())
            }
            _ => Err(format!("event kind `{kind}` has no version {kind_v}")),
        }
    }

    /// The body of a `kind` at its current version from its `meta`.
    fn current_from_meta(kind: EventKind, meta: &str) -> serde_json::Result<Self> {
        macro_rules! each_kind {
            ($($variant:ident),+ $(,)?) => {
                match kind {
                    $(EventKind::$variant => Self::$variant(serde_json::from_str(meta)?),)+
                }
            };
        }
        Ok(each_kind!(
            ProjectCreated,
            AgentRegistered,
            MessageSent,
            KvSet,
            KvDeleted,
            RefShared,
            ReactionAdded,
            ReactionRemoved,
            MessageRead,
            MessagePinned,
            MessageUnpinned,
            MessageDeleted,
            AgentProfileUpdated,
            FileShared,
            FileDeleted,
            RetentionSet,
            EventsErased,
        ))
    }

    /// This body as stored at `kind_v`: `None` when that is the current version (the
    /// body is its own stored form), the frozen older shape otherwise. An older shape
    /// drops what its version cannot carry; for a body read from such an event that is
    /// only the defaults the upcast filled in.
    pub(super) fn downcast(&self, kind_v: u16) -> Option<LegacyBody> {
        match (self, kind_v) {
            (Self::ProjectCreated(created), 1) => {
                Some(LegacyBody::ProjectCreated(ProjectCreatedV1 {
                    name: created.name.clone(),
                    owner_key: created.owner_key,
                }))
            }
            _ => None,
        }
    }

    /// The wire name of the kind (`"message_sent"`…).
    pub fn kind(&self) -> EventKind {
        match self {
            Self::ProjectCreated(_) => EventKind::ProjectCreated,
            Self::AgentRegistered(_) => EventKind::AgentRegistered,
            Self::MessageSent(_) => EventKind::MessageSent,
            Self::KvSet(_) => EventKind::KvSet,
            Self::KvDeleted(_) => EventKind::KvDeleted,
            Self::RefShared(_) => EventKind::RefShared,
            Self::FileShared(_) => EventKind::FileShared,
            Self::FileDeleted(_) => EventKind::FileDeleted,
            Self::AgentProfileUpdated(_) => EventKind::AgentProfileUpdated,
            Self::ReactionAdded(_) => EventKind::ReactionAdded,
            Self::ReactionRemoved(_) => EventKind::ReactionRemoved,
            Self::MessageRead(_) => EventKind::MessageRead,
            Self::MessagePinned(_) => EventKind::MessagePinned,
            Self::MessageUnpinned(_) => EventKind::MessageUnpinned,
            Self::MessageDeleted(_) => EventKind::MessageDeleted,
            Self::RetentionSet(_) => EventKind::RetentionSet,
            Self::EventsErased(_) => EventKind::EventsErased,
        }
    }

    /// The message a message-state event (reaction, read, pin, delete) is about.
    pub fn target_message(&self) -> Option<EventId> {
        match self {
            Self::ReactionAdded(r) | Self::ReactionRemoved(r) => Some(r.message),
            Self::MessageRead(t)
            | Self::MessagePinned(t)
            | Self::MessageUnpinned(t)
            | Self::MessageDeleted(t) => Some(t.message),
            _ => None,
        }
    }
}

/// A decoding error of a body without its position, which is within `meta` only: the
/// envelope's decoder adds where in the whole event it stands.
fn without_position(e: serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The kinds of event, for filters and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ProjectCreated,
    AgentRegistered,
    MessageSent,
    KvSet,
    KvDeleted,
    RefShared,
    ReactionAdded,
    ReactionRemoved,
    MessageRead,
    MessagePinned,
    MessageUnpinned,
    MessageDeleted,
    AgentProfileUpdated,
    FileShared,
    FileDeleted,
    RetentionSet,
    EventsErased,
}

impl EventKind {
    /// The kind named `name` on the wire (`"message_sent"`…).
    pub fn from_wire(name: &str) -> Option<Self> {
        let name: StrDeserializer<'_, serde::de::value::Error> = name.into_deserializer();
        Self::deserialize(name).ok()
    }

    /// The version of this kind's body that this code writes. Older versions are still
    /// read ([`EventBody::from_stored`]).
    pub fn current_version(&self) -> u16 {
        match self {
            Self::ProjectCreated => 2,
            _ => 1,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ProjectCreated => "project_created",
            Self::AgentRegistered => "agent_registered",
            Self::MessageSent => "message_sent",
            Self::KvSet => "kv_set",
            Self::KvDeleted => "kv_deleted",
            Self::RefShared => "ref_shared",
            Self::ReactionAdded => "reaction_added",
            Self::ReactionRemoved => "reaction_removed",
            Self::MessageRead => "message_read",
            Self::MessagePinned => "message_pinned",
            Self::MessageUnpinned => "message_unpinned",
            Self::MessageDeleted => "message_deleted",
            Self::AgentProfileUpdated => "agent_profile_updated",
            Self::FileShared => "file_shared",
            Self::FileDeleted => "file_deleted",
            Self::RetentionSet => "retention_set",
            Self::EventsErased => "events_erased",
        }
    }
}

/// A project came to be (version 2). Signed by the owner key it names: the root of trust
/// for everything registered after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectCreated {
    pub name: ProjectName,
    /// The owner's Ed25519 key; agent registrations must be signed by it.
    pub owner_key: PublicKey,
    /// How long the project's messages live, until a `retention_set` changes it.
    pub retention: RetentionPolicy,
}

/// `project_created` version 1, frozen: no retention policy (messages live for ever
/// unless they ask for a TTL). Upcast to [`ProjectCreated`] with the default policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectCreatedV1 {
    pub name: ProjectName,
    pub owner_key: PublicKey,
}

impl From<ProjectCreatedV1> for ProjectCreated {
    fn from(v1: ProjectCreatedV1) -> Self {
        Self {
            name: v1.name,
            owner_key: v1.owner_key,
            retention: RetentionPolicy::default(),
        }
    }
}

impl LegacyBody {
    fn upcast(self) -> EventBody {
        match self {
            Self::ProjectCreated(v1) => EventBody::ProjectCreated(v1.into()),
        }
    }
}

/// A project's retention policy (`project_created` version 2 and `retention_set`, which
/// replaces it for messages sent after it). Both parts are optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionPolicy {
    /// Seconds a message lives when it names no `ttl_s`; absent: for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_s: Option<u32>,
    /// Longest `ttl_s` a message may name; absent: no project maximum (the server's
    /// own limit still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_s: Option<u32>,
}

impl RetentionPolicy {
    /// The seconds a message naming `ttl_s` lives under this policy; `None`: for ever.
    pub fn effective_ttl(&self, ttl_s: Option<u32>) -> Option<u32> {
        ttl_s.or(self.default_ttl_s)
    }

    /// Whether the default is at most the maximum (when both are set) and neither is 0.
    pub fn is_consistent(&self) -> bool {
        let positive = self.default_ttl_s != Some(0) && self.max_ttl_s != Some(0);
        let within = match (self.default_ttl_s, self.max_ttl_s) {
            (Some(default), Some(max)) => default <= max,
            _ => true,
        };
        positive && within
    }
}

/// An agent joined the project, vouched for by the owner's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistered {
    pub agent: AgentId,
    pub name: AgentName,
    /// The agent's Ed25519 key; its events must be signed by it.
    pub signing_key: PublicKey,
    /// SHA-256 of the agent's bearer token (the token itself never leaves its key file).
    pub token_hash: TokenHash,
}

/// An agent sent a message to one agent (`to`) or to everyone (`to` absent).
/// Sealed fields: `body` always, `topic` exactly when `topic_ix` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageSent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<EventId>,
    /// Seconds the message lives; absent means the project default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
    /// Blind index of the topic, so the server can group by topic without reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_ix: Option<BlindIndex>,
}

/// The blind-index namespace of KV keys: `keys.blind_index(KV_NAMESPACE, key)`.
pub const KV_NAMESPACE: &str = "kv";

/// An agent set a key of the project's shared key-value store.
/// Sealed fields: `key` and `value`. The server finds the key by `key_ix` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KvSet {
    /// Blind index of the key (namespace [`KV_NAMESPACE`]).
    pub key_ix: BlindIndex,
    /// Compare-and-set: the revision the writer expects the key to have now; `0` means
    /// "must not exist". Absent: unconditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<u64>,
    /// Seconds until the entry disappears; absent means it stays until changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
}

/// An agent deleted a key of the project's key-value store. No sealed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KvDeleted {
    pub key_ix: BlindIndex,
    /// Compare-and-set, as for [`KvSet`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<u64>,
}

/// Longest span a shared code reference may cover, in lines.
pub const MAX_REF_LINES: u32 = 10_000;

/// An agent shared a code reference (a snippet with its file context) with one agent
/// (`to`) or everyone (`to` absent). Line numbers are clear, routing-neutral metadata;
/// everything textual is sealed: `path` and `snippet` always, `note`, `language` and
/// `commit` when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefShared {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentId>,
    /// First line of the snippet, 1-based.
    pub start_line: u32,
    /// Last line of the snippet, inclusive (`>= start_line`, at most
    /// [`MAX_REF_LINES`] lines in all).
    pub end_line: u32,
}

impl RefShared {
    /// Whether the line range is well formed: `1 <= start <= end`, at most
    /// [`MAX_REF_LINES`] lines.
    pub fn lines_are_valid(&self) -> bool {
        self.start_line >= 1
            && self.end_line >= self.start_line
            && self.end_line - self.start_line < MAX_REF_LINES
    }
}

/// The blind-index namespace of reaction emoji; see [`emoji_index`].
pub const EMOJI_NAMESPACE: &str = "emoji";

/// The blind index of `emoji` on `message`. The message id is part of the input, so equal
/// emoji on different messages get unrelated indexes: the server can tell that an agent
/// already reacted with this emoji to this message, not which reactions are alike across
/// the project.
pub fn emoji_index(keys: &ContentKeys, message: EventId, emoji: &str) -> BlindIndex {
    keys.blind_index(EMOJI_NAMESPACE, &format!("{message}\0{emoji}"))
}

/// An agent added (`reaction_added`) or took back (`reaction_removed`) an emoji reaction
/// to a message. `reaction_added` seals the emoji (field `emoji`); `reaction_removed`
/// carries nothing sealed: the index names the reaction it takes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reaction {
    pub message: EventId,
    /// [`emoji_index`] of the emoji.
    pub emoji_ix: BlindIndex,
}

/// An agent marked a message read (`message_read`), pinned or unpinned it for the
/// project (`message_pinned`, `message_unpinned`), or, as its sender, deleted it
/// (`message_deleted`). No sealed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageTarget {
    pub message: EventId,
}
/// An agent set its own profile: who it is to the other agents. The profile is always
/// the actor's own (there is no field naming another agent), so an agent can only ever
/// describe itself. Sealed fields: `role` always, `description` when given. No clear
/// metadata: the server stores and serves the envelope, it never reads the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentProfileUpdated {}

/// Largest file that may be shared, in plaintext bytes (16 GiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// An agent shared a file with one agent (`to`) or everyone (`to` absent). The file's
/// bytes live in the CDN, encrypted in chunks on the agent's machine
/// ([`crate::crypto::file_stream`]); the event's id is the file's id. Sizes, the digest of
/// the ciphertext and the chunk size are clear; the file's `name` (always) and
/// `media_type` (when given) are sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileShared {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentId>,
    /// Plaintext bytes (at most [`MAX_FILE_BYTES`]).
    pub size: u64,
    /// Bytes of the encrypted blob: `ciphertext_len(size, chunk_size)`.
    pub ciphertext_size: u64,
    /// Lowercase hex SHA-256 of the encrypted blob: measured by the CDN as it stores it
    /// and carried to the commit in its signed receipt, or (first clients) hashed by the
    /// client and checked by the CDN. Empty only in a declaration that leaves it to the
    /// CDN ([`FileShared::digest_is_pending`]); never in the log.
    #[schemars(schema_with = "crate::formats::sha256_hex_or_pending")]
    pub digest: String,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
}

impl FileShared {
    /// Whether the sizes agree with each other and the limits, and the digest is
    /// 64 lowercase hex digits.
    pub fn is_well_formed(&self) -> bool {
        let digest_ok = self.digest.len() == 64
            && self
                .digest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        digest_ok && self.sizes_are_consistent()
    }

    /// A declaration that leaves the digest to the CDN, which measures it while storing
    /// the upload; the commit fills it in.
    pub fn digest_is_pending(&self) -> bool {
        self.digest.is_empty()
    }

    /// As [`FileShared::is_well_formed`], the digest possibly pending.
    pub fn is_well_formed_declaration(&self) -> bool {
        if self.digest_is_pending() {
            self.sizes_are_consistent()
        } else {
            self.is_well_formed()
        }
    }

    fn sizes_are_consistent(&self) -> bool {
        self.chunk_size == crate::crypto::file_stream::FILE_CHUNK_SIZE
            && self.size <= MAX_FILE_BYTES
            && crate::crypto::file_stream::ciphertext_len(self.size, self.chunk_size)
                == Some(self.ciphertext_size)
    }
}

/// An agent deleted a shared file; its blob is removed. No sealed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDeleted {
    /// The id of the `file_shared` event.
    pub file: EventId,
}

/// Sealed field names.
pub mod fields {
    pub const BODY: &str = "body";
    pub const TOPIC: &str = "topic";
    /// A KV entry's key (`kv_set`).
    pub const KEY: &str = "key";
    /// A KV entry's value (`kv_set`).
    pub const VALUE: &str = "value";
    /// A code reference's file path (`ref_shared`).
    pub const PATH: &str = "path";
    /// A code reference's snippet (`ref_shared`).
    pub const SNIPPET: &str = "snippet";
    /// A code reference's optional note (`ref_shared`).
    pub const NOTE: &str = "note";
    /// A code reference's optional language (`ref_shared`).
    pub const LANGUAGE: &str = "language";
    /// A code reference's optional commit or branch (`ref_shared`).
    pub const COMMIT: &str = "commit";
    /// A reaction's emoji (`reaction_added`).
    pub const EMOJI: &str = "emoji";
    /// An agent's role (`agent_profile_updated`).
    pub const ROLE: &str = "role";
    /// An agent's optional description of itself (`agent_profile_updated`).
    pub const DESCRIPTION: &str = "description";
    /// A shared file's name (`file_shared`).
    pub const NAME: &str = "name";
    /// A shared file's optional media type (`file_shared`).
    pub const MEDIA_TYPE: &str = "media_type";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn a_stored_body_is_read_by_its_kind_and_refused_with_the_reason_alone() {
        let agent = AgentId::generate();
        let meta = raw(&format!(r#"{{"to":"{agent}","reply_to":null}}"#));
        assert_eq!(
            EventBody::from_stored("message_sent", 1, Some(&meta)),
            Ok(EventBody::MessageSent(MessageSent {
                to: Some(agent),
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }))
        );
        for kind in ["project_created", "message_read", "events_erased"] {
            assert_eq!(EventKind::from_wire(kind).map(|k| k.as_str()), Some(kind));
        }
        assert_eq!(
            EventBody::from_stored("message_mailed", 1, Some(&meta)),
            Err("unknown event kind `message_mailed`".into())
        );
        assert_eq!(
            EventBody::from_stored("message_sent", 1, None),
            Err("missing field `meta`".into())
        );
        assert_eq!(
            EventBody::from_stored("message_sent", 9, Some(&meta)),
            Err("event kind `message_sent` has no version 9".into())
        );
        let bad = EventBody::from_stored("message_sent", 1, Some(&raw(r#"{"ttl_s":"soon"}"#)))
            .unwrap_err();
        assert!(bad.starts_with("invalid type: string \"soon\""), "{bad}");
        assert!(!bad.contains(" at line "), "{bad}");
    }
}
