//! The event envelope, version 1: the one stored shape of every event in the log.
//!
//! ```json
//! { "v": 1, "id": "<uuidv7>", "project": "<uuid>", "actor": "owner" | "<agent uuid>",
//!   "at": <unix ms>, "kind": "message_sent", "meta": { … clear routing metadata … },
//!   "sealed": { "body": { "n", "c", "k", "b" } }, "sig": "<base64>",
//!   "prev": { "seq": 41, "hash": "<hex>" } }
//! ```
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

use super::{canonical, EventBody};
use crate::crypto::{
    ContentKeys, FieldBinding, OpenError, PublicKey, Sealed, Signature, SignatureError, SigningKey,
};
use crate::ids::{AgentId, EventId, ProjectId, Seq};

/// The envelope version this code writes.
pub const ENVELOPE_VERSION: u16 = 1;

/// Who acted: the project owner (provisioning) or one of its agents.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Owner,
    Agent(AgentId),
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Actor::Owner => s.serialize_str("owner"),
            Actor::Agent(id) => s.serialize_str(&id.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "owner" {
            return Ok(Actor::Owner);
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventHash([u8; 32]);

impl EventHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<String> for EventHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bytes = hex::decode(&s).map_err(|_| format!("event hash `{s}` is not hex"))?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| format!("event hash `{s}` is not 32 bytes"))
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    pub v: u16,
    pub id: EventId,
    pub project: ProjectId,
    pub actor: Actor,
    /// Client clock, Unix milliseconds.
    pub at: i64,
    #[serde(flatten)]
    pub body: EventBody,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed: BTreeMap<String, Sealed>,
    pub sig: Signature,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<ChainLink>,
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
        let bytes = signing_bytes(
            ENVELOPE_VERSION,
            self.id,
            self.project,
            self.actor,
            self.at,
            &self.body,
            &self.sealed,
        );
        Envelope {
            v: ENVELOPE_VERSION,
            id: self.id,
            project: self.project,
            actor: self.actor,
            at: self.at,
            body: self.body,
            sealed: self.sealed,
            sig: key.sign(&bytes),
            prev: None,
        }
    }
}

impl Envelope {
    /// The bytes the actor signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(
            self.v,
            self.id,
            self.project,
            self.actor,
            self.at,
            &self.body,
            &self.sealed,
        )
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

fn signing_bytes(
    v: u16,
    id: EventId,
    project: ProjectId,
    actor: Actor,
    at: i64,
    body: &EventBody,
    sealed: &BTreeMap<String, Sealed>,
) -> Vec<u8> {
    let digests: serde_json::Map<String, serde_json::Value> = sealed
        .iter()
        .map(|(name, field)| (name.clone(), hex::encode(field.digest()).into()))
        .collect();
    let mut value = serde_json::to_value(body).expect("an event body always serialises");
    let object = value
        .as_object_mut()
        .expect("an event body serialises as an object");
    object.insert("v".into(), v.into());
    object.insert("id".into(), id.to_string().into());
    object.insert("project".into(), project.to_string().into());
    object.insert(
        "actor".into(),
        serde_json::to_value(actor).expect("an actor always serialises"),
    );
    object.insert("at".into(), at.into());
    object.insert("sealed".into(), digests.into());
    let mut out = b"nexysync/event/v1\n".to_vec();
    canonical::write(&value, &mut out);
    out
}
