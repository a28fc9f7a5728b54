//! NexySync's API server: axum REST and SSE over the log and the read models.
//!
//! # Layout
//! - [`settings`]: the typed settings the binary fills in.
//! - `startup`: [`Application::build`] connects NATS and Postgres, migrates, binds;
//!   [`Application::run_until_stopped`] serves until shutdown.
//! - `routes/`: one file per resource (`projects`, `messages`, `message_state`, `refs`,
//!   `files`, `kv`, `stream`, `meta`, `health`).
//! - `auth`: bearer tokens (agent tokens by hash, the admin token in constant time).
//! - `openapi`: the route table's OpenAPI 3.1 document, read off the handlers' types
//!   (`routes::table` registers a route and documents it in one call); served at
//!   `/v1/openapi.json`, checked in as `schemas/openapi.json` (ADR 0011).
//! - `error`: the one place errors become `{ "error": { "code", "message" } }`.
//! - `write`: the write path: gather facts, `domain::decide::decide`, append to the log;
//!   `kv_locks` serialises KV writes per key so compare-and-set holds (ADR 0004);
//!   `quota_cache` keeps recent quota usage so sends rarely query it (ADR 0007).
//! - `hub`: one tail of the log per instance, fanned out in memory to SSE streams (message
//!   updates routed by the message's audience, looked up in the read models; ADR 0005).
//! - `presence`: this instance's SSE streams as presence events (connected, heartbeat,
//!   stopped) on the presence stream, and the board that pushes `presence_change`.
//! - `cdn`: signs the CDN's short-lived URLs, checks and removes blobs; `sweep` removes
//!   uploads declared and never committed once their URL expired (blob included).
//!
//! # Invariants
//! - Every query is scoped to the caller's project.
//! - The server verifies signatures and routes ciphertext; it holds no project key.

mod auth;
mod cdn;
mod directory;
mod error;
mod extract;
mod hub;
mod kv_locks;
mod openapi;
mod paging;
mod presence;
mod quota_cache;
mod raw;
mod routes;
pub mod settings;
mod shutdown;
mod sse;
mod startup;
mod state;
mod sweep;
mod write;

pub use error::ApiError;
pub use openapi::document_text;
pub use settings::{FileSettings, Secret, Settings};
pub use startup::Application;
