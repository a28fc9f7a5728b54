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
use axum::Router;
use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::ids::{EventId, ProjectId};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::openapi::{self, doc, Routes, APPENDED};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let (routes, _) = table().into_parts();
    routes
        .fallback(not_found)
        // After every route: it is set on each route the router holds.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route, with what the OpenAPI document says of it: the router serves exactly
/// these (see [`crate::openapi`]).
pub(crate) fn table() -> Routes {
    Routes::new()
        .get("/healthz", health::live, doc("Liveness: the process answers"))
        .get(
            "/readyz",
            health::ready,
            doc("Readiness: connected to NATS, Postgres answers, with the projection's position"),
        )
        .get(
            "/v1/openapi.json",
            openapi::serve,
            doc("This OpenAPI document"),
        )
        .post(
            "/v1/projects",
            projects::create,
            doc("Create a project")
                .description("The body is a `project_created` envelope, actor `owner`, signed by the owner key it names.")
                .answers(APPENDED),
        )
        .post(
            "/v1/projects/{project}/agents",
            projects::register_agent,
            doc("Register an agent")
                .description("The body is an `agent_registered` envelope, actor `owner`, signed by the project's owner key.")
                .param::<ProjectId>("project")
                .answers(APPENDED),
        )
        .post(
            "/v1/projects/{project}/retention",
            projects::set_retention,
            doc("Set the project's retention policy")
                .description("The body is a `retention_set` envelope, actor `owner`, signed by the project's owner key: the default and maximum TTL of messages sent after it.")
                .param::<ProjectId>("project")
                .answers(APPENDED),
        )
        .get("/v1/whoami", meta::whoami, doc("Who the token belongs to"))
        .get(
            "/v1/agents",
            meta::agents,
            doc("The project's agents, with their signed registrations, profiles and presence"),
        )
        .get(
            "/v1/presence",
            meta::presence,
            doc("Who of the project is online"),
        )
        .get(
            "/v1/quota",
            meta::quota,
            doc("The project's limits, usage, and when the daily count resets"),
        )
        .put(
            "/v1/profile",
            meta::update_profile,
            doc("Set my profile")
                .description("An `agent_profile_updated` envelope (sealed `role`, optional `description`) signed by the caller.")
                .answers(APPENDED),
        )
        .post(
            "/v1/messages",
            messages::send,
            doc("Send a message")
                .description("A `message_sent` envelope, actor = the token's agent, signed by it, no `prev`.")
                .answers(APPENDED),
        )
        .get(
            "/v1/messages",
            messages::inbox,
            doc("My inbox: direct messages to me and other agents' broadcasts, oldest first"),
        )
        .get(
            "/v1/messages/{id}",
            messages::read,
            doc("One message I may read").param::<EventId>("id"),
        )
        .get(
            "/v1/messages/{id}/thread",
            messages::thread,
            doc("The thread of a message: every message linked by `reply_to` that I may read")
                .param::<EventId>("id"),
        )
        .post(
            "/v1/messages/{id}/reactions",
            message_state::react,
            doc("React to a message, or take a reaction back")
                .description("A `reaction_added` or `reaction_removed` envelope naming the message of the path in `meta.message`.")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .post(
            "/v1/messages/{id}/read",
            message_state::read,
            doc("Mark a message read")
                .description("A `message_read` envelope naming the message of the path.")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .post(
            "/v1/messages/{id}/pin",
            message_state::pin,
            doc("Pin a message for the project")
                .description("A `message_pinned` envelope naming the message of the path.")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .post(
            "/v1/messages/{id}/unpin",
            message_state::unpin,
            doc("Unpin a message")
                .description("A `message_unpinned` envelope naming the message of the path.")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .post(
            "/v1/messages/{id}/delete",
            message_state::delete,
            doc("Delete a message I sent")
                .description("A `message_deleted` envelope naming the message of the path; its sealed fields are erased from the read models.")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .post(
            "/v1/refs",
            refs::share,
            doc("Share a code reference")
                .description("A `ref_shared` envelope (sealed `path`, `snippet`, optional `note`, `language`, `commit`).")
                .answers(APPENDED),
        )
        .get(
            "/v1/refs",
            refs::list,
            doc("Code references shared with me, with everyone, or by me, oldest first"),
        )
        .get(
            "/v1/refs/{id}",
            refs::read,
            doc("One code reference I may read").param::<EventId>("id"),
        )
        .post(
            "/v1/files",
            files::declare,
            doc("Declare a file upload")
                .description("A `file_shared` envelope; nothing is appended yet. Upload the ciphertext to `upload_url`, then commit.")
                .answers(&[(201, "Declared: where to upload the ciphertext, until when.")]),
        )
        .get(
            "/v1/files",
            files::list,
            doc("Live files shared with me, with everyone, or by me, oldest first"),
        )
        .post(
            "/v1/files/delete",
            files::delete,
            doc("Delete a shared file")
                .description("A `file_deleted` envelope; the blob is removed.")
                .answers(APPENDED),
        )
        .get(
            "/v1/files/{id}",
            files::read,
            doc("A file's event and a short-lived download URL").param::<EventId>("id"),
        )
        .post(
            "/v1/files/{id}/commit",
            files::commit,
            doc("Commit an uploaded file: appends the declared `file_shared`")
                .param::<EventId>("id")
                .answers(APPENDED),
        )
        .put(
            "/v1/kv",
            kv::set,
            doc("Set a key of the project's key-value store")
                .description("A `kv_set` envelope (sealed `key`, `value`; optional compare-and-set `expected_revision`). `revision` is the event's sequence.")
                .answers(APPENDED),
        )
        .get(
            "/v1/kv",
            kv::list,
            doc("Live keys in `key_ix` order"),
        )
        .post(
            "/v1/kv/delete",
            kv::delete,
            doc("Delete a key")
                .description("A `kv_deleted` envelope (optional compare-and-set `expected_revision`).")
                .answers(APPENDED),
        )
        .get(
            "/v1/kv/{key_ix}",
            kv::get,
            doc("One live key").param::<BlindIndex>("key_ix"),
        )
        .get(
            "/v1/stream",
            stream::subscribe,
            doc("Push: server-sent events for me")
                .description("Resume with the `Last-Event-ID` header (a stream sequence) or `since_seq`; `ready` says the stream is live, `cursor_too_old` and `catch_up` say what to re-read. Heartbeat comments keep it open."),
        )
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint; see docs/api.md".into(),
    }
}
