//! `ns_auth`: who am I (`status`), and switching to another key file (`login`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::answer::{Answer, ToolError};
use super::session::{Auth, Session};
use super::NexySyncMcp;
use crate::client::{Client, ClientError, StreamStatus};
use crate::key_file::KeyFile;

/// Parameters of `ns_auth`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuthParams {
    /// `status`: show this agent, its project, the server URL, whether the server answers,
    /// and the key file in use. `login`: switch to the key file at `path`.
    pub action: AuthAction,
    /// login: path of a NexySync key file (usually `.nexysync/key`); relative paths are
    /// resolved against the server's working directory.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum AuthAction {
    Status,
    Login,
}

#[derive(Debug, Serialize)]
struct StatusView {
    agent: serde_json::Value,
    project: serde_json::Value,
    server: String,
    server_reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file_warning: Option<String>,
    stream: StreamStatus,
}

pub(crate) async fn run(server: &NexySyncMcp, params: AuthParams) -> Result<Answer, ToolError> {
    match params.action {
        AuthAction::Status => status(server).await,
        AuthAction::Login => login(server, params.path).await,
    }
}

async fn status(server: &NexySyncMcp) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    let probe = session.client.probe().await;
    let reachable = match &probe {
        Ok(_) => true,
        // The server answered, even if it refused.
        Err(ClientError::Api(_)) => true,
        Err(_) => false,
    };
    let view = status_view(
        &session,
        reachable,
        probe.err().map(|e| ToolError::from(e).message),
    );
    let key = session.client.key_file();
    let summary = format!(
        "{} in project {} at {} ({}){}",
        key.agent.name,
        key.project.name,
        key.server,
        match (&view.server_error, reachable) {
            (None, _) => "reachable",
            (Some(_), true) => "reachable, but it refused this agent",
            (Some(_), false) => "NOT reachable",
        },
        view.key_file
            .as_ref()
            .map(|path| format!("; key file {path}"))
            .unwrap_or_default(),
    );
    Ok(Answer::new(summary, view))
}

async fn login(server: &NexySyncMcp, path: Option<String>) -> Result<Answer, ToolError> {
    let path = path.filter(|p| !p.trim().is_empty()).ok_or_else(|| {
        ToolError::invalid("login needs `path`: the key file to use, such as `.nexysync/key`")
    })?;
    let path = absolute(server.cwd(), Path::new(&path));
    let key = KeyFile::load(&path).map_err(|e| ToolError::new("key_file", e.to_string()))?;
    let client = Client::new(key)?;
    client.verify_identity().await.map_err(|e| {
        let mut error = ToolError::from(e);
        error.message.push_str("; the key in use did not change");
        error
    })?;
    let session = Arc::new(Session::start(
        client,
        Some(path.clone()),
        server.stream_options().clone(),
    ));
    server.replace_auth(Auth::Ready(session.clone())).await;
    tracing::info!(key_file = %path.display(), "logged in");
    let view = status_view(&session, true, None);
    let key = session.client.key_file();
    Ok(Answer::new(
        format!(
            "logged in as {} in project {} at {} (key file {})",
            key.agent.name,
            key.project.name,
            key.server,
            path.display()
        ),
        view,
    ))
}

fn status_view(session: &Session, reachable: bool, server_error: Option<String>) -> StatusView {
    let key = session.client.key_file();
    StatusView {
        agent: json!({ "id": key.agent.id, "name": key.agent.name }),
        project: json!({ "id": key.project.id, "name": key.project.name }),
        server: session.client.server_url().to_string(),
        server_reachable: reachable,
        server_error,
        key_file: session.key_path.as_ref().map(|p| p.display().to_string()),
        key_file_warning: session
            .key_path
            .as_deref()
            .and_then(KeyFile::permissions_problem),
        stream: session.stream.status(),
    }
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(path)
    }
}
