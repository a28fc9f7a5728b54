//! Cursor paging by stream sequence, the same for every list endpoint.

use nexysync_domain::ids::Seq;
use nexysync_domain::wire::{DEFAULT_LIMIT, MAX_LIMIT};
use nexysync_projections::StoredJson;

use crate::error::ApiError;

/// A validated page request: rows after `since`, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub since: Seq,
    pub limit: u32,
}

impl PageRequest {
    pub fn new(since: Option<Seq>, limit: Option<u32>) -> Result<Self, ApiError> {
        let since = since.unwrap_or_default();
        if since.0 > i64::MAX as u64 {
            return Err(ApiError::InvalidRequest(
                "since_seq is beyond any sequence".into(),
            ));
        }
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::InvalidRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Self { since, limit })
    }

    /// How many rows to ask for: one more than the page tells whether another follows.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`PageRequest::fetch`]) to the page; returns the rows,
    /// the cursor of the next page and whether there is one.
    pub fn split(&self, mut rows: Vec<StoredJson>) -> (Vec<StoredJson>, Seq, bool) {
        let has_more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = rows.last().map(|r| r.seq).unwrap_or(self.since);
        (rows, next, has_more)
    }
}
