//! The command line: one clap-derived tree, one file per command.

pub mod agent;
pub mod audit;
pub mod bench;
pub mod project;
pub mod projections;
pub mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

/// NexySync: end-to-end-encrypted, event-sourced messaging for AI agents.
///
/// Run the server with `nexysync up`, create a project with `nexysync project create NAME`,
/// and give each agent its key file with `nexysync agent add NAME AGENT --dir PATH`.
/// Settings come from defaults, then the settings file, then NEXYSYNC_* environment
/// variables (NEXYSYNC_NATS_URL, DATABASE_URL, NEXYSYNC_STREAM_PREFIX, NEXYSYNC_ADMIN_TOKEN,
/// NEXYSYNC_HOME, NEXYSYNC_URL, NEXYSYNC_LISTEN, NEXYSYNC_DATA_DIR, NEXYSYNC_SSE_HEARTBEAT_S),
/// then flags.
#[derive(Debug, Parser)]
#[command(name = "nexysync", version, propagate_version = true)]
pub struct Cli {
    /// Settings file (TOML). Default: NEXYSYNC_HOME/config.toml, when it exists.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "NEXYSYNC_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the NexySync server on this machine: the API, the projectors and the file
    /// service (CDN) in one process.
    ///
    /// Needs NATS with JetStream (NEXYSYNC_NATS_URL) and PostgreSQL (DATABASE_URL); `make up`
    /// installs and starts both. The admin token that guards provisioning comes from
    /// NEXYSYNC_ADMIN_TOKEN, or is generated once into DATA_DIR/admin-token (mode 0600).
    /// Stops on Ctrl-C or SIGTERM.
    Up(up::Args),

    /// Manage projects: a project is a group of agents that share a key.
    #[command(subcommand)]
    Project(ProjectCommand),

    /// Manage the agents of a project.
    #[command(subcommand)]
    Agent(AgentCommand),

    /// Audit a project's history from the log itself: verify, replay, export.
    ///
    /// Verify it (no key needed), replay it decrypted, or export it as a bundle that
    /// verifies with no server.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Operate the read models (PostgreSQL), which are derived from the log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),

    /// Measure a running server: send latency, throughput and SSE delivery, each beside
    /// the raw NATS JetStream floor measured in the same run.
    ///
    /// Provisions a project and agents of its own (with the admin token) and a stream of
    /// its own for the floor, deleted at the end. Targets: send p50 ≤ 5x raw, p99 ≤ 10x
    /// raw; 64-sender throughput ≥ 25% of raw; delivery to 1,000 subscribers p50 < 5 ms,
    /// p99 < 25 ms. With `--files`: upload and download of a 256 MiB file through its own
    /// API and a `nexysync-cdn` child, beside a plain disk copy (target ≥ 50%), and the CDN's
    /// peak memory (target < 64 MiB).
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project on the server and save its keys on this machine.
    ///
    /// Generates the project key and the owner signing key here, registers the project with
    /// the server (which sees only the owner's public key) and saves both keys to
    /// NEXYSYNC_HOME/projects/NAME.json (mode 0600). Keep that file: it is needed to add
    /// agents.
    Create(project::CreateArgs),
    /// Set a project's retention policy (owner-signed, for messages sent from now on).
    ///
    /// `--default-ttl` is how long a message lives when it names no TTL, `--max-ttl` the
    /// longest it may ask for (`3600`, `12h`, `7d`). A flag left out means "for ever" or
    /// "no maximum": the new policy replaces the old one as a whole.
    Retention(project::RetentionSetArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that a project's history is authentic and complete; needs no key.
    ///
    /// The first event must be the owner's project_created, every registration signed by
    /// the owner key, every agent event by the key registered for its actor, and the hash
    /// chain unbroken (nothing dropped, changed or reordered). On the first event that breaks a rule, names its sequence and the rule and exits
    /// with status 2 (status 1 is any other error).
    Verify(audit::VerifyArgs),

    /// Print a project's history decrypted, verifying every event before printing it.
    ///
    /// Streams the events in log order, opened with the project key of the key file;
    /// exits with status 2 at the first broken rule, as `verify` does.
    Replay(audit::ReplayArgs),

    /// Write a project's history into a bundle that verifies with no server.
    ///
    /// DIR/events.jsonl holds every event as stored, DIR/manifest.json the count, the
    /// sequences, the head hash and the SHA-256 of the events. Check it anywhere with
    /// `nexysync audit verify --bundle DIR`.
    Export(audit::ExportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each read model's version, checkpoint and lag behind the log.
    ///
    /// Reads DATABASE_URL and the log (NEXYSYNC_NATS_URL, NEXYSYNC_STREAM_PREFIX); changes
    /// nothing.
    Status(projections::StatusArgs),

    /// Rebuild the read models from sequence 1, with no downtime.
    ///
    /// Builds the new version in a schema beside the live one while the API keeps serving,
    /// catches up with the log, switches every reader over in one transaction, then drops
    /// the old schema. Safe to interrupt: the live read models are untouched until the
    /// switch, and the next rebuild starts afresh.
    Rebuild(projections::RebuildArgs),
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent and write its key file into the agent's working directory.
    ///
    /// Generates the agent's signing key and bearer token here, registers the agent with a
    /// registration signed by the project's owner key, and writes DIR/.nexysync/key
    /// (mode 0600), which `nexysync-mcp` finds when started in DIR or below.
    Add(agent::AddArgs),
}

impl Cli {
    /// The log level when RUST_LOG is not set: the server logs its progress, the one-shot
    /// commands only warnings (their output is the progress).
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Up(_) => "info",
            _ => "warn",
        }
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_environment(cli.config.as_deref())?;
    match cli.command {
        Command::Up(args) => up::run(settings, args).await,
        Command::Project(ProjectCommand::Create(args)) => project::create(settings, args).await,
        Command::Project(ProjectCommand::Retention(args)) => {
            project::set_retention(settings, args).await
        }
        Command::Agent(AgentCommand::Add(args)) => agent::add(settings, args).await,
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(settings, args).await,
        Command::Audit(AuditCommand::Replay(args)) => audit::replay(settings, args).await,
        Command::Audit(AuditCommand::Export(args)) => audit::export(settings, args).await,
        Command::Projections(ProjectionsCommand::Status(args)) => {
            projections::status(settings, args).await
        }
        Command::Projections(ProjectionsCommand::Rebuild(args)) => {
            projections::rebuild(settings, args).await
        }
        Command::Bench(args) => bench::run(settings, args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn names_are_validated_when_parsed() {
        let err = Cli::try_parse_from(["nexysync", "project", "create", "../etc"]).unwrap_err();
        assert!(err.to_string().contains("invalid"), "{err}");
        assert!(Cli::try_parse_from(["nexysync", "agent", "add", "demo", "alice"]).is_ok());
    }
}
