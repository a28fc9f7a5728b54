//! Push to the MCP client: each verified arrival on the live stream becomes a
//! `notifications/claude/channel` notification, so a client that listens (Claude Code,
//! which registers a listener for servers declaring the `claude/channel` capability) can
//! wake the agent without a tool call. Other clients ignore an unknown notification, as
//! JSON-RPC asks of them; `ns_message wait` serves them.
//!
//! A notification is a summary, never a long body: the kind, the sender, the id, the
//! topic or path, and at most [`PREVIEW_CHARS`] of text; the agent reads the rest with a
//! tool. Notifications start once the client has initialised (what arrived before then is
//! told in one notice of how many events wait), are sent from a task of
//! their own (the stream's broadcast never waits for it: a client too slow to keep up gets
//! one "N more" notice instead of the events it missed), and never change what `wait` or
//! `check` deliver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rmcp::model::{CustomNotification, ServerNotification};
use rmcp::{Peer, RoleServer};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use super::answer::cut;
use crate::client::Arrival;

/// The capability (under `experimental`) and the method of Claude Code's channels.
pub(crate) const CHANNEL_CAPABILITY: &str = "claude/channel";
pub(crate) const CHANNEL_METHOD: &str = "notifications/claude/channel";
/// Most characters of a body, value or note a notification carries.
pub(crate) const PREVIEW_CHARS: usize = 160;

