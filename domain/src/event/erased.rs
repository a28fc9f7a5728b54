//! The retention tombstone, `events_erased`: what the pruner leaves in the log in place
//! of the events it erased (ADR 0012).
//!
//! Each erased event is kept stripped of its ciphertext: its envelope with `sealed`
//! emptied, plus the hex SHA-256 digest of each sealed field it had. Signatures and hashes
//! cover sealed fields by their digest only, so from a stripped event an auditor recomputes
//! the event's signing bytes, checks its signature against the registered key, and
//! recomputes its chain hash: the gap the erasure left in the chain is proven to have held
//! exactly these events, without their content.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, EventHash};
use crate::ids::Seq;

/// The pruner erased these events (and their ciphertext) from the log. Written by
/// [`super::Actor::Pruner`], unsigned: every entry proves itself (ADR 0012).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventsErased {
    /// In log order.
    pub erased: Vec<ErasedEvent>,
}

/// One erased event: where it was, its hash as the chain named it, and its envelope
/// without ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErasedEvent {
    pub seq: Seq,
    /// The erased event's chain hash; the event after it named this in its `prev`.
    pub hash: EventHash,
    /// The envelope with `sealed` emptied.
    #[schemars(schema_with = "stripped_envelope")]
    pub event: Envelope,
    /// The hex SHA-256 digest of each sealed field the event had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "sealed_digests")]
    pub sealed: BTreeMap<String, String>,
}

impl ErasedEvent {
    /// `event`, found at `seq`, stripped of its ciphertext.
    pub fn strip(seq: Seq, event: &Envelope) -> Self {
        let mut stripped = event.clone();
        let sealed = std::mem::take(&mut stripped.sealed)
            .into_iter()
            .map(|(name, field)| (name, hex::encode(field.digest())))
            .collect();
        Self {
            seq,
            hash: event.hash(),
            event: stripped,
            sealed,
        }
    }

    /// The bytes the erased event's actor signed, recomputed from the digests.
    pub fn signing_bytes(&self) -> Vec<u8> {
        self.event.signing_bytes_with_digests(&self.sealed)
    }

    /// The erased event's chain hash, recomputed; equal to [`Self::hash`] when the entry
    /// is honest.
    pub fn recomputed_hash(&self) -> EventHash {
        self.event.hash_with_signing_bytes(&self.signing_bytes())
    }

    /// Bytes of this entry in a tombstone, to keep a batch under the log's payload limit.
    pub fn stored_len(&self) -> usize {
        serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0)
    }
}

/// The schema of [`ErasedEvent::sealed`]: field names to hex SHA-256 digests.
fn sealed_digests(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": crate::formats::sha256_hex(generator),
    })
}

/// The schema of [`ErasedEvent::event`]: a stored envelope of any kind, without `sealed`.
/// (Not the envelope's own schema by reference: a kind's file fixes `kind` at its root.)
fn stripped_envelope(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "The erased event's envelope as stored, without `sealed` (its digests are beside it).",
        "properties": {
            "v": { "type": "integer", "const": 1 },
            "kind": { "type": "string" },
            "kind_v": { "type": "integer", "minimum": 1 },
            "meta": { "type": "object" },
        },
        "required": ["v", "id", "project", "actor", "at", "kind", "sig"],
        "not": { "required": ["sealed"] },
    })
}
