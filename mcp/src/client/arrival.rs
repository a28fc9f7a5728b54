//! What the live stream delivers, of every kind an agent can wait for: [`StreamKind`]
//! names the kinds (one per SSE event the client follows), [`Arrival`] is one verified,
//! opened event (or the rejection of one), and [`Cursors`] is the delivery position of
//! each kind.
//!
//! A new SSE event kind is one more [`StreamKind`] variant: its SSE name, whether the
//! server replays it on resume, whether it has an HTTP history to re-read, and how to
//! verify it ([`Client::verify_arrival`]). The stream, the cursors and the `kinds` filter
//! of `ns_message wait` follow from that.

use std::collections::BTreeMap;
use std::fmt;

use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{sse, StoredEvent};
use serde::{Deserialize, Serialize};

use super::files::SharedFile;
use super::message::{Incoming, Message, RejectedMessage};
use super::refs::SharedRef;
use super::update::MessageUpdate;
use super::{Client, ClientError};

/// A kind of event the live stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// A direct message to this agent or a broadcast by another (`new_message`).
    Message,
    /// A code reference shared with this agent or with everyone (`new_ref`).
    Ref,
    /// Another agent set or deleted a key of the shared store (`kv_update`).
    Kv,
    /// A file shared with this agent or with everyone by another agent (`new_file`).
    File,
    /// Another agent reacted to, marked read, pinned, unpinned or deleted a message this
    /// agent may read (`message_update`).
    Update,
}

impl StreamKind {
    /// Every kind, in a stable order.
    pub const ALL: [StreamKind; 5] = [
        StreamKind::Message,
        StreamKind::Ref,
        StreamKind::Kv,
        StreamKind::File,
        StreamKind::Update,
    ];

