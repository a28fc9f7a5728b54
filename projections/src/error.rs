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
}

impl From<sqlx::Error> for ProjectionError {
    fn from(e: sqlx::Error) -> Self {
        ProjectionError::Database(e.to_string())
    }
}
