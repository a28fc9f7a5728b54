//! A bound on an upload's silences. reqwest's read timeout cannot bound an upload (it also
//! runs while the body is sent, and the CDN answers only once all of it is stored), and an
//! overall deadline would cut large files on slow links; so the body records when the
//! connection last took a slice of it, and the request fails once that is longer ago than
//! the bound (a longer one for the answer after the last slice):
//! a CDN that stops reading, or never answers after the last piece, ends the upload with a
//! clear error instead of holding the agent's tool call for ever.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Pieces are handed to the socket this much at a time, so that progress is noted as the
/// connection drains rather than once per 1 MiB piece: a slow link still shows progress.
const SLICE: usize = 64 * 1024;

#[derive(Debug)]
struct Noted {
    last: Instant,
    ended: bool,
}

/// When the socket last took a piece of the body, and whether it took the last.
#[derive(Debug, Clone)]
pub(super) struct Progress(Arc<Mutex<Noted>>);

impl Progress {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Noted {
            last: Instant::now(),
            ended: false,
        })))
    }

    fn note(&self, ended: bool) {
        if let Ok(mut noted) = self.0.lock() {
            noted.last = Instant::now();
            noted.ended |= ended;
        }
    }

    /// `body` in slices of at most [`SLICE`], noting each one the socket takes and the end.
    pub(super) fn watch<E>(
        &self,
        body: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static {
        let state = (Box::pin(body), self.clone(), Bytes::new());
        futures::stream::unfold(state, |(mut body, progress, mut rest)| async move {
            if rest.is_empty() {
                match body.next().await {
                    Some(Ok(piece)) => rest = piece,
                    Some(Err(e)) => return Some((Err(e), (body, progress, rest))),
                    None => {
                        progress.note(true);
                        return None;
                    }
                }
            }
            let slice = rest.split_to(rest.len().min(SLICE));
            progress.note(false);
            Some((Ok(slice), (body, progress, rest)))
        })
    }

    /// Resolves once no slice was taken for `bound` while the body is sent, or, after
    /// its end, no answer came for `answer_bound` (the connection's buffers drain first,
    /// then the CDN syncs the file to disk).
    pub(super) async fn stalled(&self, bound: Duration, answer_bound: Duration) {
        loop {
            let (since, ended) = self
                .0
                .lock()
                .map(|noted| (noted.last.elapsed(), noted.ended))
                .unwrap_or_default();
            let limit = if ended { answer_bound } else { bound };
            if since >= limit {
                return;
            }
            tokio::time::sleep(limit - since).await;
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
            _ = progress.stalled(Duration::from_millis(300), Duration::from_secs(600)) => "stalled".to_owned(),
        };
        // Without the bound, the request would end only when the peer gives up (60 s).
        assert_eq!(ended, "stalled");
        held.abort();
    }
}
