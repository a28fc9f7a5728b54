//! Message state, client side: react (a toggle), mark read, pin, unpin, delete; and the
//! verification of what the server says about a message's state.
//!
//! What can be proven is: every reaction shown is a `reaction_added` signed by a
//! registered agent, about this message, whose sealed emoji matches its blind index; a
//! deleted message is shown as deleted only with its sender's signed `message_deleted`.
//! `pinned` and `read_by_me` are the server's word (they carry no content).

use nexysync_domain::event::{
    emoji_index, fields, Actor, Draft, EventBody, MessageTarget, Reaction,
};
use nexysync_domain::ids::EventId;
use nexysync_domain::wire::{Appended, MessageEntry, StoredEvent};
use serde::Serialize;

use super::chain::ChainMemory;
use super::http::Attempts;
use super::message::{Incoming, Message, RejectedMessage};
use super::verify::{author, check_message, open_text, rfc3339, Reader, VerifyError};
use super::{Client, ClientError, Directory};

/// Longest emoji (or short emoji sequence) a reaction may carry, in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;

/// A reaction that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageReaction {
    pub emoji: String,
    pub by: nexysync_domain::ids::AgentName,
    pub at: String,
}

/// What `react` did: the toggle's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toggled {
    Added,
    /// The agent had already reacted with this emoji: the reaction was taken back.
    Removed,
}

impl Client {
    /// Reacts to message `id` with `emoji`, or takes the reaction back when this agent
    /// already reacted with it (as the server's read model says).
    pub async fn react(
        &self,
        id: EventId,
        emoji: &str,
    ) -> Result<(Toggled, Appended), ClientError> {
        let emoji = valid_emoji(emoji)?;
        let entry = self.message_entry(id).await?;
        let keys = &self.inner.keys;
        let me = &self.inner.key;
        let reaction = Reaction {
            message: id,
            emoji_ix: emoji_index(keys, id, emoji),
        };
        let mine = entry.reactions.iter().any(|r| {
            r.event.actor == Actor::Agent(me.agent.id)
                && matches!(&r.event.body, EventBody::ReactionAdded(x) if x.emoji_ix == reaction.emoji_ix)
        });
        let (toggled, draft) = if mine {
            let body = EventBody::ReactionRemoved(reaction);
            (
                Toggled::Removed,
                Draft::new(me.project.id, Actor::Agent(me.agent.id), body),
            )
        } else {
            let body = EventBody::ReactionAdded(reaction);
            let draft = Draft::new(me.project.id, Actor::Agent(me.agent.id), body).seal(
                keys,
                fields::EMOJI,
                emoji.as_bytes(),
            );
            (Toggled::Added, draft)
        };
        let appended = self.post_state(id, "reactions", draft).await?;
        Ok((toggled, appended))
    }

    /// Marks message `id` read (`message_read`).
    pub async fn ack(&self, id: EventId) -> Result<Appended, ClientError> {
        self.post_target(
            id,
            "read",
            EventBody::MessageRead(MessageTarget { message: id }),
        )
        .await
    }

    /// Pins message `id` for the project (`message_pinned`).
    pub async fn pin(&self, id: EventId) -> Result<Appended, ClientError> {
        self.post_target(
            id,
            "pin",
            EventBody::MessagePinned(MessageTarget { message: id }),
        )
        .await
    }

    /// Unpins message `id` (`message_unpinned`).
    pub async fn unpin(&self, id: EventId) -> Result<Appended, ClientError> {
        self.post_target(
            id,
            "unpin",
            EventBody::MessageUnpinned(MessageTarget { message: id }),
        )
        .await
    }

    /// Deletes message `id`, which this agent sent (`message_deleted`): its content is
    /// erased from the server's read models; the thread keeps a "deleted" node.
    pub async fn delete_message(&self, id: EventId) -> Result<Appended, ClientError> {
        self.post_target(
            id,
            "delete",
            EventBody::MessageDeleted(MessageTarget { message: id }),
        )
        .await
    }

