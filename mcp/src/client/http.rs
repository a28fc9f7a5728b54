//! HTTP to the API: bearer auth, the error shape, and retries of transient failures.
//!
//! Every write is idempotent (the event id is the log's deduplication key), so a POST
//! that failed in transit is retried with the same body; reads are retried the same way.

use std::time::Duration;

use nexysync_domain::crypto::AgentToken;
use nexysync_domain::ids::Seq;
use nexysync_domain::wire::ErrorBody;
use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{ApiError, ClientError};

/// Time allowed for one request/response (the SSE stream has its own idle timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to open a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence of a file transfer's connection before it counts as broken: a file
/// has no size-bound deadline, but a half-open connection (a laptop that slept, a network
/// that changed) must not hold a tool call forever.
pub(crate) const TRANSFER_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts for a request whose failure looks transient (connection, timeout, 5xx).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// Retry transient failures a few times, with backoff.
    Retry,
    /// One quick try: for status probes, where a fast "no" beats a slow "maybe".
    Probe,
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    /// For the CDN's downloads: no overall deadline, a bound on each silence instead.
    downloads: reqwest::Client,
    base: Url,
    token: AgentToken,
}

impl Http {
    pub(crate) fn new(base: Url, token: AgentToken) -> Result<Self, ClientError> {
        let mut base = base;
        // `Url::join` replaces the last segment unless the base ends with a slash, which
        // would drop a path prefix such as `https://host/nexysync`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("nexysync-mcp/", env!("CARGO_PKG_VERSION")))
        };
        let built = |client: reqwest::Result<reqwest::Client>| {
            client.map_err(|e| ClientError::InvalidServerUrl {
                server: base.to_string(),
                reason: e.to_string(),
            })
        };
        let client = built(builder().build())?;
        let downloads = built(builder().read_timeout(TRANSFER_STALL_TIMEOUT).build())?;
        Ok(Self {
            client,
            downloads,
            base,
            token,
        })
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// A client for the CDN's signed URLs (which carry no bearer token).
    pub(crate) fn raw(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client for downloads from the CDN: one that stays silent for
    /// [`TRANSFER_STALL_TIMEOUT`] fails. Not for uploads: reqwest's read timeout also runs
    /// while the request body is sent, and the CDN answers only once all of it is stored.
    pub(crate) fn downloads(&self) -> &reqwest::Client {
        &self.downloads
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::InvalidServerUrl {
                server: self.base.to_string(),
                reason: e.to_string(),
            })
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        attempts: Attempts,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        self.execute(
            || {
                self.client
                    .get(url.clone())
                    .query(query)
                    .bearer_auth(self.token.expose_secret())
            },
            attempts,
            path,
        )
        .await
    }

    /// POSTs `body`; retried requests carry the very same bytes.
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// PUTs `body`; retried requests carry the very same bytes.
    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::BadResponse {
            what: path.to_owned(),
            reason: format!("request body did not serialise: {e}"),
        })?;
        self.execute(
            || {
                self.client
                    .request(method.clone(), url.clone())
                    .bearer_auth(self.token.expose_secret())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone())
            },
            Attempts::Retry,
            path,
        )
        .await
    }

    /// The SSE request, resuming after `last_event_id`. It has no overall timeout: the
    /// stream stays open; the reader watches for idleness instead.
    pub(crate) fn stream_request(&self, last_event_id: Seq) -> Result<RequestBuilder, ClientError> {
        Ok(self
            .client
            .get(self.url("v1/stream")?)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("Last-Event-ID", last_event_id.0.to_string()))
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        build: impl Fn() -> RequestBuilder,
        attempts: Attempts,
        what: &str,
    ) -> Result<T, ClientError> {
        let (max_attempts, timeout) = match attempts {
            Attempts::Retry => (ATTEMPTS, REQUEST_TIMEOUT),
            Attempts::Probe => (1, Duration::from_secs(3)),
        };
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            let last = attempt >= max_attempts;
            match build().timeout(timeout).send().await {
                Ok(response) if response.status().is_success() => {
                    return response
                        .json::<T>()
                        .await
                        .map_err(|e| ClientError::BadResponse {
                            what: what.to_owned(),
                            reason: error_chain(&e),
                        });
                }
                Ok(response) => {
                    let status = response.status();
                    let error = api_error(response).await;
                    if last || !status.is_server_error() {
                        return Err(error.into());
                    }
                    tracing::debug!(what, %status, attempt, "server error, retrying");
                }
                Err(e) => {
                    if last || !is_transient(&e) {
                        return Err(ClientError::Unreachable {
                            url: self.base.to_string(),
                            reason: error_chain(&e),
                        });
                    }
                    tracing::debug!(what, attempt, error = %error_chain(&e), "request failed, retrying");
                }
            }
            tokio::time::sleep(jittered(delay)).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

/// Reads the API's error shape, or describes the status when the body is something else.
pub(crate) async fn api_error(response: Response) -> ApiError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => ApiError {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        },
        Err(_) => ApiError {
            status: status.as_u16(),
            code: fallback_code(status),
            message: format!(
                "HTTP {status} without the API's error shape; is the key file's server a NexySync API?"
            ),
        },
    }
}

fn fallback_code(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized".into(),
        StatusCode::NOT_FOUND => "not_found".into(),
        s if s.is_server_error() => "internal".into(),
        s => format!("http_{}", s.as_u16()),
    }
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request()
}

/// A reqwest error with its causes ("error sending request: connection refused").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `delay` scaled by a random factor in [0.5, 1.0], so reconnecting clients spread out.
pub(crate) fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}
