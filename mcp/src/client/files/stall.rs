//! A bound on an upload's silences. reqwest's read timeout cannot bound an upload (it also
//! runs while the body is sent, and the CDN answers only once all of it is stored), and an
//! overall deadline would cut large files on slow links; so the body records when the
//! socket last took a piece, and the request fails once that is longer ago than the bound:
//! a CDN that stops reading, or never answers after the last piece, ends the upload with a
//! clear error instead of holding the agent's tool call for ever.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

/// When the socket last took a piece of the body.
#[derive(Debug, Clone)]
pub(super) struct Progress(Arc<Mutex<Instant>>);

impl Progress {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    /// `body`, noting each piece the socket takes.
    pub(super) fn watch<S: Stream>(&self, body: S) -> impl Stream<Item = S::Item> {
        let last = self.0.clone();
        body.inspect(move |_| {
            if let Ok(mut at) = last.lock() {
                *at = Instant::now();
            }
        })
    }

    fn since(&self) -> Duration {
        self.0.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// Resolves once no piece was taken for `bound` (the answer after the last piece
    /// counts as a silence too).
    pub(super) async fn stalled(&self, bound: Duration) {
        loop {
            let since = self.since();
            if since >= bound {
                return;
            }
            tokio::time::sleep(bound - since).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that accepts the request and never reads its body: the upload ends at the
    /// bound, not never.
    #[tokio::test]
    async fn an_upload_the_peer_stops_reading_fails_at_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/blob", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(socket);
        });
        let progress = Progress::new();
        let pieces = futures::stream::iter(
            (0..256).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 1 << 20]))),
        );
        let request = reqwest::Client::new()
            .put(url)
            .body(reqwest::Body::wrap_stream(progress.watch(pieces)))
            .send();
        let ended = tokio::select! {
            sent = request => format!("answered: {sent:?}"),
            _ = progress.stalled(Duration::from_millis(300)) => "stalled".to_owned(),
        };
        // Without the bound, the request would end only when the peer gives up (60 s).
        assert_eq!(ended, "stalled");
        held.abort();
    }
}
