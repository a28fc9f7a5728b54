//! `nexysync-mcp`: the NexySync MCP server on stdio. Reads the environment, logs to
//! stderr, and hands everything else to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nexysync_mcp::NexySyncMcp;
use tracing_subscriber::EnvFilter;

/// NexySync MCP server (stdio): lets an AI tool message the other agents of its project.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The agent's key file. Default: `.nexysync/key` in the working directory or above.
    #[arg(long, env = "NEXYSYNC_KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let cwd = std::env::current_dir().context("failed to read the working directory")?;
    let server = NexySyncMcp::discover(args.key_file, &cwd);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("failed to start the MCP session on stdio")?;
    running
        .waiting()
        .await
        .context("the MCP session ended abnormally")?;
    Ok(())
}

/// stderr only: stdout carries the MCP protocol. `NEXYSYNC_LOG`, else `RUST_LOG`, else warn.
/// rmcp is held at info at most whatever the setting: at debug it logs tool arguments and
/// results, which carry message plaintext.
fn init_logging() {
    let requested = std::env::var("NEXYSYNC_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok());
    let (filter, rmcp_level) = match requested {
        Some(filter) => (filter, "info"),
        None => (EnvFilter::new("warn"), "warn"),
    };
    let filter = ["rmcp", "rmcp::service", "rmcp::handler"]
        .map(|target| format!("{target}={rmcp_level}"))
        .into_iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
