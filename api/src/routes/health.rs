//! Liveness and readiness.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when NATS is connected and Postgres answers.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::NotReady("not connected to NATS"));
    }
    sqlx::query("SELECT 1")
        .execute(state.reads.pool())
        .await
        .map_err(|e| {
            ApiError::Unexpected(anyhow::Error::new(e).context("postgres is not answering"))
        })?;
    Ok(Json(json!({
        "status": "ready",
        "applied_seq": state.projection.applied(),
        "hub_seq": state.hub.position(),
    })))
}
