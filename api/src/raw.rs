//! Answers built from events as the read models store them: the envelope JSON is spliced
//! in as it is, never parsed and re-serialised.

use nexysync_domain::ids::Seq;
use nexysync_projections::StoredJson;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// `domain::wire::StoredEvent`, with the envelope kept as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "StoredEvent")]
pub struct RawStoredEvent {
    pub seq: Seq,
    #[schemars(with = "nexysync_domain::event::Envelope")]
    pub event: Box<RawValue>,
}

impl TryFrom<StoredJson> for RawStoredEvent {
    type Error = ApiError;
    fn try_from(stored: StoredJson) -> Result<Self, ApiError> {
        let event = RawValue::from_string(stored.envelope).map_err(|e| {
            ApiError::Unexpected(anyhow::Error::new(e).context("stored envelope is not JSON"))
        })?;
        Ok(Self {
            seq: stored.seq,
            event,
        })
    }
}

pub fn all(stored: Vec<StoredJson>) -> Result<Vec<RawStoredEvent>, ApiError> {
    stored.into_iter().map(RawStoredEvent::try_from).collect()
}