    async fn post_target(
        &self,
        id: EventId,
        path: &str,
        body: EventBody,
    ) -> Result<Appended, ClientError> {
        let me = &self.inner.key;
        let draft = Draft::new(me.project.id, Actor::Agent(me.agent.id), body);
        self.post_state(id, path, draft).await
    }

    async fn post_state(
        &self,
        id: EventId,
        path: &str,
        draft: Draft,
    ) -> Result<Appended, ClientError> {
        let envelope = draft.sign(&self.inner.key.signing_key);
        tracing::debug!(event = %envelope.id, kind = envelope.body.kind().as_str(), message = %id, "updating a message");
        let appended: Appended = self
            .inner
            .http
            .post(&format!("v1/messages/{id}/{path}"), &envelope)
            .await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    /// `GET /v1/messages/{id}` as served, not verified yet.
    pub(crate) async fn message_entry(&self, id: EventId) -> Result<MessageEntry, ClientError> {
        self.inner
            .http
            .get(
                &format!("v1/messages/{id}"),
                &self.min_seq(),
                Attempts::Retry,
            )
            .await
    }

    /// Verifies a served message with its state. An unknown agent (the sender, the
    /// recipient or a reactor) triggers one fresh fetch of the agents.
    pub async fn verify_entry(&self, entry: &MessageEntry) -> Result<Incoming, ClientError> {
        let directory = self.directory().await?;
        let (mut outcome, stale) = self.verify_entry_with(&directory, entry);
        if stale {
            let fresh = self.agents_newer_than(&directory).await?;
            outcome = self.verify_entry_with(&fresh, entry).0;
        }
        Ok(match outcome {
            Ok(message) => {
                self.note_known(message.seq);
                Incoming::Message(message)
            }
            Err(rejected) => {
                tracing::warn!(event = %rejected.id, seq = %rejected.seq, reason = %rejected.reason, "message failed verification");
                Incoming::Rejected(rejected)
            }
        })
    }

    /// The verdict, and whether a fresher list of agents could change it.
    fn verify_entry_with(
        &self,
        directory: &Directory,
        entry: &MessageEntry,
    ) -> (Result<Message, RejectedMessage>, bool) {
        let reader = Reader {
            project: self.inner.key.project.id,
            keys: &self.inner.keys,
        };
        let checked = if entry.deleted {
            check_deleted(reader, directory, &mut self.chain(), entry)
        } else {
            check_message(reader, directory, &mut self.chain(), &entry.stored())
        };
        let mut message = match checked {
            Ok(message) => message,
            Err(reason) => {
                let stale = reason.may_be_stale_directory();
                let rejected = RejectedMessage {
                    id: entry.event.id,
                    seq: entry.seq,
                    reason,
                };
                return (Err(rejected), stale);
            }
        };
        let mut stale = false;
        for stored in &entry.reactions {
            match check_reaction(reader, directory, entry.event.id, stored) {
                Ok(reaction) => message.reactions.push(reaction),
                Err(reason) => {
                    stale |= reason.may_be_stale_directory();
                    tracing::warn!(event = %stored.event.id, %reason, "reaction failed verification; not shown");
                }
            }
        }
        message.pinned = entry.pinned;
        message.read_by_me = entry.read_by_me;
        (Ok(message), stale)
    }
}

/// An emoji fit for a reaction: trimmed, not empty, at most [`MAX_EMOJI_BYTES`], no
/// whitespace or control characters inside.
pub fn valid_emoji(emoji: &str) -> Result<&str, ClientError> {
    let emoji = emoji.trim();
    let reason = if emoji.is_empty() {
        "it is empty"
    } else if emoji.len() > MAX_EMOJI_BYTES {
        "it is longer than 64 bytes (a reaction is one emoji or a short label, not a message)"
    } else if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(emoji);
    };
    Err(ClientError::InvalidEmoji { reason })
}

