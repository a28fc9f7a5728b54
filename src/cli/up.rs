//! `nexysync up`: the API server, the projectors and the file service (CDN) in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use nexysync_api::Application;

use crate::admin_token;
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (IP:PORT; port 0 picks a free port). Default: NEXYSYNC_LISTEN,
    /// else 127.0.0.1:8707.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory for the server's local state (the generated admin token). Default:
    /// NEXYSYNC_DATA_DIR, else ~/.local/share/nexysync.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub async fn run(mut settings: Settings, args: Args) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        settings.data_dir = data_dir;
    }
    let (admin_token, token_origin) = admin_token::for_server(&settings)?;
    let cdn = start_cdn(&settings).await?;

    eprintln!(
        "Starting NexySync: NATS at {}, PostgreSQL at {}, stream prefix `{}`",
        settings.nats_url,
        settings.database_url_for_display(),
        settings.stream_prefix
    );
    let mut api = nexysync_api::Settings::new(
        settings.nats_url.clone(),
        settings.database_url.expose().to_owned(),
        admin_token,
    );
    api.listen = settings.listen;
    api.stream_prefix = settings.stream_prefix.clone();
    api.heartbeat = settings.sse_heartbeat;
    api.quota = settings.quota;
    api.presence_heartbeat = settings.presence_heartbeat;
    api.presence_timeout = settings.presence_timeout;
    api.run_projectors = true;
    api.files.cdn_url = cdn.url.clone();
    api.files.cdn_internal_url = cdn.url.clone();
    api.files.url_secret = cdn.secret.clone();
    if let Some(quota) = file_quota()? {
        api.files.quota_bytes = quota;
    }
    api.pruner = Some(pruner_settings()?);

    let app = Application::build(api).await.with_context(|| {
        format!(
            "failed to start the NexySync server. Are NATS (with JetStream) at {} and PostgreSQL at {} \
             running? `make up` installs and starts both (or set NEXYSYNC_NATS_URL and DATABASE_URL to where they run)",
            settings.nats_url,
            settings.database_url_for_display()
        )
    })?;

    // stdout carries the one line scripts need (the URL, with the real port when the
    // requested one was 0); everything else goes to stderr.
    let url = format!("http://{}", app.local_addr());
    println!("NexySync is listening on {url}");
    eprintln!("Admin token: {token_origin}");
    eprintln!(
        "File service (CDN) on {} storing {:?}; URL secret in {}",
        cdn.url, cdn.storage, cdn.secret_origin
    );
    let server_flag = if url == settings.url {
        String::new()
    } else {
        format!(" --server {url}")
    };
    eprintln!("Next: nexysync project create NAME{server_flag}   (Ctrl-C stops the server)");
    let result = app
        .run_until_stopped()
        .await
        .context("the NexySync server stopped with an error");
    let _ = cdn.stop.send(());
    result
}

/// The CDN as `nexysync up` runs it.
struct RunningCdn {
    url: String,
    storage: nexysync_cdn::Storage,
    secret: nexysync_domain::blob_url::UrlSecret,
    secret_origin: String,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the file service in this process, with the CDN's own settings
/// (`NEXYSYNC_CDN_LISTEN`, `NEXYSYNC_BLOB_DIR`, `NEXYSYNC_S3_*`, `NEXYSYNC_URL_SECRET`, see
/// `nexysync-cdn`) and this command's data directory. `NEXYSYNC_CDN_URL` overrides the URL
/// handed to clients (behind a proxy).
async fn start_cdn(settings: &Settings) -> anyhow::Result<RunningCdn> {
    let data_dir = settings.data_dir.clone();
    let env = |name: &str| match name {
        "NEXYSYNC_DATA_DIR" => Some(data_dir.display().to_string()),
        other => std::env::var(other).ok().filter(|v| !v.is_empty()),
    };
    let secret_origin = if env("NEXYSYNC_URL_SECRET").is_some() {
        "NEXYSYNC_URL_SECRET".to_owned()
    } else {
        data_dir
            .join(nexysync_cdn::settings::SECRET_FILE)
            .display()
            .to_string()
    };
    let cdn_settings = nexysync_cdn::Settings::from_vars(env)?;
    let storage = cdn_settings.storage.clone();
    let secret = cdn_settings.url_secret.clone();
    let cdn = nexysync_cdn::Cdn::build(cdn_settings)
        .await
        .context("failed to start the file service (CDN)")?;
    let url = std::env::var("NEXYSYNC_CDN_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("http://{}", cdn.local_addr()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = cdn
            .run_until(async move {
                let _ = stopped.await;
            })
            .await
        {
            tracing::error!(error = %e, "the file service stopped");
        }
    });
    Ok(RunningCdn {
        url,
        storage,
        secret,
        secret_origin,
        stop,
    })
}

/// The retention pruner's timing: `NEXYSYNC_PRUNE_INTERVAL_S` between runs (default 60)
/// and `NEXYSYNC_PRUNE_GRACE_S` after a message's expiry before it is erased (default 30;
/// it is hidden from its expiry on either way).
fn pruner_settings() -> anyhow::Result<nexysync_projections::PrunerSettings> {
    let seconds = |name: &str, default: u64| -> anyhow::Result<u64> {
        match std::env::var(name).ok().filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{name} `{text}` must be a whole number of seconds")),
        }
    };
    let interval = seconds("NEXYSYNC_PRUNE_INTERVAL_S", 60)?.max(1);
    Ok(nexysync_projections::PrunerSettings {
        interval: std::time::Duration::from_secs(interval),
        grace: std::time::Duration::from_secs(seconds("NEXYSYNC_PRUNE_GRACE_S", 30)?),
        catch_up: std::time::Duration::from_secs(30),
    })
}

/// `NEXYSYNC_FILE_QUOTA_BYTES`: ciphertext bytes a project may keep in files.
fn file_quota() -> anyhow::Result<Option<u64>> {
    std::env::var("NEXYSYNC_FILE_QUOTA_BYTES")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .context("NEXYSYNC_FILE_QUOTA_BYTES must be a whole number of bytes")
        })
        .transpose()
}
