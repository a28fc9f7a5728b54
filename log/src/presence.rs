//! The presence stream: `<prefix>_presence`, short retention, outside the audited log.
//!
//! API instances publish [`PresenceEvent`]s here (no content, no signature: they are
//! server facts, ADR 0006). Old events age out after [`PRESENCE_RETENTION`]: nothing
//! here must be kept, since a live instance repeats its whole state in every heartbeat.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use futures::{Stream, StreamExt};
use nexysync_domain::presence::PresenceEvent;

use crate::{LogError, Prefix};

/// How long presence events stay in the stream. Must exceed any heartbeat interval.
pub const PRESENCE_RETENTION: Duration = Duration::from_secs(5 * 60);
/// Largest presence event (a heartbeat lists its instance's connected agents).
const MAX_PRESENCE_BYTES: i32 = 1024 * 1024;

/// A presence event read back, with its sequence in the presence stream.
#[derive(Debug, Clone)]
pub struct StoredPresence {
    pub seq: u64,
    pub event: PresenceEvent,
}

/// Presence events in stream order; an item error is a broken connection (retry) or an
/// undecodable event (skip).
pub type PresenceStream = Pin<Box<dyn Stream<Item = Result<StoredPresence, LogError>> + Send>>;

/// A handle on the presence stream.
#[derive(Debug, Clone)]
pub struct PresenceLog {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: Prefix,
}

impl PresenceLog {
    /// Adopts (or creates) `<prefix>_presence` on the server `client` is connected to.
    pub async fn connect(client: async_nats::Client, prefix: Prefix) -> Result<Self, LogError> {
        let jetstream = jetstream::new(client);
        let stream = crate::streams::get_or_create(
            &jetstream,
            stream::Config {
                name: prefix.presence_stream_name(),
                subjects: vec![prefix.all_presence_subject()],
                description: Some("NexySync: API instances' presence events (ephemeral)".into()),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                discard: stream::DiscardPolicy::Old,
                max_age: PRESENCE_RETENTION,
                max_message_size: MAX_PRESENCE_BYTES,
                // No deduplication needed (events carry no id); keep the window small.
                duplicate_window: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            LogError::Stream(format!("failed to create or open the presence stream: {e}"))
        })?;
        Ok(Self {
            jetstream,
            stream,
            prefix,
        })
    }

    /// Publishes `event` under its instance's subject and waits for the stream's ack.
    pub async fn publish(&self, event: &PresenceEvent) -> Result<u64, LogError> {
        let payload = serde_json::to_vec(event)
            .map_err(|e| LogError::Append(format!("presence event does not encode: {e}")))?;
        let ack = self
            .jetstream
            .publish(
                self.prefix.presence_subject(&event.instance().to_string()),
                payload.into(),
            )
            .await
            .map_err(|e| LogError::Append(format!("presence publish failed: {e}")))?
            .await
            .map_err(|e| LogError::Append(format!("presence publish not acknowledged: {e}")))?;
        Ok(ack.sequence)
    }

    /// The stream's last sequence (0 when it never held an event).
    pub async fn last_seq(&self) -> Result<u64, LogError> {
        let info =
            self.stream.get_info().await.map_err(|e| {
                LogError::Stream(format!("failed to read presence stream info: {e}"))
            })?;
        Ok(info.state.last_sequence)
    }

    /// Every retained event with a sequence greater than `after`, then live.
    pub async fn read(&self, after: u64) -> Result<PresenceStream, LogError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.prefix.all_presence_subject(),
                // A start before the oldest retained event begins at the oldest.
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| LogError::Read(format!("failed to read the presence stream: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| LogError::Read(format!("failed to read the presence stream: {e}")))?;
        Ok(Box::pin(messages.map(|next| {
            let message = next.map_err(|e| LogError::Read(e.to_string()))?;
            let info = message
                .info()
                .map_err(|e| LogError::Read(format!("message without stream info: {e}")))?;
            let seq = info.stream_sequence;
            let event = serde_json::from_slice(&message.message.payload).map_err(|e| {
                LogError::Corrupt {
                    seq,
                    reason: e.to_string(),
                }
            })?;
            Ok(StoredPresence { seq, event })
        })))
    }
}
