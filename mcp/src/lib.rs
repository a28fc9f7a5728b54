//! `nexysync-mcp`: the stdio MCP server through which AI tools (Claude Code, Cursor, any
//! MCP client) use NexySync, and the Rust client library it is built on.
//!
//! # Layout
//! - [`key_file`]: the agent's key file (`.nexysync/key`, mode 0600): load, write, discover.
//! - [`client`]: the API client: seals and signs what it sends; verifies (owner-signed
//!   registrations, sender signatures, project, hash chain; reactions, deletions and
//!   profiles) and opens what it receives; the live SSE stream with reconnects, a buffer
//!   and a delivery cursor per kind (messages, refs, KV changes).
//! - [`server`]: the MCP server ([`NexySyncMcp`]): tools `ns_auth`, `ns_message`, `ns_kv`,
//!   `ns_ref` and `ns_meta`, structured answers (lists brief or full, within one budget),
//!   errors as `isError` results; `wait` for any kind of arrival, and a channel
//!   notification to the client for each verified one.
//! - `main.rs`: reads the environment, sets up stderr logging, serves on stdio.
//!
//! # Invariants
//! - No key, no send: a [`client::Client`] only exists with a key file, and every content
//!   field leaves this process sealed under the project key.
//! - Nothing reaches an agent unverified: a message that fails a check is reported as a
//!   rejection naming the check, never shown as plaintext.
//! - stdout belongs to the MCP protocol; logs go to stderr and never carry plaintext,
//!   keys or tokens.
//! - A notification never consumes an arrival: `wait` and `check` deliver the same events,
//!   each once, by their cursors.
//! - The library never reads the environment; the binary passes what it read.

pub mod client;
pub mod key_file;
pub mod server;

pub use client::{Client, ClientError, KvValue, Message, NewMessage};
pub use key_file::{KeyFile, KeyFileError};
pub use server::NexySyncMcp;
