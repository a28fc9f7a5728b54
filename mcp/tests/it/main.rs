//! Integration tests of `nexysync-mcp`: the client library and the MCP tools, in process,
//! against the real API (`nexysync-tests` starts it in this process, on this machine's
//! nats-server and PostgreSQL, with its own stream prefix and database per test).
//!
//! What only a misbehaving server could do (registrations the owner did not sign, forged
//! or altered messages, a broken hash chain) is tested beside the verification code in
//! `src/client`, with crafted events.

// Tests may unwrap (house style).
#![allow(clippy::unwrap_used)]

mod client_flow;
mod files;
mod kv;
mod mcp_session;
mod message_state;
mod meta;
mod provision;
mod push;
mod refs;
mod tools_with_key;
mod tools_without_key;
