//! Gaps in a project's chain, and the retention tombstones that prove them (ADR 0012).
//!
//! When the pruner erases events, the event after them still links to the last one it
//! erased: the auditor sees a link to a sequence it never read. It keeps that gap pending
//! (the verified link before it, the link the event after it claims) and, when a later
//! `events_erased` lists the missing events stripped of their ciphertext, walks them from
//! the link before the gap: each must link to the one before, re-hash to the hash the
//! tombstone lists, and the last one to the hash the event after the gap claimed. A gap
//! still pending when the log ends was never explained: something was dropped.
//!
//! Only pending gaps are held in memory (two links and a policy each).

use crate::event::{ChainLink, RetentionPolicy};
use crate::ids::Seq;

/// How far a tombstone's date may lag an erased message's expiry as the event dates
/// give it: the expiry counts from the append time, and an event's `at` may be up to two
/// minutes ahead of it (the id's clock allowance plus the `at` skew).
pub const ERASURE_SLACK_MS: i64 = 2 * 60_000;

/// Events missing between two verified links, not yet covered by a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The sequence of the event after the gap, which links across it.
    pub found_at: Seq,
    /// The last link walked so far: the event before the gap, then each erased event a
    /// tombstone listed.
    pub cursor: ChainLink,
    /// The link the event after the gap claims: the gap's last event.
    pub until: ChainLink,
    /// The retention policy in force in the gap (no policy change is ever erased, so it
    /// is the same for every event in it).
    pub policy: RetentionPolicy,
}

/// The pending gaps of one project, in log order.
#[derive(Debug, Default)]
pub struct Gaps {
    pending: Vec<Gap>,
}

impl Gaps {
    pub fn open(&mut self, gap: Gap) {
        self.pending.push(gap);
    }

    /// The pending gap that `seq` falls in.
    pub fn containing(&mut self, seq: Seq) -> Option<&mut Gap> {
        self.pending
            .iter_mut()
            .find(|gap| gap.cursor.seq < seq && seq <= gap.until.seq)
    }

    /// Drops the gaps whose walk reached their end.
    pub fn close_covered(&mut self) {
        self.pending.retain(|gap| gap.cursor != gap.until);
    }

    /// The first gap still pending.
    pub fn first(&self) -> Option<&Gap> {
        self.pending.first()
    }
}
