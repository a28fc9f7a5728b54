//! The event envelope, version 1: the one stored shape of every event in the log.
//!
//! ```json
//! { "v": 1, "id": "<uuidv7>", "project": "<uuid>", "actor": "owner" | "<agent uuid>",
//!   "at": <unix ms>, "kind": "message_sent", "meta": { … clear routing metadata … },
//!   "sealed": { "body": { "n", "c", "k", "b" } }, "sig": "<base64>",
//!   "prev": { "seq": 41, "hash": "<hex>" } }
//! ```
//!
//! A kind at another version than 1 also carries `"kind_v": <n>` (after `meta`); absent
//! means 1, so every event stored before kinds had versions reads as it was (ADR 0012).
//! Signatures and hashes are computed from the body in its stored version's shape, never
//! from the upcast form.
//!
//! The actor signs everything but `prev` (sealed fields by their digest). The log adds
//! `prev` when it appends, so a conflicting append can be retried without asking the
//! client to sign again (ADR 0002). An event's hash covers the signed bytes, the
//! signature and `prev`: the project's log is a hash chain.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kinds::LegacyBody;
use super::{canonical, EventBody, EventsErased};
use crate::crypto::{
    ContentKeys, FieldBinding, OpenError, PublicKey, Sealed, Signature, SignatureError, SigningKey,
};
use crate::ids::{AgentId, EventId, ProjectId, Seq};

/// The envelope version this code writes.
pub const ENVELOPE_VERSION: u16 = 1;

/// Who acted: the project owner (provisioning), one of its agents, or the server's
/// pruner (retention tombstones only, unsigned: ADR 0012).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Owner,
    Agent(AgentId),
    Pruner,
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Actor::Owner => s.serialize_str("owner"),
            Actor::Pruner => s.serialize_str("pruner"),
            Actor::Agent(id) => s.serialize_str(&id.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "owner" => return Ok(Actor::Owner),
            "pruner" => return Ok(Actor::Pruner),
            _ => {}
        }
        AgentId::parse(&text)
            .map(Actor::Agent)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Owner => f.write_str("owner"),
            Actor::Pruner => f.write_str("pruner"),
            Actor::Agent(id) => write!(f, "agent {id}"),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// SHA-256 of an event: what the next event's `prev` names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct EventHash([u8; 32]);

impl<'de> Deserialize<'de> for EventHash {
    /// Straight from the JSON text into the 32 bytes: every event read but a project's
    /// first names one, and a `String`, then a `Vec` built byte by byte, took a twelfth
    /// of a rebuild's decoding.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = EventHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event hash in hex")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EventHash, E> {
                EventHash::from_hex(text).map_err(E::custom)
            }
        }
        d.deserialize_str(HexVisitor)
    }
}

impl EventHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash its 64 lowercase hex digits name (the form [`EventHash::to_hex`] writes,
    /// and the only one its schema allows).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        if text.len() != 64 {
            return Err(format!("event hash `{text}` is not 32 bytes"));
        }
        let mut bytes = [0u8; 32];
        let mut invalid = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let (high, low) = (HEX_DIGIT[pair[0] as usize], HEX_DIGIT[pair[1] as usize]);
            invalid |= high | low;
            *byte = (high << 4) | (low & 0x0f);
        }
        if invalid & NOT_HEX != 0 {
            return Err(format!("event hash `{text}` is not hex"));
        }
        Ok(Self(bytes))
    }
}

/// Marks a character that is no hex digit in [`HEX_DIGIT`].
const NOT_HEX: u8 = 0x80;

/// The value of each lowercase hex digit by its byte, [`NOT_HEX`] for every other byte:
/// a look-up per digit, no branch, as every stored event's `prev` is read.
const HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl TryFrom<String> for EventHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::from_hex(&s)
    }
}

impl From<EventHash> for String {
    fn from(h: EventHash) -> String {
        h.to_hex()
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({}…)", &self.to_hex()[..12])
    }
}

/// The link to the project's previous event, set by the log on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainLink {
    /// Stream sequence of the previous event of the same project.
    pub seq: Seq,
    pub hash: EventHash,
}

/// An event as signed by its actor and stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub v: u16,
    pub id: EventId,
    pub project: ProjectId,
    pub actor: Actor,
    /// Client clock, Unix milliseconds.
    pub at: i64,
    /// The body, upcast to the current type of its kind.
    pub body: EventBody,
    /// The version of the body's kind as stored: what the signature and hash cover. The
    /// current version for a new event; an older one for an event read from the log.
    pub kind_v: u16,
    pub sealed: BTreeMap<String, Sealed>,
    pub sig: Signature,
    pub prev: Option<ChainLink>,
}

