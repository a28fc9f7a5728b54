//! `nexysync projections status | rebuild`: the operator's view of the read models.

use anyhow::bail;
use nexysync_projections::{RebuildProgress, READ_MODELS};

use crate::audit::open_log;
use crate::audit::progress::Progress;
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The read model to rebuild (today there is one, `read_models`: every table the API
    /// reads). Default: all of them.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

pub async fn status(settings: Settings, args: StatusArgs) -> anyhow::Result<()> {
    let log = open_log(&settings).await?;
    let models = nexysync_projections::status(settings.database_url.expose(), &log).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>9} {:>11} {:>10} {:>8}  state",
        "read model", "version", "checkpoint", "log head", "lag"
    );
    for model in models {
        let version = match model.version {
            Some(version) => version.to_string(),
            None => "-".into(),
        };
        let state = match (model.version, model.current, model.rebuilding_at) {
            (_, _, Some(at)) => format!("rebuilding (at seq {at})"),
            (None, _, None) => "missing: created when `nexysync up` starts".into(),
            (Some(_), true, None) => "live".into(),
            (Some(_), false, None) => format!(
                "outdated (this build expects version {}): run `nexysync projections rebuild`",
                model.expected_version
            ),
        };
        println!(
            "{:<12} {:>9} {:>11} {:>10} {:>8}  {state}",
            model.name, version, model.checkpoint, model.log_head, model.lag
        );
    }
    Ok(())
}

pub async fn rebuild(settings: Settings, args: RebuildArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.name {
        if name != READ_MODELS {
            bail!("no read model named {name:?}; the read models are: {READ_MODELS}");
        }
    }
    let log = open_log(&settings).await?;
    let mut progress: Option<Progress> = None;
    let report = nexysync_projections::rebuild(
        settings.database_url.expose(),
        &log,
        |state: &RebuildProgress| {
            progress
                .get_or_insert_with(|| {
                    Progress::on_terminal("rebuild", Some(state.target), true).every_tick()
                })
                .tick(state.events, state.applied);
        },
    )
    .await?;
    if let Some(progress) = progress.as_mut() {
        progress.finish();
    }
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "rebuilt {READ_MODELS} (version {}) from {} events in {seconds:.1} s ({:.0} events/s); readers switched at seq {}",
        report.version,
        report.events,
        report.events as f64 / seconds.max(1e-3),
        report.switched_at
    );
    Ok(())
}
