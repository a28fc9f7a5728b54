//! A whole NexySync system through the real binaries, as a new user runs it: a
//! nats-server of its own, `nexysync up`, `nexysync project create`, `nexysync agent add`,
//! and one `nexysync-mcp` per agent over stdio ([`McpAgent`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

use crate::processes::{binary, nexysync, RunningServer, ThrowawayNats};
use crate::{postgres_server_url, unique_name};

/// A nats-server, a database and `nexysync up`, all of this test's own, under one
/// temporary directory.
#[derive(Debug)]
pub struct LocalSystem {
    pub root: tempfile::TempDir,
    pub nats: ThrowawayNats,
    pub server: RunningServer,
    pub database: String,
    /// The environment every `nexysync` command of this system runs with.
    pub envs: Vec<(&'static str, String)>,
}

impl LocalSystem {
    /// Starts the system; `extra` adds settings (e.g. quotas) to its environment.
    pub async fn start(extra: &[(&'static str, String)]) -> Self {
        crate::init_logging();
        let root = tempfile::tempdir().expect("a temporary directory");
        let dir = |name: &str| make_dir(root.path(), name);
        let nats = ThrowawayNats::start(&dir("nats")).await;
        let database = unique_name("sys");
        let data_dir = dir("data");
        let mut envs = vec![
            ("NEXYSYNC_NATS_URL", nats.url.clone()),
            (
                "DATABASE_URL",
                format!("{}/{database}", postgres_server_url()),
            ),
            ("NEXYSYNC_HOME", dir("home").display().to_string()),
            ("NEXYSYNC_DATA_DIR", data_dir.display().to_string()),
            ("NEXYSYNC_ADMIN_TOKEN", String::new()),
        ];
        envs.extend(extra.iter().cloned());
        let server = RunningServer::start(&envs, &data_dir).await;
        Self {
            root,
            nats,
            server,
            database,
            envs,
        }
    }

    /// `root/name`, created if missing.
    pub fn dir(&self, name: &str) -> PathBuf {
        make_dir(self.root.path(), name)
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", postgres_server_url(), self.database)
    }

    /// `nexysync project create NAME`.
    pub async fn create_project(&self, name: &str) {
        nexysync(
            &["project", "create", name, "--server", &self.server.url],
            &self.envs,
        )
        .await;
    }

    /// `nexysync agent add PROJECT AGENT --dir root/AGENT`, then its `nexysync-mcp`.
    pub async fn add_agent(&self, project: &str, agent: &str) -> McpAgent {
        let dir = self.dir(agent).display().to_string();
        nexysync(&["agent", "add", project, agent, "--dir", &dir], &self.envs).await;
        McpAgent::start(&self.dir(agent)).await
    }

    /// A `pg_dump` of the system's database.
    pub async fn pg_dump(&self) -> Vec<u8> {
        let dump = tokio::process::Command::new("pg_dump")
            .arg(self.database_url())
            .output()
            .await
            .expect("pg_dump runs");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        dump.stdout
    }

    /// Stops everything, drops the database, and returns every file the servers left on
    /// disk (the NATS store and the data dir), for tests that search them.
    pub async fn stop(self) -> Vec<(PathBuf, Vec<u8>)> {
        self.server.stop().await;
        self.nats.stop().await;
        let mut stored = files_under(&self.root.path().join("nats"));
        stored.extend(files_under(&self.root.path().join("data")));
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
        stored
    }
}

fn make_dir(root: &Path, name: &str) -> PathBuf {
    let path = root.join(name);
    std::fs::create_dir_all(&path).expect("a test directory");
    path
}

/// One agent's `nexysync-mcp`, started in the agent's directory like an AI tool would.
#[derive(Debug)]
pub struct McpAgent {
    pub client: RunningService<RoleClient, ()>,
}

impl McpAgent {
    pub async fn start(dir: &Path) -> Self {
        let command = tokio::process::Command::new(binary("nexysync-mcp")).configure(|cmd| {
            cmd.current_dir(dir).env_remove("NEXYSYNC_KEY_FILE");
        });
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(Stdio::null())
            .spawn()
            .expect("nexysync-mcp starts");
        let client = ().serve(transport).await.expect("MCP handshake");
        Self { client }
    }

    /// Calls `tool` and returns its result, error or not.
    pub async fn raw(&self, tool: &str, arguments: Value) -> CallToolResult {
        call(self.client.peer(), tool, arguments).await
    }

    /// Calls `tool`, expects success, and returns its structured answer.
    pub async fn call(&self, tool: &str, arguments: Value) -> Value {
        let result = self.raw(tool, arguments).await;
        assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
        result.structured_content.expect("structured answer")
    }

    /// `ns_message` with `arguments`, expecting success.
    pub async fn message(&self, arguments: Value) -> Value {
        self.call("ns_message", arguments).await
    }

    /// Calls `tool`, expects an `isError` answer, and returns its text.
    pub async fn refused(&self, tool: &str, arguments: Value) -> String {
        let result = self.raw(tool, arguments.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool} {arguments} should be refused: {result:?}"
        );
        serde_json::to_string(&result.content).unwrap_or_default()
    }

    /// Calls `tool` until `done` holds for its answer, or panics after `deadline`.
    pub async fn call_until(
        &self,
        tool: &str,
        arguments: Value,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let answer = self.call(tool, arguments.clone()).await;
            if done(&answer) {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{tool} {arguments} never answered as expected; last: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        let _ = self.client.cancel().await;
    }
}

/// Calls `tool` on `peer`.
pub async fn call(peer: &rmcp::Peer<RoleClient>, tool: &str, arguments: Value) -> CallToolResult {
    peer.call_tool(
        CallToolRequestParams::new(tool.to_owned())
            .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
    )
    .await
    .expect("a tool answers")
}

/// Every file under `dir` with its bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
