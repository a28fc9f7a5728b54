//! `nexysync bench`: measure a live system against the raw NATS floor of the same run.

use std::path::PathBuf;
use std::time::Duration;

use crate::admin_token;
use crate::bench::{self, BenchOptions};
use crate::settings::{validate_server_url, Settings};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
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

    /// Measure files instead: upload and download of one file (through its own API in
    /// this process and a `nexysync-cdn` child, on the configured NATS and PostgreSQL)
    /// beside a plain disk copy, and the CDN's peak memory.
    #[arg(long)]
    pub files: bool,

    /// Size of the file of `--files`, in MiB.
    #[arg(long, default_value_t = 256)]
    pub file_mib: u64,
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
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
    };
    let report = bench::run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
