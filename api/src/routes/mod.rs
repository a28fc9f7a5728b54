//! Routes, one file per resource.

mod files;
mod health;
mod kv;
mod message_state;
mod messages;
mod meta;
mod projects;
mod refs;
mod stream;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/v1/projects", post(projects::create))
        .route(
            "/v1/projects/{project}/agents",
            post(projects::register_agent),
        )
        .route(
            "/v1/projects/{project}/retention",
            post(projects::set_retention),
        )
        .route("/v1/whoami", get(meta::whoami))
        .route("/v1/agents", get(meta::agents))
        .route("/v1/presence", get(meta::presence))
        .route("/v1/quota", get(meta::quota))
        .route("/v1/profile", put(meta::update_profile))
        .route("/v1/messages", post(messages::send).get(messages::inbox))
        .route("/v1/messages/{id}", get(messages::read))
        .route("/v1/messages/{id}/thread", get(messages::thread))
        .route("/v1/messages/{id}/reactions", post(message_state::react))
        .route("/v1/messages/{id}/read", post(message_state::read))
        .route("/v1/messages/{id}/pin", post(message_state::pin))
        .route("/v1/messages/{id}/unpin", post(message_state::unpin))
        .route("/v1/messages/{id}/delete", post(message_state::delete))
        .route("/v1/refs", post(refs::share).get(refs::list))
        .route("/v1/refs/{id}", get(refs::read))
        .route("/v1/files", post(files::declare).get(files::list))
        .route("/v1/files/delete", post(files::delete))
        .route("/v1/files/{id}", get(files::read))
        .route("/v1/files/{id}/commit", post(files::commit))
        .route("/v1/kv", put(kv::set).get(kv::list))
        .route("/v1/kv/delete", post(kv::delete))
        .route("/v1/kv/{key_ix}", get(kv::get))
        .route("/v1/stream", get(stream::subscribe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint; see docs/api.md".into(),
    }
}
