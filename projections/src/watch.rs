//! Read-your-writes: knowing how far the read models have applied the log, and waiting
//! (bounded) until they reach a sequence. Fed by the projector's `NOTIFY` after each
//! commit, so it works whichever instance runs the projector.

use std::time::Duration;

use nexysync_domain::ids::Seq;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::warn;

use crate::projector::{load_checkpoint, CHECKPOINT_CHANNEL, READ_MODELS};
use crate::ProjectionError;

/// The read models' applied sequence, kept current in the background.
#[derive(Debug, Clone)]
pub struct ProjectionWatch {
    applied: watch::Receiver<Seq>,
    pool: PgPool,
}

impl ProjectionWatch {
    /// Starts listening for checkpoints. The listener task ends once every clone of the
    /// watch is dropped (as a stopped API drops its own), not when the database goes.
    pub async fn start(pool: PgPool) -> Result<Self, ProjectionError> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHECKPOINT_CHANNEL).await?;
        let initial = load_checkpoint(&pool, READ_MODELS).await?;
        let (sender, applied) = watch::channel(initial);
        let task_pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let heard = tokio::select! {
                    biased;
                    () = sender.closed() => break,
                    heard = listener.recv() => heard,
                };
                let seq = match heard {
                    Ok(notification) => notification.payload().parse().ok().map(Seq),
                    Err(_) if sender.is_closed() => break,
                    Err(e) => {
                        // The listener reconnects by itself; what it missed meanwhile is
                        // in the table.
                        warn!(error = %e, "checkpoint listener interrupted");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        load_checkpoint(&task_pool, READ_MODELS).await.ok()
                    }
                };
                if let Some(seq) = seq {
                    sender.send_if_modified(|current| {
                        let newer = seq > *current;
                        if newer {
                            *current = seq;
                        }
                        newer
                    });
                }
            }
        });
        Ok(Self { applied, pool })
    }

    /// The last sequence the read models have applied, as last heard.
    pub fn applied(&self) -> Seq {
        *self.applied.borrow()
    }

    /// Waits until the read models have applied `min`, at most `timeout`.
    pub async fn wait_for(&self, min: Seq, timeout: Duration) -> Result<(), ProjectionError> {
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(timeout, applied.wait_for(|seq| *seq >= min))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            return Ok(());
        }
        // A notification may have been lost in a reconnect: ask the table once.
        let now = load_checkpoint(&self.pool, READ_MODELS).await?;
        if now >= min {
            Ok(())
        } else {
            Err(ProjectionError::Lagging {
                wanted: min.0,
                reached: now.0,
            })
        }
    }
}
