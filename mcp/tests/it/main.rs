//! Integration tests of `nexysync-mcp`: the client library and the MCP tools, in process,
//! against an in-memory stand-in for the API (`fake_api`). The end-to-end tests against
//! the real server live in the workspace's `tests/` crate.

// Tests may unwrap (house style); the fake API's handlers return axum responses as errors.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

mod client_flow;
mod fake_api;
mod mcp_session;
mod tools_with_key;
mod tools_without_key;
