//! `nexysync audit verify | replay | export`: prove a project's history from the log.

use std::path::PathBuf;

use anyhow::bail;
use nexysync_domain::ids::Seq;

use crate::audit::replay::{Format, ReadingKeys, ReplayOptions};
use crate::audit::{export, replay, resolve_project, verify, AuditFailure};
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
#[group(id = "target", required = true, multiple = false, args = ["project", "bundle"])]
pub struct VerifyArgs {
    /// The project on the live log: its id, or the name of a project file in
    /// NEXYSYNC_HOME/projects. Reads NEXYSYNC_NATS_URL and NEXYSYNC_STREAM_PREFIX.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,

    /// A bundle written by `nexysync audit export`, verified with no server.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The project: its id, or the name of a project file in NEXYSYNC_HOME/projects.
    /// Default: the project of the key file.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,

    /// An agent key file (DIR/.nexysync/key) or the owner's project file: the project key
    /// opens the content, and the owner key it trusts must be the one that created the log.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,

    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Print events from this stream sequence on (every event is still verified, from the
    /// first).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The project: its id, or the name of a project file in NEXYSYNC_HOME/projects.
    #[arg(long, value_name = "PROJECT")]
    pub project: String,

    /// The bundle directory (created if missing; existing bundle files are never
    /// overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub async fn verify(settings: Settings, args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.bundle {
        let (manifest, summary) = verify::bundle(dir).await?;
        print!("{}", verify::report(&summary));
        println!(
            "The bundle's manifest matches its events (count, sequences, head hash and the \
             SHA-256 {} of {}).",
            manifest.events_sha256,
            crate::audit::bundle::EVENTS_FILE
        );
        return Ok(());
    }
    let Some(project) = &args.project else {
        bail!("pass --project PROJECT or --bundle DIR");
    };
    let project = resolve_project(&settings, project)?;
    let summary = verify::live(&settings, project).await?;
    print!("{}", verify::report(&summary));
    Ok(())
}

pub async fn replay(settings: Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let keys = ReadingKeys::load(&args.key_file)?;
    let project = match &args.project {
        Some(text) => resolve_project(&settings, text)?,
        None => keys.project,
    };
    if project != keys.project {
        bail!(
            "{} holds the keys of project {}, not of project {project}",
            args.key_file.display(),
            keys.project
        );
    }
    let options = ReplayOptions {
        project,
        format: args.format,
        since: Seq(args.since),
    };
    replay::replay(&settings, &keys, &options).await
}

pub async fn export(settings: Settings, args: ExportArgs) -> anyhow::Result<()> {
    let project = resolve_project(&settings, &args.project)?;
    let exported = export::export(&settings, project, &args.out).await?;
    let manifest = &exported.manifest;
    println!(
        "Exported {} events of project {} (seq {} to {}) to {}",
        manifest.events,
        manifest.project,
        manifest.first_seq,
        manifest.last_seq,
        args.out.display()
    );
    println!("  head hash: {}", manifest.head_hash.to_hex());
    println!(
        "  verify it anywhere with: nexysync audit verify --bundle {}",
        args.out.display()
    );
    match exported.failure {
        None => Ok(()),
        Some(failure) => Err(anyhow::Error::new(AuditFailure::from(failure))
            .context("the bundle was written, but the history it holds does not verify")),
    }
}
