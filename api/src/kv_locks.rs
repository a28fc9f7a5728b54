//! Per-key serialisation of KV writes in this instance.
//!
//! A compare-and-set decides on the key's current revision, read from the read models,
//! and then appends. Two writers racing on one key must not both decide on the same
//! revision, so each KV write holds its key's lock across gather, decide and append
//! (ADR 0004). Locks are striped: a fixed set of mutexes indexed by a hash of
//! (project, key index), so no map grows with the number of keys. Two keys sharing a
//! stripe only wait for each other, which is harmless.
//!
//! The same stripes serialise message-state writes per message (ADR 0005): a reaction,
//! pin or deletion decides on the message's current state in the same way.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::ids::{EventId, ProjectId};
use tokio::sync::{Mutex, OwnedMutexGuard};

const STRIPES: usize = 256;

/// The striped locks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KvLocks {
    stripes: Arc<[Arc<Mutex<()>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for KvLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(),
            hasher: Default::default(),
        }
    }
}

impl KvLocks {
    /// Waits for, then holds, the lock of `key_ix` in `project` until the guard drops.
    pub async fn lock(&self, project: ProjectId, key_ix: &BlindIndex) -> OwnedMutexGuard<()> {
        self.lock_key(project, key_ix.as_str()).await
    }

    /// Waits for, then holds, the lock of message `message` in `project`.
    pub async fn lock_message(&self, project: ProjectId, message: EventId) -> OwnedMutexGuard<()> {
        self.lock_key(project, &format!("message:{message}")).await
    }

    /// The same serialisation for any other per-project key (files use `file:<id>`, so
    /// two deletes of one file are decided one after the other).
    pub async fn lock_key(&self, project: ProjectId, key: &str) -> OwnedMutexGuard<()> {
        let mut hasher = self.hasher.build_hasher();
        project.hash(&mut hasher);
        key.hash(&mut hasher);
        let stripe = (hasher.finish() % self.stripes.len() as u64) as usize;
        self.stripes[stripe].clone().lock_owned().await
    }
}
