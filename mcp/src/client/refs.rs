//! Shared code references, client side: path, snippet, note, language and commit are
//! sealed before they leave; line numbers travel in the clear. Every reference read back
//! is verified (a `ref_shared` of this project, signed by a registered agent, consistent
//! with the hash chain seen so far, its recipient a registered agent) before it is opened.

use nexysync_domain::decide::MAX_SEALED_BYTES;
use nexysync_domain::event::{fields, Actor, Draft, EventBody, RefShared, MAX_REF_LINES};
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{Appended, RefPage, StoredEvent};
use serde::Serialize;

use super::http::Attempts;
use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory, SEAL_OVERHEAD};

/// A code reference to share. `to` absent: every agent of the project.
#[derive(Debug, Clone, Default)]
pub struct NewRef {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub snippet: String,
    pub language: Option<String>,
    /// A commit or branch the lines refer to.
    pub commit: Option<String>,
    pub note: Option<String>,
    pub to: Option<AgentName>,
}

/// A verified, decrypted code reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedRef {
    pub id: EventId,
    pub seq: Seq,
    pub from: AgentName,
    /// The recipient; absent when shared with everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentName>,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub snippet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub shared_at: String,
}

/// A page of references, oldest first, each verified or rejected.
#[derive(Debug, Clone)]
pub struct RefListPage {
    pub items: Vec<Result<SharedRef, RejectedMessage>>,
    /// Pass back as `since` for the next page.
    pub next_since: Seq,
    pub has_more: bool,
}

impl Client {
    /// Seals, signs and sends a `ref_shared`. The line range is checked here first
    /// (`1 <= start <= end`, at most [`MAX_REF_LINES`] lines), as the server would.
    pub async fn share_ref(&self, new: NewRef) -> Result<Appended, ClientError> {
        let meta = RefShared {
            to: None,
            start_line: new.start_line,
            end_line: new.end_line,
        };
        if !meta.lines_are_valid() {
            return Err(ClientError::InvalidLineRange {
                start_line: new.start_line,
                end_line: new.end_line,
                max: MAX_REF_LINES,
            });
        }
        let optional = [
            (fields::LANGUAGE, &new.language),
            (fields::COMMIT, &new.commit),
            (fields::NOTE, &new.note),
        ];
        let size = new.path.len()
            + new.snippet.len()
            + 2 * SEAL_OVERHEAD
            + optional
                .iter()
                .filter_map(|(_, v)| v.as_ref())
                .map(|v| v.len() + SEAL_OVERHEAD)
                .sum::<usize>();
        if size > MAX_SEALED_BYTES {
            return Err(ClientError::ContentTooLarge {
                size,
                limit: MAX_SEALED_BYTES,
            });
        }
        let to = match &new.to {
            Some(name) => Some(self.resolve(name).await?),
            None => None,
        };
        let me = &self.inner.key;
        let keys = &self.inner.keys;
        let mut draft = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::RefShared(RefShared { to, ..meta }),
        )
        .seal(keys, fields::PATH, new.path.as_bytes())
        .seal(keys, fields::SNIPPET, new.snippet.as_bytes());
        for (field, value) in optional {
            if let Some(value) = value {
                draft = draft.seal(keys, field, value.as_bytes());
            }
        }
        let envelope = draft.sign(&me.signing_key);
        tracing::debug!(event = %envelope.id, to = ?new.to, "sharing a code reference");
        let appended: Appended = self.inner.http.post("v1/refs", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    /// `GET /v1/refs`: references this agent may read after `since`, oldest first, each
    /// verified and opened.
    pub async fn refs(&self, since: Seq, limit: u32) -> Result<RefListPage, ClientError> {
        let mut query = vec![
            ("since_seq", since.0.to_string()),
            ("limit", limit.to_string()),
        ];
        query.extend(self.min_seq());
        let page: RefPage = self
            .inner
            .http
            .get("v1/refs", &query, Attempts::Retry)
            .await?;
        let mut items = Vec::with_capacity(page.refs.len());
        for stored in &page.refs {
            items.push(self.verify_ref(stored).await?);
        }
        Ok(RefListPage {
            items,
            next_since: page.next_since_seq,
            has_more: page.has_more,
        })
    }

    /// `GET /v1/refs/{id}`, verified: a reference that fails verification is an error.
    pub async fn get_ref(&self, id: EventId) -> Result<SharedRef, ClientError> {
        let stored: StoredEvent = self
            .inner
            .http
            .get(&format!("v1/refs/{id}"), &self.min_seq(), Attempts::Retry)
            .await?;
        self.verify_ref(&stored).await?.map_err(ClientError::from)
    }

    /// Verifies one served reference, fetching the agents again when its sender or
    /// recipient is unknown (they may have joined since). The outer error means it could
    /// not be judged.
    pub(super) async fn verify_ref(
        &self,
        stored: &StoredEvent,
    ) -> Result<Result<SharedRef, RejectedMessage>, ClientError> {
        self.verify_kind(stored, "code reference", check_ref).await
    }
}

fn check_ref(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    stored: &StoredEvent,
) -> Result<SharedRef, VerifyError> {
    let event = &stored.event;
    let EventBody::RefShared(shared) = &event.body else {
        return Err(VerifyError::NotARef {
            kind: event.body.kind().as_str(),
        });
    };
    let sender = author(reader, directory, event)?;
    chain.observe(stored.seq, event)?;
    let to = directory.recipient_name(shared.to)?;
    let required = |field: &'static str| {
        open_text(reader, stored, field)?.ok_or(VerifyError::MissingField(field))
    };
    Ok(SharedRef {
        id: event.id,
        seq: stored.seq,
        from: sender.name.clone(),
        to,
        path: required(fields::PATH)?,
        start_line: shared.start_line,
        end_line: shared.end_line,
        snippet: required(fields::SNIPPET)?,
        language: open_text(reader, stored, fields::LANGUAGE)?,
        commit: open_text(reader, stored, fields::COMMIT)?,
        note: open_text(reader, stored, fields::NOTE)?,
        shared_at: rfc3339(event.at),
    })
}
