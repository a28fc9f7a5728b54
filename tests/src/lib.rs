//! Test harness for NexySync's integration and end-to-end tests, against the real
//! nats-server and PostgreSQL of this machine. Each [`TestEnv`] gets its own stream
//! prefix and its own database, both removed by [`TestEnv::cleanup`].
//!
//! Servers: `NEXYSYNC_TEST_NATS_URL` (default `nats://127.0.0.1:4222`) and
//! `NEXYSYNC_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`, a server
//! URL without a database). Set `TEST_LOG=1` to see the servers' logs.

// A test harness: a panic here is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agents;
pub mod files;
pub mod kv;
pub mod meta;
pub mod processes;
pub mod refs;
pub mod state;
pub mod system;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use nexysync_api::{Application, Secret, Settings};
use tokio::sync::oneshot;

pub use agents::{TestAgent, TestProject};

pub fn nats_url() -> String {
    std::env::var("NEXYSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn postgres_server_url() -> String {
    std::env::var("NEXYSYNC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Logs to the test output when `TEST_LOG=1`.
pub fn init_logging() {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,nexysync=debug"))
            .with_test_writer()
            .try_init();
    }
}

/// A unique, valid name for a stream prefix or database.
pub fn unique_name(kind: &str) -> String {
    format!("t{kind}{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// Isolated servers for one test: a stream prefix, a database, an admin token.
#[derive(Debug)]
pub struct TestEnv {
    pub prefix: String,
    pub database: String,
    pub admin_token: String,
}

impl TestEnv {
    pub fn new() -> Self {
        init_logging();
        Self {
            prefix: unique_name("p"),
            database: unique_name("db"),
            admin_token: format!("nsadm_{}", hex::encode(rand::random::<[u8; 16]>())),
        }
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", postgres_server_url(), self.database)
    }

    /// API settings for this environment, listening on a free port.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new(
            nats_url(),
            self.database_url(),
            Secret::new(self.admin_token.clone()),
        );
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.stream_prefix = self.prefix.clone();
        settings
    }

    /// Starts an API instance in this process.
    pub async fn spawn_api(&self) -> TestApi {
        self.spawn_api_with(self.settings()).await
    }

    pub async fn spawn_api_with(&self, settings: Settings) -> TestApi {
        let app = Application::build(settings).await.expect("the API starts");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApi {
            url: format!("http://{addr}"),
            http: reqwest::Client::new(),
            admin_token: self.admin_token.clone(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A connection to this environment's database, resolving names in the live read
    /// models' schema.
    pub async fn pool(&self) -> sqlx::PgPool {
        nexysync_projections::db::connect(
            &self.database_url(),
            4,
            nexysync_projections::db::LIVE_SCHEMA,
        )
        .await
        .expect("test database")
    }

    /// The event log of this environment.
    pub async fn log(&self) -> nexysync_log::EventLog {
        let client = async_nats::connect(nats_url())
            .await
            .expect("nats-server is running");
        nexysync_log::EventLog::connect(client, nexysync_log::Prefix::parse(&self.prefix).unwrap())
            .await
            .expect("event stream")
    }

    /// Removes the stream and the database.
    pub async fn cleanup(self) {
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let jetstream = async_nats::jetstream::new(client);
            for stream in ["events", "presence"] {
                let _ = jetstream
                    .delete_stream(format!("{}_{stream}", self.prefix))
                    .await;
            }
        }
        if let Ok(pool) =
            sqlx::PgPool::connect(&format!("{}/postgres", postgres_server_url())).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .execute(&pool)
            .await;
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A running API instance.
#[derive(Debug)]
pub struct TestApi {
    pub url: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApi {
    /// Kills the server's main future without a graceful shutdown: its presence
    /// heartbeats stop and it never says goodbye, as when the process dies. (Tasks it
    /// spawned, like open connections, may linger until the test ends.)
    pub async fn crash(mut self) {
        // Dropping the stop sender first would ask for a graceful shutdown.
        let stop = self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        drop(stop);
    }

    /// POSTs `body` to `path` (under the API URL) with the admin token; the status and JSON
    /// answer.
    pub async fn admin_post(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .unwrap();
        json_of(response).await.unwrap()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > until {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a whole HTTP answer as JSON, with its status.
pub async fn json_of(response: reqwest::Response) -> anyhow::Result<(u16, serde_json::Value)> {
    let status = response.status().as_u16();
    let text = response.text().await.context("failed to read the body")?;
    let value = serde_json::from_str(&text).with_context(|| format!("body is not JSON: {text}"))?;
    Ok((status, value))
}
