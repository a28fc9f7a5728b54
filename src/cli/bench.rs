//! `nexysync bench`: measure a live system against the raw NATS floor of the same run.

use std::path::PathBuf;
use std::time::Duration;

use crate::admin_token;
use crate::bench::{self, BenchOptions};
use crate::settings::{validate_server_url, Settings};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub log_side: Option<BenchCommand>,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// The NexySync API server to measure. Default: NEXYSYNC_URL, else http://127.0.0.1:8707.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// File holding the server's admin token (the bench provisions its own project).
    /// Default: NEXYSYNC_ADMIN_TOKEN, else DATA_DIR/admin-token.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Sequential sends for the latency figures.
    #[arg(long, default_value_t = 2000)]
    pub sends: usize,

    /// Concurrent senders for the throughput figure.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Projects the concurrent senders are spread over.
    #[arg(long, default_value_t = 1)]
    pub projects: usize,

    /// Seconds the throughput figure runs for.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,

    /// Agents holding an SSE stream for the delivery figure.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,

    /// Broadcasts timed to every subscriber.
    #[arg(long, default_value_t = 50)]
    pub deliveries: usize,

    /// Sequential KV sets, and as many gets, for the KV latency figures.
    #[arg(long, default_value_t = 2000)]
    pub kv_ops: usize,

    /// Agents compare-and-setting one key for the CAS figure (for --seconds).
    #[arg(long, default_value_t = 8)]
    pub cas_agents: usize,

    /// Measure files instead: upload and download of one file (through its own API in
    /// this process and a `nexysync-cdn` child, on the configured NATS and PostgreSQL)
    /// beside a plain disk copy, and the CDN's peak memory.
    #[arg(long)]
    pub files: bool,

    /// Size of the file of `--files`, in MiB.
    #[arg(long, default_value_t = 256)]
    pub file_mib: u64,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Rebuild and audit-verify rates over a log of the bench's own, beside the raw
    /// ordered-consumer replay and a plain batched PostgreSQL insert of the same run.
    ///
    /// Needs no running server: writes EVENTS signed events straight to a stream of its
    /// own on NEXYSYNC_NATS_URL and rebuilds them into a database of its own on the
    /// server of DATABASE_URL; both are deleted at the end. Targets: rebuild at least 70%
    /// of the insert rate, 1,000,000 events in under a minute; verify at least 30% of the
    /// raw replay.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Events in the log (one project: its creation, two agents, then messages).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCommand::Replay(replay)) = &args.log_side {
        anyhow::ensure!(replay.events >= 3, "--events must be at least 3");
        let report = bench::replay::run(
            &settings.nats_url,
            settings.database_url.expose(),
            replay.events,
        )
        .await?;
        if replay.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    if args.files {
        let report = bench::files::run(&bench::files::FilesOptions {
            nats_url: settings.nats_url.clone(),
            database_url: settings.database_url.expose().to_owned(),
            mib: args.file_mib,
        })
        .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    let server = match &args.server {
        Some(url) => validate_server_url(url)?,
        None => settings.url.clone(),
    };
    let (admin_token, _) = admin_token::for_client(args.admin_token_file.as_deref(), &settings)?;
    anyhow::ensure!(
        args.sends > 0 && args.concurrency > 0,
        "--sends and --concurrency must be positive"
    );
    anyhow::ensure!(
        args.subscribers > 0 && args.deliveries > 0,
        "--subscribers and --deliveries must be positive"
    );
    anyhow::ensure!(
        args.kv_ops > 0 && args.cas_agents > 0,
        "--kv-ops and --cas-agents must be positive"
    );
    let options = BenchOptions {
        server,
        admin_token,
        nats_url: settings.nats_url.clone(),
        sends: args.sends,
        concurrency: args.concurrency,
        projects: args.projects.clamp(1, args.concurrency),
        throughput_for: Duration::from_secs(args.seconds.max(1)),
        subscribers: args.subscribers,
        deliveries: args.deliveries,
        kv_ops: args.kv_ops,
        cas_agents: args.cas_agents,
    };
    let report = bench::run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
