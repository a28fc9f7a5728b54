//! The SHA-256 of an upload, computed on a thread of its own so that hashing overlaps
//! reading the socket and writing the bytes instead of taking turns with them (it was a
//! third of the CDN's upload time, on the thread that also reads the request).

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Runs of pieces queued for the hashing thread. They are the same [`Bytes`] the store
/// is handed, so the queue holds references, not copies.
const QUEUED_RUNS: usize = 4;

/// A SHA-256 being computed by a blocking thread; dropped unfinished, the thread stops.
#[derive(Debug)]
pub(crate) struct BackgroundSha256 {
    tx: mpsc::Sender<Vec<Bytes>>,
    digest: tokio::task::JoinHandle<[u8; 32]>,
}

impl BackgroundSha256 {
    pub(crate) fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(QUEUED_RUNS);
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(run) = rx.blocking_recv() {
                for piece in run {
                    hasher.update(&piece);
                }
            }
            hasher.finalize().into()
        });
        Self { tx, digest }
    }

    /// Queues `run`, the next pieces (waits while the thread is behind by a full queue).
    pub(crate) async fn update(&mut self, run: Vec<Bytes>) {
        // The thread only stops once the sender is dropped (or on a panic, which
        // `finish` reports).
        let _ = self.tx.send(run).await;
    }

    /// The lowercase hex digest of everything queued.
    pub(crate) async fn finish(self) -> std::io::Result<String> {
        drop(self.tx);
        self.digest
            .await
            .map(hex::encode)
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_digest_is_that_of_the_pieces_in_order() {
        let mut hashing = BackgroundSha256::start();
        let pieces: Vec<Bytes> = (0..100u8)
            .map(|i| Bytes::from(vec![i; 1000 + i as usize]))
            .collect();
        for run in pieces.chunks(7) {
            hashing.update(run.to_vec()).await;
        }
        let whole: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(
            hashing.finish().await.unwrap(),
            hex::encode(Sha256::digest(&whole))
        );
        assert_eq!(
            BackgroundSha256::start().finish().await.unwrap(),
            hex::encode(Sha256::digest(b""))
        );
    }
}
