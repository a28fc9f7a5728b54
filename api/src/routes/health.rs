//! Liveness and readiness.

use axum::extract::State;
use axum::Json;
use nexysync_domain::ids::Seq;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Liveness")]
pub struct Live {
    /// Always `ok`.
    status: &'static str,
}

pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Readiness")]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
    /// The last stream sequence the read models applied.
    applied_seq: Seq,
    /// The last stream sequence this instance's hub has seen in the log.
    hub_seq: Seq,
}

/// Ready when NATS is connected and Postgres answers.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::NotReady("not connected to NATS"));
    }
    sqlx::query("SELECT 1")
        .execute(state.reads.pool())
        .await
        .map_err(|e| {
            ApiError::Unexpected(anyhow::Error::new(e).context("postgres is not answering"))
        })?;
    Ok(Json(Ready {
        status: "ready",
        applied_seq: state.projection.applied(),
        hub_seq: state.hub.position(),
    }))
}