/// A deleted message: its content is gone, so its own signature no longer verifies; its
/// sender's signed `message_deleted` is what shows it existed and who deleted it.
fn check_deleted(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    entry: &MessageEntry,
) -> Result<Message, VerifyError> {
    let event = &entry.event;
    let EventBody::MessageSent(sent) = &event.body else {
        return Err(VerifyError::NotAMessage {
            kind: event.body.kind().as_str(),
        });
    };
    if event.project != reader.project {
        return Err(VerifyError::WrongProject {
            expected: reader.project,
            found: event.project,
        });
    }
    let deletion = entry
        .deletion
        .as_ref()
        .ok_or(VerifyError::DeletionUnproven)?;
    let deleter = author(reader, directory, &deletion.event)?;
    let names_this = matches!(
        &deletion.event.body,
        EventBody::MessageDeleted(target) if target.message == event.id
    );
    if !names_this || deletion.event.actor != event.actor {
        return Err(VerifyError::DeletionUnproven);
    }
    chain.observe(deletion.seq, &deletion.event)?;
    Ok(Message {
        id: event.id,
        seq: entry.seq,
        from: deleter.name.clone(),
        to: directory.recipient_name(sent.to)?,
        topic: None,
        body: String::new(),
        reply_to: sent.reply_to,
        sent_at: rfc3339(event.at),
        ttl_s: sent.ttl_s,
        reactions: Vec::new(),
        pinned: false,
        read_by_me: false,
        deleted: true,
    })
}

