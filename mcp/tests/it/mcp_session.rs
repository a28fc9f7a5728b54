//! Drives a [`NexySyncMcp`] through a real rmcp client over an in-memory pipe.

use std::time::Duration;

use nexysync_mcp::client::StreamOptions;
use nexysync_mcp::key_file::KeyFile;
use nexysync_mcp::NexySyncMcp;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

/// An MCP client connected to a server for `key` (or none).
pub struct McpSession {
    pub client: RunningService<RoleClient, ()>,
}

/// Short timeouts so tests notice dead streams quickly.
pub fn test_stream_options() -> StreamOptions {
    StreamOptions {
        idle_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(300),
        buffer: 256,
    }
}

impl McpSession {
    pub async fn start(key: Option<KeyFile>) -> McpSession {
        Self::with_server(NexySyncMcp::with_options(key, None, test_stream_options())).await
    }

    pub async fn with_server(server: NexySyncMcp) -> McpSession {
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = server.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        let client = ().serve(client_io).await.expect("MCP client initialises");
        McpSession { client }
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        let arguments = arguments.as_object().cloned().unwrap_or_default();
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
            .await
            .expect("a tool call gets an answer, never a protocol error")
    }
}

/// The text a model would read.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn is_error(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
}

pub fn structured(result: &CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or(Value::Null)
}
