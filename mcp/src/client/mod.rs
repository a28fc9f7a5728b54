//! The Rust client of the NexySync API (docs/api.md): seals and signs what it sends,
//! verifies and opens what it receives, and keeps a live stream of incoming messages.
//!
//! - [`Client`]: one agent's connection, built from its [`KeyFile`]; HTTP calls.
//! - [`MessageStream`]: the SSE subscription with reconnects, a buffer and a cursor per
//!   [`StreamKind`]; it hands over [`Arrival`]s (messages, refs, KV changes).
//! - [`Message`] / [`RejectedMessage`] / [`Incoming`]: what reaches the agent.
//! - [`Directory`]: the agents whose owner-signed registrations verified.
//! - [`KvValue`]: the shared key-value store (`kv_set`/`kv_get`/`kv_delete`/`kv_list`),
//!   sealed, compare-and-set by revision, verified on read.
//! - [`Me`] / [`AgentMeta`]: `whoami` and the agents with verified profiles and
//!   presence (`me`/`agents_meta`/`presence`/`quota`/`update_profile`).
//! - [`SharedRef`]: shared code references (`share_ref`/`refs`/`get_ref`), every textual
//!   field sealed, verified on read.
//! - Message state (`react`, `ack`, `pin`, `unpin`, `delete_message`): signed events on a
//!   message; reactions and deletions verified on read ([`MessageReaction`]).
//! - [`SharedFile`]: shared files (`upload_file`/`files`/`download_file`/`delete_file`),
//!   encrypted in chunks and streamed to and from the CDN, name and media type sealed.
//!
//! No key, no send: a [`Client`] exists only with a key file, and every body it sends is
//! sealed under the project key first.

mod arrival;
mod chain;
mod directory;
mod error;
mod files;
mod http;
mod kv;
mod message;
mod meta;
mod refs;
mod state;
mod stream;
#[cfg(test)]
pub(crate) mod test_events;
mod update;
mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nexysync_domain::crypto::ContentKeys;
use nexysync_domain::decide::{MAX_SEALED_BYTES, MAX_TTL_S};
use nexysync_domain::event::{fields, Actor, Draft, EventBody, MessageSent};
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{AgentList, Appended, MessagePage, StoredEvent, Thread, WhoAmI};
use reqwest::Url;

use crate::key_file::KeyFile;
use http::{Attempts, Http};

pub use arrival::{Arrival, Cursors, KvChange, StreamKind};
pub use chain::{ChainError, ChainMemory};
pub use directory::{Directory, RegistrationError, VerifiedAgent};
pub use error::{ApiError, ClientError};
pub use files::{FileListPage, FileSource, NewFile, SharedFile};
pub use kv::{KvListPage, KvValue};
pub use message::{InboxPage, Incoming, Message, NewMessage, RejectedMessage, ThreadPage};
pub use meta::{AgentMeta, Me, Profile};
pub use refs::{NewRef, RefListPage, SharedRef};
pub use state::{valid_emoji, MessageReaction, Toggled, MAX_EMOJI_BYTES};
pub use stream::{Arrivals, MessageStream, Pending, StreamOptions, StreamStatus};
pub use update::MessageUpdate;
pub use verify::{verify_message, Reader, VerifyError};

/// The AES-GCM tag each sealed field adds to its plaintext.
const SEAL_OVERHEAD: usize = 16;