fn check_reaction(
    reader: Reader<'_>,
    directory: &Directory,
    message: EventId,
    stored: &StoredEvent,
) -> Result<MessageReaction, VerifyError> {
    let event = &stored.event;
    let EventBody::ReactionAdded(reaction) = &event.body else {
        return Err(VerifyError::NotAReaction {
            kind: event.body.kind().as_str(),
        });
    };
    if reaction.message != message {
        return Err(VerifyError::ReactionElsewhere);
    }
    let by = author(reader, directory, event)?;
    let emoji = open_text(reader, stored, fields::EMOJI)?
        .ok_or(VerifyError::MissingField(fields::EMOJI))?;
    if emoji_index(reader.keys, message, &emoji) != reaction.emoji_ix {
        return Err(VerifyError::EmojiIndexMismatch);
    }
    Ok(MessageReaction {
        emoji,
        by: by.name.clone(),
        at: rfc3339(event.at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::{Agent, Project, Sent};
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::wire::AgentList;

    struct Fixture {
        project: Project,
        alice: Agent,
        bob: Agent,
        directory: Directory,
        chain: ChainMemory,
    }

    impl Fixture {
        fn new() -> Self {
            let project = Project::new();
            let alice = project.agent("alice");
            let bob = project.agent("bob");
            let mut chain = ChainMemory::new();
            let list = AgentList {
                agents: vec![project.agent_info(&alice), project.agent_info(&bob)],
            };
            let directory =
                Directory::verify(project.id, &project.owner.public_key(), &list, &mut chain);
            Self {
                project,
                alice,
                bob,
                directory,
                chain,
            }
        }

        fn reader(&self) -> Reader<'_> {
            Reader {
                project: self.project.id,
                keys: &self.project.keys,
            }
        }

        fn check_deleted(&mut self, entry: &MessageEntry) -> Result<Message, VerifyError> {
            let reader = Reader {
                project: self.project.id,
                keys: &self.project.keys,
            };
            check_deleted(reader, &self.directory, &mut self.chain, entry)
        }

        /// Alice's message as served after a deletion signed by `deleter`'s key.
        fn deleted_entry(&self, by: &Agent, signer: &SigningKey) -> MessageEntry {
            let mut stored = self
                .project
                .message(&self.alice, Sent::broadcast(), "secret");
            stored.event.sealed.clear();
            let deletion = self.project.append(
                Draft::new(
                    self.project.id,
                    Actor::Agent(by.id),
                    EventBody::MessageDeleted(MessageTarget {
                        message: stored.event.id,
                    }),
                )
                .sign(signer),
            );
            MessageEntry {
                seq: stored.seq,
                event: stored.event,
                reactions: Vec::new(),
                pinned: false,
                read_by_me: false,
                deleted: true,
                deletion: Some(deletion),
            }
        }

        fn reaction(&self, by: &Agent, message: EventId, emoji: &str, ix_of: &str) -> StoredEvent {
            self.project.append(
                Draft::new(
                    self.project.id,
                    Actor::Agent(by.id),
                    EventBody::ReactionAdded(Reaction {
                        message,
                        emoji_ix: emoji_index(&self.project.keys, message, ix_of),
                    }),
                )
                .seal(&self.project.keys, fields::EMOJI, emoji.as_bytes())
                .sign(&by.key),
            )
        }
    }

    #[test]
    fn a_deletion_signed_by_the_sender_shows_an_empty_deleted_node() {
        let mut f = Fixture::new();
        let entry = f.deleted_entry(&f.alice, &f.alice.key);
        let message = f.check_deleted(&entry).unwrap();
        assert!(message.deleted);
        assert_eq!(message.from, f.alice.name);
        assert_eq!((message.body.as_str(), message.topic), ("", None));
    }

    #[test]
    fn a_deletion_the_sender_did_not_sign_is_refused() {
        let mut f = Fixture::new();
        let by_bob = f.deleted_entry(&f.bob, &f.bob.key);
        assert_eq!(f.check_deleted(&by_bob), Err(VerifyError::DeletionUnproven));
        let forged = f.deleted_entry(&f.alice, &SigningKey::generate());
        assert_eq!(
            f.check_deleted(&forged),
            Err(VerifyError::BadSignature(f.alice.name.clone()))
        );
        let mut unproven = f.deleted_entry(&f.alice, &f.alice.key);
        unproven.deletion = None;
        assert_eq!(
            f.check_deleted(&unproven),
            Err(VerifyError::DeletionUnproven)
        );
    }

    #[test]
    fn a_reaction_opens_only_when_signed_about_this_message_and_matching_its_index() {
        let f = Fixture::new();
        let message = EventId::generate();
        let genuine = f.reaction(&f.bob, message, "👍", "👍");
        let shown = check_reaction(f.reader(), &f.directory, message, &genuine).unwrap();
        assert_eq!((shown.emoji.as_str(), &shown.by), ("👍", &f.bob.name));

        let swapped = f.reaction(&f.bob, message, "👎", "👍");
        assert_eq!(
            check_reaction(f.reader(), &f.directory, message, &swapped),
            Err(VerifyError::EmojiIndexMismatch)
        );
        let elsewhere = f.reaction(&f.bob, EventId::generate(), "👍", "👍");
        assert_eq!(
            check_reaction(f.reader(), &f.directory, message, &elsewhere),
            Err(VerifyError::ReactionElsewhere)
        );
        let mut forged = f.reaction(&f.bob, message, "👍", "👍");
        forged.event.sig = f.reaction(&f.alice, message, "👍", "👍").event.sig;
        assert_eq!(
            check_reaction(f.reader(), &f.directory, message, &forged),
            Err(VerifyError::BadSignature(f.bob.name.clone()))
        );
    }

    #[test]
    fn an_emoji_is_one_short_token() {
        assert_eq!(valid_emoji(" 👍 ").unwrap(), "👍");
        assert_eq!(valid_emoji("+1").unwrap(), "+1");
        for bad in [
            "",
            "   ",
            "two words",
            "a\u{7}",
            &"x".repeat(MAX_EMOJI_BYTES + 1),
        ] {
            assert!(
                matches!(valid_emoji(bad), Err(ClientError::InvalidEmoji { .. })),
                "{bad:?}"
            );
        }
    }
}