    /// The name agents use (`message`, `ref`, `kv`, `file`, `update`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Message => "message",
            StreamKind::Ref => "ref",
            StreamKind::Kv => "kv",
            StreamKind::File => "file",
            StreamKind::Update => "update",
        }
    }

    /// The kind named `name`, as agents write it.
    pub fn parse(name: &str) -> Option<StreamKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The SSE event name of this kind on `GET /v1/stream`.
    pub fn sse_event(self) -> &'static str {
        match self {
            StreamKind::Message => sse::NEW_MESSAGE,
            StreamKind::Ref => sse::NEW_REF,
            StreamKind::Kv => sse::KV_UPDATE,
            StreamKind::File => sse::NEW_FILE,
            StreamKind::Update => sse::MESSAGE_UPDATE,
        }
    }

    /// The kind an SSE event name carries, if the client follows it.
    pub fn from_sse_event(name: &str) -> Option<StreamKind> {
        Self::ALL.into_iter().find(|kind| kind.sse_event() == name)
    }

    /// Whether a resumed stream (`Last-Event-ID`) replays what was missed of this kind.
    pub(crate) fn replayed_on_resume(self) -> bool {
        matches!(self, StreamKind::Message)
    }

    /// Whether what the stream could not hand over can be read back over HTTP after a
    /// cursor (the inbox, the refs and files lists). The KV store keeps only current values, so a
    /// missed `kv_update` is gone; `ns_kv list` shows the state it led to.
    pub(crate) fn has_history(self) -> bool {
        matches!(
            self,
            StreamKind::Message | StreamKind::Ref | StreamKind::File
        )
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to the shared store pushed by the stream, verified and opened.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct KvChange {
    /// The key, when the event carries it sealed (`kv_set`); a delete names the key by
    /// its blind index only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub key_ix: BlindIndex,
    /// The new value, or `None` when the key was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub deleted: bool,
    /// The write's sequence: the entry's new revision.
    pub revision: u64,
    pub by: AgentName,
    pub at: String,
    pub id: EventId,
}

impl fmt::Debug for KvChange {
    // Plaintext stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvChange")
            .field("key_ix", &self.key_ix)
            .field("deleted", &self.deleted)
            .field("revision", &self.revision)
            .field("by", &self.by)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One event the stream handed to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    Message(Message),
    Ref(SharedRef),
    Kv(KvChange),
    File(SharedFile),
    Update(MessageUpdate),
    /// An event of `kind` that failed verification: reported, never opened.
    Rejected(StreamKind, RejectedMessage),
}

impl Arrival {
    pub fn kind(&self) -> StreamKind {
        match self {
            Arrival::Message(_) => StreamKind::Message,
            Arrival::Ref(_) => StreamKind::Ref,
            Arrival::Kv(_) => StreamKind::Kv,
            Arrival::File(_) => StreamKind::File,
            Arrival::Update(_) => StreamKind::Update,
            Arrival::Rejected(kind, _) => *kind,
        }
    }

    pub fn seq(&self) -> Seq {
        match self {
            Arrival::Message(m) => m.seq,
            Arrival::Ref(r) => r.seq,
            Arrival::Kv(c) => Seq(c.revision),
            Arrival::File(f) => f.seq,
            Arrival::Update(u) => u.seq,
            Arrival::Rejected(_, r) => r.seq,
        }
    }

    pub fn id(&self) -> EventId {
        match self {
            Arrival::Message(m) => m.id,
            Arrival::Ref(r) => r.id,
            Arrival::Kv(c) => c.id,
            Arrival::File(f) => f.id,
            Arrival::Update(u) => u.id,
            Arrival::Rejected(_, r) => r.id,
        }
    }

    /// The message (or rejected message) this is, if it is of kind `message`.
    pub fn into_incoming(self) -> Option<Incoming> {
        match self {
            Arrival::Message(m) => Some(Incoming::Message(m)),
            Arrival::Rejected(StreamKind::Message, r) => Some(Incoming::Rejected(r)),
            _ => None,
        }
    }
}

impl From<Incoming> for Arrival {
    fn from(item: Incoming) -> Arrival {
        match item {
            Incoming::Message(m) => Arrival::Message(m),
            Incoming::Rejected(r) => Arrival::Rejected(StreamKind::Message, r),
        }
    }
}

/// The last sequence delivered to the agent, per kind (absent: nothing yet, 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursors(BTreeMap<StreamKind, Seq>);

impl Cursors {
    /// Every kind at `seq`.
    pub fn all_at(seq: Seq) -> Cursors {
        Cursors(StreamKind::ALL.into_iter().map(|k| (k, seq)).collect())
    }

    pub fn get(&self, kind: StreamKind) -> Seq {
        self.0.get(&kind).copied().unwrap_or(Seq(0))
    }

    /// Moves `kind`'s cursor to `seq`; a cursor never moves back.
    pub fn advance(&mut self, kind: StreamKind, seq: Seq) {
        let cursor = self.0.entry(kind).or_insert(Seq(0));
        if seq > *cursor {
            *cursor = seq;
        }
    }
}

impl Client {
    /// Verifies and opens one event the stream pushed as `kind`. The error means it could
    /// not be judged (the agents could not be fetched), not that it is bad.
    pub async fn verify_arrival(
        &self,
        kind: StreamKind,
        stored: &StoredEvent,
    ) -> Result<Arrival, ClientError> {
        let outcome = match kind {
            StreamKind::Message => return Ok(self.verify(stored).await?.into()),
            StreamKind::Ref => self.verify_ref(stored).await?.map(Arrival::Ref),
            StreamKind::Kv => self.verify_kv_change(stored).await?.map(Arrival::Kv),
            StreamKind::File => self.verify_file(stored).await?.map(Arrival::File),
            StreamKind::Update => self.verify_update(stored).await?.map(Arrival::Update),
        };
        Ok(outcome.unwrap_or_else(|rejected| Arrival::Rejected(kind, rejected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_its_sse_event() {
        for kind in StreamKind::ALL {
            assert_eq!(StreamKind::parse(kind.as_str()), Some(kind));
            assert_eq!(StreamKind::from_sse_event(kind.sse_event()), Some(kind));
        }
        assert_eq!(StreamKind::parse("presence"), None);
        assert_eq!(StreamKind::from_sse_event(sse::READY), None);
    }

    #[test]
    fn cursors_never_move_back_and_serialise_by_kind_name() {
        let mut cursors = Cursors::default();
        assert_eq!(cursors.get(StreamKind::Ref), Seq(0));
        cursors.advance(StreamKind::Ref, Seq(9));
        cursors.advance(StreamKind::Ref, Seq(3));
        assert_eq!(cursors.get(StreamKind::Ref), Seq(9));
        assert_eq!(cursors.get(StreamKind::Message), Seq(0));
        let json = serde_json::to_value(&cursors).unwrap();
        assert_eq!(json, serde_json::json!({"ref": 9}));
        let back: Cursors = serde_json::from_value(json).unwrap();
        assert_eq!(back, cursors);
    }
}