/// One agent's client. Cheap to clone; clones share the agents cache and chain memory.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    key: KeyFile,
    keys: ContentKeys,
    http: Http,
    directory: tokio::sync::Mutex<Option<Arc<Directory>>>,
    chain: Mutex<ChainMemory>,
    /// The highest log sequence this client knows to exist: what it wrote, and every
    /// message it verified (the stream pushes messages before the server's read models
    /// have applied them). Reads send it as `min_seq`, so what the agent wrote or was
    /// shown is there when it reads the inbox, the message or its thread.
    known_seq: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.http.base().as_str())
            .field("project", &self.inner.key.project.id)
            .field("agent", &self.inner.key.agent.name)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the agent of `key`. Fails only on an unusable server URL; nothing is
    /// sent until a method is called.
    pub fn new(key: KeyFile) -> Result<Client, ClientError> {
        let base = key
            .server_url()
            .map_err(|reason| ClientError::InvalidServerUrl {
                server: key.server.clone(),
                reason,
            })?;
        let http = Http::new(base, key.token.clone())?;
        Ok(Client {
            inner: Arc::new(Inner {
                keys: key.project_key.content_keys(),
                key,
                http,
                directory: tokio::sync::Mutex::new(None),
                chain: Mutex::new(ChainMemory::new()),
                known_seq: AtomicU64::new(0),
            }),
        })
    }

    pub fn key_file(&self) -> &KeyFile {
        &self.inner.key
    }

    /// The API base URL (always ending in `/`).
    pub fn server_url(&self) -> &Url {
        self.inner.http.base()
    }

    /// `GET /v1/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.inner.http.get("v1/whoami", &[], Attempts::Retry).await
    }

    /// One quick `GET /v1/whoami` without retries, to tell whether the server answers.
    pub async fn probe(&self) -> Result<WhoAmI, ClientError> {
        self.inner.http.get("v1/whoami", &[], Attempts::Probe).await
    }

    /// Checks that the server knows this token as the key file's agent, and that the
    /// owner registered this agent with the key file's signing key.
    pub async fn verify_identity(&self) -> Result<WhoAmI, ClientError> {
        let me = self.whoami().await?;
        let key = &self.inner.key;
        if me.project != key.project.id || me.agent != key.agent.id {
            return Err(ClientError::IdentityMismatch {
                expected_project: key.project.id,
                expected_agent: key.agent.id,
                found_project: me.project,
                found_agent: me.agent,
            });
        }
        let directory = self.agents().await?;
        let reason = match directory.by_id(key.agent.id) {
            Some(agent) if agent.signing_key == key.signing_key.public_key() => return Ok(me),
            Some(_) => "its registered signing key is not the key file's".to_owned(),
            None => match directory.rejection(key.agent.id) {
                Some((_, reason)) => reason.to_string(),
                None => "the server does not list it".to_owned(),
            },
        };
        Err(ClientError::NotRegistered {
            agent: key.agent.name.clone(),
            reason,
        })
    }

    /// `GET /v1/agents`, every registration verified against the owner key; refreshes
    /// the cache the other calls use.
    pub async fn agents(&self) -> Result<Arc<Directory>, ClientError> {
        let mut cached = self.inner.directory.lock().await;
        self.refresh_directory(&mut cached).await
    }

    /// The cached verified agents, fetched on first use.
    pub async fn directory(&self) -> Result<Arc<Directory>, ClientError> {
        let mut cached = self.inner.directory.lock().await;
        match cached.as_ref() {
            Some(directory) => Ok(directory.clone()),
            None => self.refresh_directory(&mut cached).await,
        }
    }

    async fn refresh_directory(
        &self,
        cached: &mut Option<Arc<Directory>>,
    ) -> Result<Arc<Directory>, ClientError> {
        let list: AgentList = self
            .inner
            .http
            .get("v1/agents", &self.min_seq(), Attempts::Retry)
            .await?;
        let key = &self.inner.key;
        let directory = Arc::new(Directory::verify(
            key.project.id,
            &key.project.owner_key,
            &list,
            &mut self.chain(),
        ));
        *cached = Some(directory.clone());
        Ok(directory)
    }

    /// Seals, signs and sends a message. A transient failure is retried with the same
    /// signed event, which the server deduplicates by its id.
    pub async fn send(&self, message: NewMessage) -> Result<Appended, ClientError> {
        let size = message.body.len()
            + SEAL_OVERHEAD
            + message
                .topic
                .as_ref()
                .map_or(0, |topic| topic.len() + SEAL_OVERHEAD);
        if size > MAX_SEALED_BYTES {
            return Err(ClientError::ContentTooLarge {
                size,
                limit: MAX_SEALED_BYTES,
            });
        }
        if let Some(ttl_s) = message.ttl_s {
            if ttl_s == 0 || ttl_s > MAX_TTL_S {
                return Err(ClientError::InvalidTtl {
                    ttl_s,
                    max: MAX_TTL_S,
                });
            }
            // Asked now, not cached: the owner may change the policy at any time. Only a
            // message naming its TTL pays the round trip.
            if let Some(max_ttl_s) = self.whoami().await?.retention.max_ttl_s {
                if ttl_s > max_ttl_s {
                    return Err(ClientError::TtlAboveProjectMaximum { ttl_s, max_ttl_s });
                }
            }
        }
        let to = match &message.to {
            Some(name) => Some(self.resolve(name).await?),
            None => None,
        };
        let key = &self.inner.key;
        let keys = &self.inner.keys;
        let meta = MessageSent {
            to,
            reply_to: message.reply_to,
            ttl_s: message.ttl_s,
            topic_ix: message
                .topic
                .as_deref()
                .map(|topic| keys.blind_index("topic", topic)),
        };
        let mut draft = Draft::new(
            key.project.id,
            Actor::Agent(key.agent.id),
            EventBody::MessageSent(meta),
        )
        .seal(keys, fields::BODY, message.body.as_bytes());
        if let Some(topic) = &message.topic {
            draft = draft.seal(keys, fields::TOPIC, topic.as_bytes());
        }
        let envelope = draft.sign(&key.signing_key);
        tracing::debug!(event = %envelope.id, to = ?message.to, "sending message");
        let appended: Appended = self.inner.http.post("v1/messages", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    /// The agent id for `name`, fetching the agents again if the name is not known yet.
    async fn resolve(
        &self,
        name: &AgentName,
    ) -> Result<nexysync_domain::ids::AgentId, ClientError> {
        let directory = self.directory().await?;
        if let Some(agent) = directory.by_name(name) {
            return Ok(agent.id);
        }
        let directory = self.agents().await?;
        directory
            .by_name(name)
            .map(|agent| agent.id)
            .ok_or_else(|| ClientError::UnknownAgent {
                name: name.clone(),
                known: directory.names(),
            })
    }

    /// `GET /v1/messages`: direct messages to this agent and broadcasts by others after
    /// `since`, oldest first, each verified.
    pub async fn inbox(&self, since: Seq, limit: u32) -> Result<InboxPage, ClientError> {
        self.inbox_filtered(since, limit, false).await
    }

    /// [`Client::inbox`]; with `unread_only`, only messages this agent has not marked read.
    pub async fn inbox_filtered(
        &self,
        since: Seq,
        limit: u32,
        unread_only: bool,
    ) -> Result<InboxPage, ClientError> {
        let mut query = vec![
            ("since_seq", since.0.to_string()),
            ("limit", limit.to_string()),
        ];
        if unread_only {
            query.push(("unread_only", "true".into()));
        }
        query.extend(self.min_seq());
        let page: MessagePage = self
            .inner
            .http
            .get("v1/messages", &query, Attempts::Retry)
            .await?;
        let mut items = Vec::with_capacity(page.messages.len());
        for entry in &page.messages {
            items.push(self.verify_entry(entry).await?);
        }
        Ok(InboxPage {
            items,
            next_since: page.next_since_seq,
            has_more: page.has_more,
        })
    }

    /// `GET /v1/messages/{id}`, verified: a message that fails verification is an error.
    pub async fn message(&self, id: EventId) -> Result<Message, ClientError> {
        let entry = self.message_entry(id).await?;
        match self.verify_entry(&entry).await? {
            Incoming::Message(message) => Ok(message),
            Incoming::Rejected(rejected) => Err(rejected.into()),
        }
    }

    /// `GET /v1/messages/{id}/thread`: the conversation's messages after `after`, each
    /// verified, read a page at a time (the server answers at most 1,000 a read) until
    /// `want` are in hand or the thread ends.
    pub async fn thread(
        &self,
        id: EventId,
        after: Seq,
        want: usize,
    ) -> Result<ThreadPage, ClientError> {
        let path = format!("v1/messages/{id}/thread");
        let mut query = self.min_seq();
        let mut since = after;
        let mut items = Vec::new();
        loop {
            query.retain(|(name, _)| *name != "since_seq");
            query.push(("since_seq", since.0.to_string()));
            let thread: Thread = self.inner.http.get(&path, &query, Attempts::Retry).await?;
            for entry in &thread.messages {
                items.push(self.verify_entry(entry).await?);
            }
            let read_on = thread
                .messages
                .last()
                .map(|entry| entry.seq)
                .filter(|_| thread.has_more && items.len() < want);
            let Some(last) = read_on else {
                return Ok(ThreadPage {
                    root: thread.root,
                    items,
                    expired: thread.expired,
                    has_more: thread.has_more,
                });
            };
            since = last;
        }
    }

    /// Verifies and opens a served event. An unknown sender or recipient triggers a
    /// fresh fetch of the agents (someone may have joined since). An error means the
    /// event could not be judged (the agents could not be fetched), not that it is bad.
    pub async fn verify(&self, stored: &StoredEvent) -> Result<Incoming, ClientError> {
        let directory = self.directory().await?;
        let mut outcome = self.verify_with(&directory, stored);
        if matches!(&outcome, Err(r) if r.reason.may_be_stale_directory()) {
            let fresh = self.agents_newer_than(&directory).await?;
            outcome = self.verify_with(&fresh, stored);
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

    /// A list of agents fetched after `seen`: the cached one if another task already
    /// refreshed it meanwhile, else a new fetch. Concurrent callers share one fetch.
    async fn agents_newer_than(
        &self,
        seen: &Arc<Directory>,
    ) -> Result<Arc<Directory>, ClientError> {
        let mut cached = self.inner.directory.lock().await;
        match cached.as_ref() {
            Some(current) if !Arc::ptr_eq(current, seen) => Ok(current.clone()),
            _ => self.refresh_directory(&mut cached).await,
        }
    }

    fn verify_with(
        &self,
        directory: &Directory,
        stored: &StoredEvent,
    ) -> Result<Message, RejectedMessage> {
        let reader = Reader {
            project: self.inner.key.project.id,
            keys: &self.inner.keys,
        };
        verify_message(reader, directory, &mut self.chain(), stored)
    }

    /// Verifies a pushed or listed event of another kind than a message with `check`
    /// (given the reader, the agents, the chain memory and the event), once more against a
    /// fresh list of agents when the verdict may come from a stale one. A rejection is
    /// logged as `what` and answered, never opened.
    pub(crate) async fn verify_kind<T>(
        &self,
        stored: &StoredEvent,
        what: &'static str,
        check: impl Fn(Reader<'_>, &Directory, &mut ChainMemory, &StoredEvent) -> Result<T, VerifyError>,
    ) -> Result<Result<T, RejectedMessage>, ClientError> {
        let judge = |directory: &Directory| {
            let reader = Reader {
                project: self.inner.key.project.id,
                keys: &self.inner.keys,
            };
            check(reader, directory, &mut self.chain(), stored).map_err(|reason| RejectedMessage {
                id: stored.event.id,
                seq: stored.seq,
                reason,
            })
        };
        let directory = self.directory().await?;
        let mut outcome = judge(&directory);
        if matches!(&outcome, Err(r) if r.reason.may_be_stale_directory()) {
            outcome = judge(&*self.agents().await?);
        }
        match &outcome {
            Ok(_) => self.note_known(stored.seq),
            Err(rejected) => {
                tracing::warn!(event = %rejected.id, seq = %rejected.seq, reason = %rejected.reason, "{what} failed verification");
            }
        }
        Ok(outcome)
    }

    fn chain(&self) -> std::sync::MutexGuard<'_, ChainMemory> {
        // The memory stays consistent even if a holder panicked: every update is a
        // single insert after all checks passed.
        self.inner
            .chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the log holds an event at `seq`: one this client wrote, or a message
    /// that passed verification and so may be shown to the agent. Rejected events do not
    /// count; nothing is read on their account.
    fn note_known(&self, seq: Seq) {
        self.inner.known_seq.fetch_max(seq.0, Ordering::Relaxed);
    }

    fn min_seq(&self) -> Vec<(&'static str, String)> {
        match self.inner.known_seq.load(Ordering::Relaxed) {
            0 => Vec::new(),
            seq => vec![("min_seq", seq.to_string())],
        }
    }

    pub(crate) fn http(&self) -> &Http {
        &self.inner.http
    }
}