/// The stored shape of an envelope, for its JSON Schema: what the serde implementations
/// below write and read (a body of the current version; `domain::event::schema` adds the
/// older versions).
#[derive(JsonSchema)]
#[schemars(rename = "Envelope")]
#[allow(dead_code)] // Only its schema is used.
struct EnvelopeShape {
    v: u16,
    id: EventId,
    project: ProjectId,
    actor: Actor,
    /// Client clock, Unix milliseconds.
    at: i64,
    #[serde(flatten)]
    body: EventBody,
    /// The version of the kind's `meta`; absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind_v: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sealed: BTreeMap<String, Sealed>,
    sig: Signature,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<ChainLink>,
}

impl JsonSchema for Envelope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        EnvelopeShape::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        EnvelopeShape::json_schema(generator)
    }
}

/// The stored JSON of an envelope, as written.
#[derive(Serialize)]
struct StoredOut<'a> {
    v: u16,
    id: EventId,
    project: ProjectId,
    actor: Actor,
    at: i64,
    #[serde(flatten)]
    body: StoredBody<'a>,
    #[serde(skip_serializing_if = "is_first_version")]
    kind_v: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    sealed: &'a BTreeMap<String, Sealed>,
    sig: &'a Signature,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: &'a Option<ChainLink>,
}

/// A body in the shape of its stored version.
#[derive(Serialize)]
#[serde(untagged)]
enum StoredBody<'a> {
    Current(&'a EventBody),
    Legacy(Box<LegacyBody>),
}

/// The stored JSON of an envelope, as read: the body is decoded once its version is known.
#[derive(Deserialize)]
struct StoredIn<'a> {
    v: u16,
    id: EventId,
    project: ProjectId,
    actor: Actor,
    at: i64,
    /// Borrowed from the input when it can be (a kind has no escapes): one allocation
    /// fewer for every event read.
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default = "first_version")]
    kind_v: u16,
    #[serde(default)]
    meta: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    sealed: BTreeMap<String, Sealed>,
    sig: Signature,
    #[serde(default)]
    prev: Option<ChainLink>,
}

fn first_version() -> u16 {
    1
}

fn is_first_version(v: &u16) -> bool {
    *v == 1
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredOut {
            v: self.v,
            id: self.id,
            project: self.project,
            actor: self.actor,
            at: self.at,
            body: self.stored_body(),
            kind_v: self.kind_v,
            sealed: &self.sealed,
            sig: &self.sig,
            prev: &self.prev,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = StoredIn::deserialize(d)?;
        let body = EventBody::from_stored(&stored.kind, stored.kind_v, stored.meta.as_deref())
            .map_err(serde::de::Error::custom)?;
        Ok(Self {
            v: stored.v,
            id: stored.id,
            project: stored.project,
            actor: stored.actor,
            at: stored.at,
            body,
            kind_v: stored.kind_v,
            sealed: stored.sealed,
            sig: stored.sig,
            prev: stored.prev,
        })
    }
}

/// An event before its actor signs it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: EventId,
    pub project: ProjectId,
    pub actor: Actor,
    pub at: i64,
    pub body: EventBody,
    pub sealed: BTreeMap<String, Sealed>,
}

impl Draft {
    /// A draft with a fresh event id, stamped now.
    pub fn new(project: ProjectId, actor: Actor, body: EventBody) -> Self {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            id: EventId::generate(),
            project,
            actor,
            at,
            body,
            sealed: BTreeMap::new(),
        }
    }

    /// Seals `plaintext` into the field `name`, bound to this event.
    pub fn seal(mut self, keys: &ContentKeys, name: &str, plaintext: &[u8]) -> Self {
        let binding = FieldBinding {
            project: self.project,
            event: self.id,
            field: name,
        };
        self.sealed
            .insert(name.to_owned(), keys.seal(&binding, plaintext));
        self
    }

    pub fn sign(self, key: &SigningKey) -> Envelope {
        let kind_v = self.body.kind().current_version();
        self.sign_at_version(key, kind_v)
    }

    /// Signs the draft as an event of its kind's version `kind_v`, in that version's
    /// shape. Only to write examples of older versions (golden files, tests of upcasting);
    /// new events are always [`Draft::sign`]ed at the current version.
    #[doc(hidden)]
    pub fn sign_at_version(self, key: &SigningKey, kind_v: u16) -> Envelope {
        let mut event = Envelope {
            v: ENVELOPE_VERSION,
            id: self.id,
            project: self.project,
            actor: self.actor,
            at: self.at,
            kind_v,
            body: self.body,
            sealed: self.sealed,
            sig: Signature::from_bytes([0; 64]),
            prev: None,
        };
        event.sig = key.sign(&event.signing_bytes());
        event
    }
}

