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

/// Everything the API needs to run. Its `Debug` hides credentials in the URLs.
#[derive(Clone)]
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
    /// Every project's quota limits (messages per day, message size, stored bytes).
    pub quota: nexysync_domain::quota::QuotaLimits,
    /// Interval of this instance's presence heartbeats (and of its presence sweeps).
    pub presence_heartbeat: Duration,
    /// The presence bound: an instance not heard from for this long counts as gone, so
    /// its agents are offline at most this long after it dies without saying so. Keep it
    /// a few heartbeats (default 3) and under the presence stream's retention (5 min).
    pub presence_timeout: Duration,
    /// Shared files: where the CDN is and how its URLs are signed.
    pub files: FileSettings,
    /// Run the retention pruner in this process (`nexysync up` does): erases expired
    /// messages behind tombstones (ADR 0012). One instance at a time prunes (advisory
    /// lock), so every instance may run it.
    pub pruner: Option<nexysync_projections::PrunerSettings>,
}

/// How the API reaches the CDN and signs its URLs.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The CDN's base URL as clients reach it (put into the URLs handed out).
    pub cdn_url: String,
    /// The CDN's base URL as this server reaches it (checking and removing blobs);
    /// usually the same.
    pub cdn_internal_url: String,
    /// Shared with the CDN. `nexysync up` keeps it in `<data dir>/url-secret`.
    pub url_secret: nexysync_domain::blob_url::UrlSecret,
    /// How long an upload URL stays valid; an upload not committed by then is swept.
    pub upload_url_ttl: Duration,
    /// How long a download URL stays valid.
    pub download_url_ttl: Duration,
    /// Ciphertext bytes a project may keep in files (declared uploads included).
    pub quota_bytes: u64,
    /// How often expired, uncommitted uploads are swept.
    pub sweep_interval: Duration,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            cdn_url: "http://127.0.0.1:8708".into(),
            cdn_internal_url: "http://127.0.0.1:8708".into(),
            url_secret: nexysync_domain::blob_url::UrlSecret::generate(),
            upload_url_ttl: Duration::from_secs(15 * 60),
            download_url_ttl: Duration::from_secs(5 * 60),
            quota_bytes: 10 * 1024 * 1024 * 1024,
            sweep_interval: Duration::from_secs(30),
        }
    }
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
            quota: Default::default(),
            presence_heartbeat: Duration::from_secs(10),
            presence_timeout: Duration::from_secs(30),
            files: FileSettings::default(),
            pruner: None,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("nats_url", &redact_credentials(&self.nats_url))
            .field("database_url", &redact_credentials(&self.database_url))
            .field("stream_prefix", &self.stream_prefix)
            .field("admin_token", &self.admin_token)
            .field("heartbeat", &self.heartbeat)
            .field("read_your_writes_timeout", &self.read_your_writes_timeout)
            .field("sse_buffer", &self.sse_buffer)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("run_projectors", &self.run_projectors)
            .field("quota", &self.quota)
            .field("presence_heartbeat", &self.presence_heartbeat)
            .field("presence_timeout", &self.presence_timeout)
            .field("files", &self.files)
            .field("pruner", &self.pruner)
            .finish()
    }
}

/// `scheme://user:secret@host/…` without the user and secret, for logs and errors.
pub fn redact_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<credentials>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        assert_eq!(
            redact_credentials("nats://user:pw@host:4222"),
            "nats://<credentials>@host:4222"
        );
        assert_eq!(redact_credentials("nats://host:4222"), "nats://host:4222");
        let settings = Settings::new(
            "nats://u:natspw@h".into(),
            "postgres://u:pgpw@h/db".into(),
            Secret::new("admin-secret"),
        );
        let shown = format!("{settings:?}");
        for secret in ["natspw", "pgpw", "admin-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
