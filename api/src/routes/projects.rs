//! Provisioning: projects and agents, with the admin token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::event::{Actor, Envelope, EventKind};
use nexysync_domain::ids::ProjectId;
use nexysync_domain::wire::Appended;

use crate::auth::AdminAuth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::write::submit;

/// `POST /v1/projects`: a `ProjectCreated` signed by the owner key it introduces.
pub async fn create(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let appended = submit(&state, event.project, Actor::Owner, None, event).await?;
    Ok((StatusCode::CREATED, Json(appended)))
}

/// `POST /v1/projects/{project}/agents`: an `AgentRegistered` signed by the owner key.
pub async fn register_agent(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let project = project_of_path(&project)?;
    let appended = submit(&state, project, Actor::Owner, None, event).await?;
    Ok((StatusCode::CREATED, Json(appended)))
}

/// `POST /v1/projects/{project}/retention`: an owner-signed `retention_set`, the project's
/// retention policy for messages sent after it (ADR 0012).
pub async fn set_retention(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let project = project_of_path(&project)?;
    crate::write::require_kind(&event, &[EventKind::RetentionSet])?;
    let appended = submit(&state, project, Actor::Owner, None, event).await?;
    let status = crate::write::write_status(&appended);
    Ok((status, Json(appended)))
}

fn project_of_path(text: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(text)
        .map_err(|e| ApiError::InvalidRequest(format!("project id in the path: {e}")))
}
