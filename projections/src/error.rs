//! Errors at the projection boundary.

/// What went wrong projecting or reading the read models.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Database(String),
    #[error(transparent)]
    Log(#[from] nexysync_log::LogError),
    #[error("the read models have not reached seq {wanted} yet (at {reached})")]
    Lagging { wanted: u64, reached: u64 },
    #[error("the read models in the database are version {version}, this build expects version {expected}: run `nexysync projections rebuild` (it builds the new version beside the live one, then switches), or start `nexysync up`, which does the same before serving")]
    Outdated { version: i64, expected: i64 },
    #[error("the read models in the database are version {version}, newer than this build's version {expected}: run the newer nexysync that wrote them")]
    NewerReadModels { version: i64, expected: i64 },
    #[error("these read models were replaced by a rebuild")]
    Retired,
    #[error("another rebuild of the read models is running")]
    RebuildRunning,
}

impl From<sqlx::Error> for ProjectionError {
    fn from(e: sqlx::Error) -> Self {
        ProjectionError::Database(e.to_string())
    }
}