impl Envelope {
    /// A retention tombstone, written by the pruner at `at` (server clock, Unix ms). It
    /// has no signature (all zero bytes): each entry proves itself against the chain and
    /// the registered keys, and the tombstone is itself a link of the chain (ADR 0012).
    pub fn tombstone(id: EventId, project: ProjectId, at: i64, erased: EventsErased) -> Self {
        let body = EventBody::EventsErased(erased);
        Self {
            v: ENVELOPE_VERSION,
            id,
            project,
            actor: Actor::Pruner,
            at,
            kind_v: body.kind().current_version(),
            body,
            sealed: BTreeMap::new(),
            sig: Signature::from_bytes([0; 64]),
            prev: None,
        }
    }

    /// The body in the shape of its stored version.
    fn stored_body(&self) -> StoredBody<'_> {
        match self.body.downcast(self.kind_v) {
            Some(legacy) => StoredBody::Legacy(Box::new(legacy)),
            None => StoredBody::Current(&self.body),
        }
    }

    /// The bytes the actor signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let digests = self
            .sealed
            .iter()
            .map(|(name, field)| (name.clone(), hex::encode(field.digest()).into()))
            .collect();
        self.signing_bytes_from(digests)
    }

    /// The bytes the actor signed, for an envelope whose ciphertext was erased: each
    /// sealed field given by its hex digest (`sealed` is ignored).
    pub fn signing_bytes_with_digests(&self, digests: &BTreeMap<String, String>) -> Vec<u8> {
        let digests = digests
            .iter()
            .map(|(name, digest)| (name.clone(), digest.clone().into()))
            .collect();
        self.signing_bytes_from(digests)
    }

    fn signing_bytes_from(&self, digests: serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
        let mut value =
            serde_json::to_value(self.stored_body()).expect("an event body always serialises");
        let object = value
            .as_object_mut()
            .expect("an event body serialises as an object");
        object.insert("v".into(), self.v.into());
        if self.kind_v != 1 {
            object.insert("kind_v".into(), self.kind_v.into());
        }
        object.insert("id".into(), self.id.to_string().into());
        object.insert("project".into(), self.project.to_string().into());
        object.insert(
            "actor".into(),
            serde_json::to_value(self.actor).expect("an actor always serialises"),
        );
        object.insert("at".into(), self.at.into());
        object.insert("sealed".into(), digests.into());
        let mut out = b"nexysync/event/v1\n".to_vec();
        canonical::write(&value, &mut out);
        out
    }

    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), SignatureError> {
        key.verify(&self.signing_bytes(), &self.sig)
    }

    /// The event's hash, covering the signed bytes, the signature and the chain link.
    pub fn hash(&self) -> EventHash {
        self.hash_with_signing_bytes(&self.signing_bytes())
    }

    /// [`Envelope::hash`], given this event's [`Envelope::signing_bytes`] computed
    /// earlier: the log hashes each append under a lock and keeps the costly
    /// canonicalisation out of it.
    pub fn hash_with_signing_bytes(&self, signed: &[u8]) -> EventHash {
        let mut hasher = Sha256::new();
        hasher.update(b"nexysync/chain/v1\n");
        hasher.update((signed.len() as u64).to_be_bytes());
        hasher.update(signed);
        hasher.update(self.sig.to_bytes());
        match &self.prev {
            Some(link) => {
                hasher.update(link.seq.0.to_be_bytes());
                hasher.update(link.hash.as_bytes());
            }
            None => hasher.update([0u8; 40]),
        }
        EventHash(hasher.finalize().into())
    }

    /// Opens one sealed field. A field that is absent gives `Ok(None)`.
    pub fn open(&self, keys: &ContentKeys, name: &str) -> Result<Option<Vec<u8>>, OpenError> {
        let Some(sealed) = self.sealed.get(name) else {
            return Ok(None);
        };
        let binding = FieldBinding {
            project: self.project,
            event: self.id,
            field: name,
        };
        keys.open(&binding, sealed).map(Some)
    }

    /// Total ciphertext bytes across sealed fields.
    pub fn sealed_len(&self) -> usize {
        self.sealed.values().map(Sealed::ciphertext_len).sum()
    }

    /// Serialises to the stored JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }
}
