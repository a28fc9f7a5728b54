//! What every handler shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nexysync_domain::ids::Seq;
use nexysync_log::EventLog;
use nexysync_projections::{ProjectionWatch, ReadModels};

use crate::auth::TokenCache;
use crate::directory::AgentDirectory;
use crate::hub::Hub;
use crate::settings::Secret;

/// Shared state of one API instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub log: EventLog,
    pub reads: ReadModels,
    pub projection: ProjectionWatch,
    pub hub: Hub,
    pub tokens: TokenCache,
    pub directory: AgentDirectory,
    pub admin_token: Arc<Secret>,
    pub nats: async_nats::Client,
    pub heartbeat: Duration,
    pub read_your_writes_timeout: Duration,
    pub max_body_bytes: usize,
    /// The highest sequence this instance has appended: a write that finds a reference
    /// missing waits for the read models to reach it before saying so.
    pub last_appended: Arc<AtomicU64>,
    /// Serialises provisioning (project and agent registrations) in this instance.
    pub provisioning: Arc<tokio::sync::Mutex<()>>,
    /// Serialises KV writes per key, message-state writes per message and deletes of one
    /// file, in this instance (ADR 0004, ADR 0005).
    pub kv_locks: crate::kv_locks::KvLocks,
    /// This instance's presence: every SSE stream registers with it.
    pub presence: crate::presence::Presence,
    /// The presence bound (an instance silent this long counts as gone).
    pub presence_timeout: Duration,
    /// Every project's quota limits.
    pub quota: nexysync_domain::quota::QuotaLimits,
    /// Recent quota usage per project, so sends need not query it each time.
    pub quota_cache: crate::quota_cache::QuotaCache,
    /// Signs CDN URLs; checks and removes blobs.
    pub cdn: crate::cdn::CdnClient,
}

impl AppState {
    pub fn note_appended(&self, seq: Seq) {
        self.last_appended.fetch_max(seq.0, Ordering::Relaxed);
    }

    /// The furthest point of the log this instance knows of: its own last append, or
    /// the last event its hub has seen (appended by any instance).
    pub fn known_log_position(&self) -> Seq {
        Seq(self.last_appended.load(Ordering::Relaxed)).max(self.hub.position())
    }

    /// When a lookup finds nothing, it may be something appended a moment ago and not
    /// projected yet: wait (bounded) for the read models to reach what this instance
    /// knows of the log, then look again.
    pub async fn settle_projection(&self) {
        let known = self.known_log_position();
        if let Err(e) = self.wait_for_projection(Some(known)).await {
            tracing::warn!(error = %e, "read models lagging behind the log");
        }
    }

    /// Waits (bounded) until the read models have applied `min`, for read-your-writes.
    pub async fn wait_for_projection(
        &self,
        min: Option<Seq>,
    ) -> Result<(), crate::error::ApiError> {
        match min {
            Some(min) if min > self.projection.applied() => Ok(self
                .projection
                .wait_for(min, self.read_your_writes_timeout)
                .await?),
            _ => Ok(()),
        }
    }
}
