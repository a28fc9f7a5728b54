//! `nexysync up`: the API server and the projectors in one process.

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
    let server_flag = if url == settings.url {
        String::new()
    } else {
        format!(" --server {url}")
    };
    eprintln!("Next: nexysync project create NAME{server_flag}   (Ctrl-C stops the server)");
    app.run_until_stopped()
        .await
        .context("the NexySync server stopped with an error")
}
