//! Reading the log in batches, and ahead of whoever applies them.
//!
//! The ordered consumer asks the server for more only while it is polled, so a reader
//! that alternates between awaiting a batch and working on it leaves the server idle while
//! it works, and itself idle while the server sends. [`ReadAhead`] polls the log from a
//! task of its own, a few batches ahead, so the two overlap: a rebuild's load or an
//! audit takes about as long as the slower of reading and working, not their sum.

use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{EventStream, LogError, RawEvent};

/// A batch as [`Batches::next`] answers it.
pub type Batch = Result<Vec<RawEvent>, LogError>;

/// A stream of the log read in batches: the first event (waiting for it), then whatever
/// else is ready. A read that fails after the first event of a batch ends the batch and
/// is answered by the next call, so nothing read before it is held back and no failure
/// is lost (the event it stands for is not in the batch: its reader must read again from
/// its last event, as every reader of the log does on an error).
pub struct Batches {
    events: EventStream,
    failed: Option<LogError>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Batches {
    pub fn new(events: EventStream) -> Self {
        Self {
            events,
            failed: None,
        }
    }

    /// The next batch of up to `max` events, or the failure that ended the last one;
    /// `None` when the stream ends.
    pub async fn next(&mut self, max: usize) -> Option<Batch> {
        if let Some(failed) = self.failed.take() {
            return Some(Err(failed));
        }
        let first = match self.events.next().await? {
            Ok(first) => first,
            Err(e) => return Some(Err(e)),
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match self.events.next().now_or_never() {
                Some(Some(Ok(event))) => batch.push(event),
                Some(Some(Err(e))) => {
                    self.failed = Some(e);
                    break;
                }
                _ => break,
            }
        }
        Some(Ok(batch))
    }
}

/// Batches of the log read ahead by a task of their own (see the module docs). Dropping
/// it stops the task.
#[derive(Debug)]
pub struct ReadAhead {
    batches: mpsc::Receiver<Batch>,
    /// The reading task, until [`ReadAhead::next`] has seen how it ended.
    reader: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Reads `events` in batches of up to `max` ([`Batches`]), at most `ahead` batches
    /// ahead of [`ReadAhead::next`]. A failed read is handed on like a batch, and reading
    /// stops there (as it would for a reader of the stream itself, which gives up on an
    /// error).
    pub fn start(events: EventStream, max: usize, ahead: usize) -> Self {
        let (sender, batches) = mpsc::channel(ahead.max(1));
        let mut events = Batches::new(events);
        let reader = tokio::spawn(async move {
            while let Some(batch) = events.next(max).await {
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            batches,
            reader: Some(reader),
        }
    }

    /// The next batch, in log order; `None` once the log has ended (or its reader
    /// stopped after handing on an error). A reader that panicked is a failed read, not
    /// the end of the log. Cancel-safe: a batch is never lost to a timeout around this
    /// call.
    pub async fn next(&mut self) -> Option<Batch> {
        if let Some(batch) = self.batches.recv().await {
            return Some(batch);
        }
        // The channel closes only once the task is over, so this wait is short.
        match self.reader.take()?.await {
            Err(e) if e.is_panic() => Some(Err(LogError::Read(format!(
                "the log's reader stopped: {e}"
            )))),
            _ => None,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::StreamExt;
    use nexysync_domain::ids::Seq;

    use super::*;

    fn event(seq: u64) -> Result<RawEvent, LogError> {
        Ok(RawEvent {
            seq: Seq(seq),
            subject: "s".into(),
            payload: Bytes::new(),
        })
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.as_ref().unwrap().iter().map(|e| e.seq.0).collect()
    }

    #[tokio::test]
    async fn batches_come_in_log_order_then_the_end() {
        let events: EventStream = Box::pin(futures::stream::iter((1..=5).map(event)));
        let mut ahead = ReadAhead::start(events, 2, 2);
        let mut all = Vec::new();
        while let Some(batch) = ahead.next().await {
            let batch = seqs(&batch);
            assert!(batch.len() <= 2, "no batch is larger than asked");
            all.extend(batch);
        }
        assert_eq!(all, [1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_failed_read_is_handed_on_and_ends_the_reading() {
        let items = vec![
            event(1),
            Err(LogError::Read("connection lost".into())),
            event(2),
        ];
        let events: EventStream = Box::pin(futures::stream::iter(items));
        let mut ahead = ReadAhead::start(events, 1, 4);
        assert_eq!(seqs(&ahead.next().await.unwrap()), [1]);
        let failed = ahead.next().await.unwrap();
        assert!(matches!(failed, Err(LogError::Read(_))));
        assert!(ahead.next().await.is_none(), "nothing after the error");
    }

    #[tokio::test]
    async fn a_read_failing_mid_batch_ends_the_batch_and_is_answered_next() {
        let items = vec![
            event(1),
            event(2),
            Err(LogError::Read("connection lost".into())),
            event(3),
        ];
        let mut batches = Batches::new(Box::pin(futures::stream::iter(items)));
        assert_eq!(seqs(&batches.next(10).await.unwrap()), [1, 2]);
        let failed = batches.next(10).await.unwrap();
        assert!(matches!(failed, Err(LogError::Read(_))), "not skipped");
        assert_eq!(seqs(&batches.next(10).await.unwrap()), [3]);
        assert!(batches.next(10).await.is_none());

        // Read ahead, the failure ends the reading after the events before it.
        let items = vec![event(1), Err(LogError::Read("lost".into())), event(2)];
        let mut ahead = ReadAhead::start(Box::pin(futures::stream::iter(items)), 10, 4);
        assert_eq!(seqs(&ahead.next().await.unwrap()), [1]);
        assert!(matches!(
            ahead.next().await.unwrap(),
            Err(LogError::Read(_))
        ));
        assert!(ahead.next().await.is_none(), "nothing after the error");
    }

    #[tokio::test]
    async fn a_reader_that_panicked_is_a_failed_read_not_the_end_of_the_log() {
        let broken = futures::stream::poll_fn(|_| -> std::task::Poll<Option<_>> {
            panic!("a bug in the reader")
        });
        let events: EventStream = Box::pin(futures::stream::iter([event(1)]).chain(broken));
        let mut ahead = ReadAhead::start(events, 10, 2);
        let failed = ahead.next().await.unwrap();
        assert!(
            matches!(&failed, Err(LogError::Read(why)) if why.contains("reader stopped")),
            "{failed:?}"
        );
        assert!(ahead.next().await.is_none());
    }

    #[tokio::test]
    async fn a_timeout_around_next_loses_no_batch() {
        // One event now, the next only after a pause longer than the caller waits.
        let late = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            event(2)
        });
        let events: EventStream = Box::pin(futures::stream::iter([event(1)]).chain(late));
        let mut ahead = ReadAhead::start(events, 10, 2);
        assert_eq!(seqs(&ahead.next().await.unwrap()), [1]);
        let quiet = tokio::time::timeout(Duration::from_millis(20), ahead.next()).await;
        assert!(quiet.is_err(), "the log was quiet");
        assert_eq!(seqs(&ahead.next().await.unwrap()), [2]);
        assert!(ahead.next().await.is_none());
    }
}
