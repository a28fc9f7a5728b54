//! `nexysync-cdn`: the file service alone (`nexysync up` also runs it in-process).
//! Settings come from `NEXYSYNC_*` variables; see [`nexysync_cdn::Settings::from_vars`].

use anyhow::Context;
use nexysync_cdn::{Cdn, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = Settings::from_vars(|name| std::env::var(name).ok())?;
    tracing::info!(storage = ?settings.storage, "opening blob storage");
    let cdn = Cdn::build(settings).await?;
    // stdout carries the one line scripts (and the bench) need.
    println!("NexySync CDN is listening on http://{}", cdn.local_addr());
    cdn.run_until(nexysync_cdn::shutdown::signal())
        .await
        .context("the NexySync CDN stopped with an error")
}
