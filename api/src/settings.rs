//! The API server's settings. Filled by the binary (defaults, then file, then
//! `NEXYSYNC_*` environment); this library never reads the environment itself.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// Everything the API needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (see [`crate::Application::port`]).
    pub listen: SocketAddr,
    pub nats_url: String,
    pub database_url: String,
    /// Prefix of the JetStream stream and subjects, so tenants and tests never collide.
    pub stream_prefix: String,
    /// Guards project and agent provisioning.
    pub admin_token: Secret,
    /// Interval of SSE heartbeats.
    pub heartbeat: Duration,
    /// Longest a read with `min_seq` waits for the projection.
    pub read_your_writes_timeout: Duration,
    /// Events buffered per SSE connection before it is told to catch up.
    pub sse_buffer: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Run the projectors inside this process (`nexysync up` does).
    pub run_projectors: bool,
}

impl Settings {
    /// Defaults for everything but the connection strings and the admin token.
    pub fn new(nats_url: String, database_url: String, admin_token: Secret) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8707)),
            nats_url,
            database_url,
            stream_prefix: "nexysync".into(),
            admin_token,
            heartbeat: Duration::from_secs(30),
            read_your_writes_timeout: Duration::from_secs(5),
            sse_buffer: 1024,
            max_body_bytes: 256 * 1024,
            run_projectors: true,
        }
    }
}
