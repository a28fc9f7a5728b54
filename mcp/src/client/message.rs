//! Messages in plaintext, on this side of the encryption: [`NewMessage`] to send; what
//! reaches an agent, a verified, decrypted [`Message`] or a [`RejectedMessage`] that says
//! why an event failed verification (its content is never shown); pages of them.

use std::fmt;

use nexysync_domain::ids::{AgentName, EventId, Seq};
use serde::Serialize;

use super::state::MessageReaction;
use super::verify::VerifyError;

/// A message that passed every check (owner-signed sender registration, sender
/// signature, project, hash chain, authenticated decryption), in plaintext.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: EventId,
    /// Position in the log; pass as `since` to read what came after.
    pub seq: Seq,
    pub from: AgentName,
    /// The recipient, or `None` for a broadcast to every agent of the project.
    pub to: Option<AgentName>,
    pub topic: Option<String>,
    pub body: String,
    pub reply_to: Option<EventId>,
    /// When the sender says it sent the message (RFC 3339, from the signed `at`).
    pub sent_at: String,
    pub ttl_s: Option<u32>,
    /// Reactions that verified, oldest first (none on a live-stream message).
    pub reactions: Vec<MessageReaction>,
    /// Pinned for the project (the server's word).
    pub pinned: bool,
    /// This agent marked it read (the server's word).
    pub read_by_me: bool,
    /// Deleted by its sender (proven by the sender's signature): `body` is empty and
    /// `topic` absent; the message stays as a node of its thread.
    pub deleted: bool,
}

impl Message {
    /// Whether its own `ttl_s` ran out by `now`: an expired message is never shown again,
    /// even one the live stream delivered before it expired (ADR 0012). One that expires
    /// by the project default is left to the server, which no longer serves it.
    pub fn has_expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let Some(ttl_s) = self.ttl_s else {
            return false;
        };
        chrono::DateTime::parse_from_rfc3339(&self.sent_at)
            .is_ok_and(|sent| sent + chrono::Duration::seconds(i64::from(ttl_s)) <= now)
    }
}

impl fmt::Debug for Message {
    // Plaintext stays out of logs and panics: only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("topic", &self.topic.as_ref().map(|t| Hidden(t.len())))
            .field("body", &Hidden(self.body.len()))
            .field("reply_to", &self.reply_to)
            .field("sent_at", &self.sent_at)
            .field("ttl_s", &self.ttl_s)
            .field("reactions", &self.reactions.len())
            .field("pinned", &self.pinned)
            .field("read_by_me", &self.read_by_me)
            .field("deleted", &self.deleted)
            .finish()
    }
}

struct Hidden(usize);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes hidden>", self.0)
    }
}

/// An event the server handed over that failed verification: it is reported, never
/// opened for the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {id} at seq {seq} failed verification: {reason}")]
pub struct RejectedMessage {
    pub id: EventId,
    pub seq: Seq,
    pub reason: VerifyError,
}

/// One item of an inbox page, a thread or the live stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Message(Message),
    Rejected(RejectedMessage),
}

impl Incoming {
    pub fn seq(&self) -> Seq {
        match self {
            Incoming::Message(m) => m.seq,
            Incoming::Rejected(r) => r.seq,
        }
    }

    pub fn id(&self) -> EventId {
        match self {
            Incoming::Message(m) => m.id,
            Incoming::Rejected(r) => r.id,
        }
    }
}

/// A message to send. Build with [`NewMessage::to`] or [`NewMessage::broadcast`].
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The recipient's name; `None` sends to every agent of the project.
    pub to: Option<AgentName>,
    pub body: String,
    pub topic: Option<String>,
    pub reply_to: Option<EventId>,
    /// Seconds the message lives, 1 to 90 days; `None` means the project default.
    pub ttl_s: Option<u32>,
}

impl NewMessage {
    pub fn to(recipient: AgentName, body: impl Into<String>) -> Self {
        Self {
            to: Some(recipient),
            ..Self::broadcast(body)
        }
    }

    pub fn broadcast(body: impl Into<String>) -> Self {
        Self {
            to: None,
            body: body.into(),
            topic: None,
            reply_to: None,
            ttl_s: None,
        }
    }

    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    pub fn replying_to(mut self, id: EventId) -> Self {
        self.reply_to = Some(id);
        self
    }

    pub fn with_ttl(mut self, ttl_s: u32) -> Self {
        self.ttl_s = Some(ttl_s);
        self
    }
}

impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("to", &self.to)
            .field("body_len", &self.body.len())
            .field("has_topic", &self.topic.is_some())
            .field("reply_to", &self.reply_to)
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

/// A verified page of the inbox.
#[derive(Debug, Clone)]
pub struct InboxPage {
    /// Oldest first; events that failed verification appear as [`Incoming::Rejected`].
    pub items: Vec<Incoming>,
    /// Pass as `since` to read the next page.
    pub next_since: Seq,
    pub has_more: bool,
}

/// A verified thread.
#[derive(Debug, Clone)]
pub struct ThreadPage {
    pub root: EventId,
    /// In log order.
    pub items: Vec<Incoming>,
    /// Where messages of the thread were until they expired: no content.
    pub expired: Vec<nexysync_domain::wire::ExpiredNode>,
    /// The thread goes on past `items`.
    pub has_more: bool,
}
