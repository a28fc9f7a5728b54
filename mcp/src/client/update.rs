//! Changes to messages pushed by the stream (`message_update`): a reaction added or taken
//! back, a read mark, a pin or unpin, a deletion. Each is verified before an agent sees it:
//! signed by a registered agent of this project, and for a reaction, its sealed emoji
//! matching its blind index.

use nexysync_domain::event::{emoji_index, fields, EventBody};
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::StoredEvent;
use serde::Serialize;

use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{Client, ClientError, Directory};

/// One verified change to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageUpdate {
    pub id: EventId,
    pub seq: Seq,
    /// The message it changes.
    pub message: EventId,
    pub by: AgentName,
    /// The event's kind: `reaction_added`, `reaction_removed`, `message_read`,
    /// `message_pinned`, `message_unpinned` or `message_deleted`.
    pub change: &'static str,
    /// The emoji of a `reaction_added`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    pub at: String,
}

impl Client {
    /// Verifies a pushed `message_update`. An unknown actor triggers one fresh fetch of
    /// the agents.
    pub(super) async fn verify_update(
        &self,
        stored: &StoredEvent,
    ) -> Result<Result<MessageUpdate, RejectedMessage>, ClientError> {
        self.verify_kind(stored, "message update", |reader, directory, _, stored| {
            check_update(reader, directory, stored)
        })
        .await
    }
}

fn check_update(
    reader: Reader<'_>,
    directory: &Directory,
    stored: &StoredEvent,
) -> Result<MessageUpdate, VerifyError> {
    let event = &stored.event;
    let kind = event.body.kind().as_str();
    let message = event
        .body
        .target_message()
        .ok_or(VerifyError::NotAMessageUpdate { kind })?;
    let by = author(reader, directory, event)?;
    let emoji = match &event.body {
        EventBody::ReactionAdded(reaction) => {
            let emoji = open_text(reader, stored, fields::EMOJI)?
                .ok_or(VerifyError::MissingField(fields::EMOJI))?;
            if emoji_index(reader.keys, message, &emoji) != reaction.emoji_ix {
                return Err(VerifyError::EmojiIndexMismatch);
            }
            Some(emoji)
        }
        _ => None,
    };
    Ok(MessageUpdate {
        id: event.id,
        seq: stored.seq,
        message,
        by: by.name.clone(),
        change: kind,
        emoji,
        at: rfc3339(event.at),
    })
}
