//! Per-project quota usage held briefly in memory, so a message send does not cost a
//! PostgreSQL query each time. Each entry is what the read models said a moment ago, plus
//! what this instance appended since; it is refreshed after [`FRESH_FOR`] and whenever a
//! limit is near (`write::quota_of`), where the read models are asked again after
//! catching up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexysync_domain::ids::ProjectId;
use nexysync_domain::quota::QuotaUsage;

/// How long an entry is used without asking the read models again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Entries kept before the oldest are dropped.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    usage: QuotaUsage,
    /// The UTC day (days since the epoch) the daily count belongs to.
    day: u64,
    fetched: Instant,
}

/// Shared by every handler of one instance. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct QuotaCache {
    entries: Arc<Mutex<HashMap<ProjectId, Entry>>>,
}

impl QuotaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached usage of `project` on `day`, if fresh.
    pub fn get(&self, project: ProjectId, day: u64) -> Option<QuotaUsage> {
        self.lock()
            .get(&project)
            .filter(|e| e.day == day && e.fetched.elapsed() < FRESH_FOR)
            .map(|e| e.usage)
    }

    /// Remembers what the read models said.
    pub fn put(&self, project: ProjectId, day: u64, usage: QuotaUsage) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.fetched.elapsed() < FRESH_FOR);
        }
        entries.insert(
            project,
            Entry {
                usage,
                day,
                fetched: Instant::now(),
            },
        );
    }

    /// This instance appended one content-bearing event of `sealed_bytes`.
    pub fn note_appended(&self, project: ProjectId, sealed_bytes: u64) {
        if let Some(entry) = self.lock().get_mut(&project) {
            entry.usage.messages_today += 1;
            entry.usage.stored_bytes = entry.usage.stored_bytes.saturating_add(sealed_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_add_to_a_fresh_entry_and_another_day_misses() {
        let cache = QuotaCache::default();
        let project = ProjectId::generate();
        assert_eq!(cache.get(project, 7), None);
        cache.put(project, 7, QuotaUsage::default());
        cache.note_appended(project, 100);
        let usage = cache.get(project, 7).unwrap();
        assert_eq!((usage.messages_today, usage.stored_bytes), (1, 100));
        assert_eq!(cache.get(project, 8), None, "a new UTC day starts again");
    }
}
