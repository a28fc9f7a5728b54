//! The sweeper of uploads declared and never committed: once an upload's URL has expired
//! (plus a grace period, so a commit that checked the expiry a moment before still finds
//! its blob), its blob is removed from the CDN and its row forgotten. An upload cut off
//! halfway therefore leaves nothing behind for ever, and neither does a client that
//! uploaded and never committed. Every instance may sweep: removing twice is harmless.

use std::time::Duration;

use nexysync_projections::ReadModels;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::cdn::CdnClient;

/// How long after its URL expired an upload is swept, at most: a commit takes far less
/// between checking the expiry and appending.
const GRACE: Duration = Duration::from_secs(60);
/// Uploads swept per round.
const BATCH: u32 = 100;

/// Sweeps every `sweep_interval` until `stopped` turns true.
pub async fn run(reads: ReadModels, cdn: CdnClient, mut stopped: watch::Receiver<bool>) {
    let interval = cdn.settings().sweep_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
        if *stopped.borrow() {
            return;
        }
        if let Err(e) = sweep_once(&reads, &cdn).await {
            warn!(error = %e, "sweeping expired uploads failed; retrying later");
        }
    }
}

async fn sweep_once(reads: &ReadModels, cdn: &CdnClient) -> anyhow::Result<()> {
    let grace = GRACE.min(cdn.settings().upload_url_ttl);
    let before = chrono::Utc::now() - grace;
    for (project, file) in reads.expired_uploads(before, BATCH).await? {
        cdn.remove(project, file).await?;
        reads.forget_upload(project, file).await?;
        debug!(%file, "expired upload swept");
    }
    Ok(())
}
