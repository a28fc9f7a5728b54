//! NexySync's log: the JetStream stream that is the source of truth.
//!
//! # Layout
//! - [`EventLog::connect`]: checks the server has JetStream, creates or adopts the stream;
//!   [`EventLog::open`] only adopts one (readers that must change nothing).
//! - `names`: stream and subject names under a configurable prefix.
//! - `append`: conditional, idempotent appends that set each event's chain link.
//! - `read`: ordered reads of the whole log or of one project, from any sequence;
//!   `read_ahead`: in batches, by a task of their own ahead of the reader.
//! - [`PresenceLog`]: the separate, short-retention presence stream (ADR 0006).
//!
//! # Invariants
//! - One stream for every project's audited events; one subject per project, so a
//!   project's history is one ordered subject.
//! - Every append carries `Nats-Msg-Id` = event id (a retry never makes a second event) and
//!   `Nats-Expected-Last-Subject-Sequence` (no event is chained onto a stale head).
//! - Works on nats-server 2.9 (Debian) and current releases.

mod append;
mod erase;
mod error;
mod names;
mod presence;
mod read;
mod read_ahead;
mod streams;

pub use append::{AppendOutcome, HEADER_EVENT_KIND};
pub use erase::MAX_TOMBSTONE_BYTES;
pub use error::LogError;
pub use names::{Prefix, PrefixError};
pub use presence::{PresenceLog, PresenceStream, StoredPresence, PRESENCE_RETENTION};
pub use read::{EventStream, RawEvent};
pub use read_ahead::{Batch, Batches, ReadAhead};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use nexysync_domain::ids::{EventId, ProjectId};
use tokio::sync::Mutex;

/// Largest event accepted by the stream (the API limits bodies well below this).
const MAX_EVENT_BYTES: i32 = 1024 * 1024;
/// How long JetStream remembers event ids for deduplication.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Slack for clocks and slow first attempts when relying on that window.
const DUPLICATE_WINDOW_SLACK: Duration = Duration::from_secs(2 * 60);
/// How long after an event was made the log is relied on to catch its retries.
const RELIED_ON_MS: u64 = DUPLICATE_WINDOW
    .saturating_sub(DUPLICATE_WINDOW_SLACK)
    .as_millis() as u64;

/// Whether the log's own deduplication is certain to catch a retry of `event`, received
/// at `now_ms`: the event was made (its UUIDv7 time) well inside the window, and not in
/// the future (a client clock ahead of ours could otherwise outlast the window). When
/// this is false the caller must look for the event id itself before appending.
pub fn deduplicates(event: EventId, now_ms: u64) -> bool {
    let made = event.unix_millis();
    made <= now_ms + 1_000 && now_ms.saturating_sub(made) < RELIED_ON_MS
}

/// Whether `event` was made (its UUIDv7 time) so long before `now_ms` that the log's
/// deduplication may have forgotten it: the past side of [`deduplicates`]. A caller has
/// then looked the id up itself, and an event it did not find is not a retry.
pub fn made_before_the_window(event: EventId, now_ms: u64) -> bool {
    now_ms.saturating_sub(event.unix_millis()) >= RELIED_ON_MS
}

/// A handle on the event stream, shared by every task of a process.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_events_are_left_to_the_logs_deduplication_and_others_are_not() {
        let id = EventId::generate();
        let made = id.unix_millis();
        assert!(deduplicates(id, made));
        assert!(deduplicates(id, made + 60_000));
        assert!(
            !deduplicates(id, made + 9 * 60_000),
            "too close to the window's end"
        );
        assert!(!deduplicates(id, made - 60_000), "made in our future");
        for now in [made - 60_000, made, made + 60_000, made + 9 * 60_000] {
            assert_eq!(
                made_before_the_window(id, now),
                now > made && !deduplicates(id, now),
                "at {now}"
            );
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: Prefix,
    /// Per project, the last appended event as this process knows it (seq, hash).
    heads: Mutex<HashMap<ProjectId, Arc<Mutex<append::Head>>>>,
}

impl EventLog {
    /// Adopts (or creates) the stream for `prefix` on the server `client` is connected to.
    /// Fails with [`LogError::JetStreamUnavailable`] when the server runs without JetStream.
    pub async fn connect(client: async_nats::Client, prefix: Prefix) -> Result<Self, LogError> {
        check_jetstream(&client).await?;
        let jetstream = jetstream::new(client);
        let stream = streams::get_or_create(
            &jetstream,
            stream::Config {
                name: prefix.stream_name(),
                subjects: vec![prefix.all_events_subject()],
                description: Some("NexySync: every project's audited events".into()),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                discard: stream::DiscardPolicy::Old,
                max_message_size: MAX_EVENT_BYTES,
                duplicate_window: DUPLICATE_WINDOW,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| LogError::Stream(format!("failed to create or open the event stream: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jetstream,
                stream,
                prefix,
                heads: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Opens the existing stream for `prefix`, changing nothing on the server (for
    /// readers such as auditors): fails with [`LogError::NoStream`] when there is none.
    pub async fn open(client: async_nats::Client, prefix: Prefix) -> Result<Self, LogError> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        check_jetstream(&client).await?;
        let jetstream = jetstream::new(client);
        let name = prefix.stream_name();
        let stream = jetstream
            .get_stream(&name)
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    LogError::NoStream(name)
                }
                _ => LogError::Stream(format!("failed to open the event stream: {e}")),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                jetstream,
                stream,
                prefix,
                heads: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The prefix this log lives under.
    pub fn prefix(&self) -> &Prefix {
        &self.inner.prefix
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_seq(&self) -> Result<u64, LogError> {
        let info = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(|e| LogError::Stream(format!("failed to read stream info: {e}")))?;
        Ok(info.state.last_sequence)
    }

    /// The raw JetStream context, for benchmarks that measure the floor beside us.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    pub(crate) fn stream(&self) -> &stream::Stream {
        &self.inner.stream
    }
}

/// Asks the server for its JetStream account info (`$JS.API.INFO`): no responder, or an
/// error answer, means JetStream is off for this account.
async fn check_jetstream(client: &async_nats::Client) -> Result<(), LogError> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await
    .map_err(|_| LogError::JetStreamUnavailable("no answer to $JS.API.INFO within 5 s".into()))?
    .map_err(|e| LogError::JetStreamUnavailable(e.to_string()))?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| {
        LogError::JetStreamUnavailable(format!("unreadable $JS.API.INFO answer: {e}"))
    })?;
    match answer.get("error") {
        Some(error) => Err(LogError::JetStreamUnavailable(error.to_string())),
        None => Ok(()),
    }
}