/// Forwards `arrivals` to `peer` until the stream ends, the client goes away, or the
/// session changes (`generation` moves past `mine`); first, when `waiting` arrivals came
/// before the client was there to hear of them (while this process started, or before a
/// login), one notice of those.
pub(crate) fn forward(
    peer: Peer<RoleServer>,
    mut arrivals: broadcast::Receiver<Arrival>,
    waiting: usize,
    generation: Arc<AtomicU64>,
    mine: u64,
) {
    tokio::spawn(async move {
        let mut first = (waiting > 0).then(|| waiting_notification(waiting));
        loop {
            let notification = match first.take() {
                Some(notice) => notice,
                None => match arrivals.recv().await {
                    Ok(arrival) => match channel_notification(&arrival) {
                        Some(notification) => notification,
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => missed_notification(missed),
                    Err(RecvError::Closed) => return,
                },
            };
            if generation.load(Ordering::Acquire) != mine {
                return;
            }
            if let Err(error) = peer
                .send_notification(ServerNotification::CustomNotification(notification))
                .await
            {
                tracing::debug!(%error, "client gone; notifications stop");
                return;
            }
        }
    });
}

/// The notification for one arrival; none for an event that failed verification.
pub(crate) fn channel_notification(arrival: &Arrival) -> Option<CustomNotification> {
    let mut meta = Map::new();
    meta.insert("kind".into(), json!(arrival.kind().as_str()));
    meta.insert("id".into(), json!(arrival.id().to_string()));
    meta.insert("seq".into(), json!(arrival.seq().0.to_string()));
    let content = match arrival {
        Arrival::Message(m) => {
            meta.insert("from".into(), json!(m.from.to_string()));
            let mut about = String::new();
            if let Some(topic) = &m.topic {
                let (topic, _) = cut(topic, PREVIEW_CHARS);
                meta.insert("topic".into(), json!(topic));
                about = format!(" about \"{topic}\"");
            }
            let (preview, whole) = cut(&m.body, PREVIEW_CHARS);
            let verb = if m.to.is_some() {
                "sent you"
            } else {
                "broadcast"
            };
            let more = whole.map_or_else(String::new, |n| format!("… ({n} characters)"));
            format!(
                "{} {verb} a message{about}: {preview}{more} — ns_message `read` id {} for all of it, `wait` or `check` for what else came",
                m.from, m.id
            )
        }
        Arrival::Ref(r) => {
            meta.insert("from".into(), json!(r.from.to_string()));
            let (path, _) = cut(&r.path, PREVIEW_CHARS);
            meta.insert("path".into(), json!(path));
            let with = if r.to.is_some() { "you" } else { "everyone" };
            format!(
                "{} shared {path}:{}-{} with {with} — ns_ref `get` id {} to read it",
                r.from, r.start_line, r.end_line, r.id
            )
        }
        Arrival::Kv(c) => {
            meta.insert("from".into(), json!(c.by.to_string()));
            meta.insert("revision".into(), json!(c.revision.to_string()));
            match (&c.key, c.deleted) {
                (Some(key), false) => {
                    let (key, _) = cut(key, PREVIEW_CHARS);
                    meta.insert("key".into(), json!(key));
                    format!(
                        "{} set `{key}` (revision {}) — ns_kv `get` to read it",
                        c.by, c.revision
                    )
                }
                _ => format!(
                    "{} deleted a shared key (revision {}) — ns_kv `list` shows what is left",
                    c.by, c.revision
                ),
            }
        }
        Arrival::File(f) => {
            meta.insert("from".into(), json!(f.from.to_string()));
            let (name, _) = cut(&f.name, PREVIEW_CHARS);
            meta.insert("name".into(), json!(name));
            let with = if f.to.is_some() { "you" } else { "everyone" };
            format!(
                "{} shared the file `{name}` ({} bytes) with {with} — ns_file `read` id {} to get it",
                f.from, f.size, f.id
            )
        }
        Arrival::Update(u) => {
            meta.insert("from".into(), json!(u.by.to_string()));
            meta.insert("message".into(), json!(u.message.to_string()));
            let what = match (u.change, &u.emoji) {
                ("reaction_added", Some(emoji)) => format!("reacted {} to", cut(emoji, 16).0),
                ("reaction_removed", _) => "took back a reaction to".into(),
                ("message_read", _) => "read".into(),
                ("message_pinned", _) => "pinned".into(),
                ("message_unpinned", _) => "unpinned".into(),
                ("message_deleted", _) => "deleted".into(),
                (other, _) => other.replace('_', " "),
            };
            format!(
                "{} {what} message {} — ns_message `read` shows it now",
                u.by, u.message
            )
        }
        Arrival::Rejected(..) => return None,
    };
    Some(CustomNotification::new(
        CHANNEL_METHOD,
        Some(json!({ "content": content, "meta": Value::Object(meta) })),
    ))
}

fn missed_notification(missed: u64) -> CustomNotification {
    CustomNotification::new(
        CHANNEL_METHOD,
        Some(json!({
            "content": format!(
                "{missed} more events arrived faster than they could be announced — ns_message `wait` or `check` shows them"
            ),
            "meta": { "kind": "missed", "count": missed.to_string() },
        })),
    )
}

fn waiting_notification(waiting: usize) -> CustomNotification {
    CustomNotification::new(
        CHANNEL_METHOD,
        Some(json!({
            "content": format!(
                "{waiting} events arrived before this session could announce them — ns_message `wait` or `check` shows them"
            ),
            "meta": { "kind": "waiting", "count": waiting.to_string() },
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Message, RejectedMessage, StreamKind, VerifyError};
    use nexysync_domain::ids::{AgentName, EventId, Seq};

    fn message(body: &str, topic: Option<&str>) -> Message {
        Message {
            id: EventId::generate(),
            seq: Seq(12),
            from: AgentName::parse("alice").unwrap(),
            to: Some(AgentName::parse("bob").unwrap()),
            topic: topic.map(str::to_owned),
            body: body.to_owned(),
            reply_to: None,
            sent_at: "2025-01-01T00:00:00.000Z".into(),
            ttl_s: None,
            reactions: Vec::new(),
            pinned: false,
            read_by_me: false,
            deleted: false,
        }
    }

    #[test]
    fn a_message_is_announced_with_its_sender_id_and_topic_and_a_short_preview() {
        let m = message(&"w".repeat(5000), Some("deploy"));
        let n = channel_notification(&Arrival::Message(m.clone())).unwrap();
        assert_eq!(n.method, CHANNEL_METHOD);
        let params = n.params.unwrap();
        assert_eq!(params["meta"]["kind"], "message");
        assert_eq!(params["meta"]["from"], "alice");
        assert_eq!(params["meta"]["id"], m.id.to_string());
        assert_eq!(params["meta"]["seq"], "12");
        assert_eq!(params["meta"]["topic"], "deploy");
        let content = params["content"].as_str().unwrap();
        assert!(content.contains("5000 characters"), "{content}");
        assert!(content.len() < 600, "{} characters", content.len());
        // Claude Code takes meta values as strings.
        assert!(params["meta"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
    }

    #[test]
    fn an_event_that_failed_verification_is_not_announced() {
        let rejected = RejectedMessage {
            id: EventId::generate(),
            seq: Seq(3),
            reason: VerifyError::BadSignature(AgentName::parse("alice").unwrap()),
        };
        assert!(channel_notification(&Arrival::Rejected(StreamKind::Message, rejected)).is_none());
    }
}
