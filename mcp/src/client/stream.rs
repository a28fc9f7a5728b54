//! The live inbox: a background task that holds `GET /v1/stream` open and pushes every
//! verified incoming message to a broadcast channel and a small buffer.
//!
//! Two positions are tracked. `resume_after` is the last stream id received: reconnects
//! (with backoff and jitter, capped by [`StreamOptions::max_backoff`]) send it as
//! `Last-Event-ID`, so nothing is missed or repeated. `cursor` is the last sequence
//! *delivered to the agent* (by [`MessageStream::next`] or [`MessageStream::mark_delivered`]):
//! the buffer holds what arrived after it, so a wait returns at once when something came
//! in since the last look. When the buffer overflows, the overflowed messages are read
//! back over HTTP rather than dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::ids::Seq;
use nexysync_domain::wire::{sse, StoredEvent};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::http::{api_error, error_chain, jittered};
use super::{Client, ClientError, Incoming};

/// Tuning of the stream; the defaults suit the server's 30 s heartbeat.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// With no bytes (not even a heartbeat) for this long, the connection is presumed
    /// dead and replaced.
    pub idle_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// Messages kept for delivery; older undelivered ones are re-read over HTTP.
    pub buffer: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(90),
            max_backoff: Duration::from_secs(5),
            buffer: 256,
        }
    }
}

/// The stream's state, for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// An HTTP stream is open.
    pub connected: bool,
    /// The open stream has sent its backlog (`ready`): it is now pushing live.
    pub live: bool,
    /// The last stream id received; a reconnect resumes after it.
    pub resume_after: Seq,
    /// The last sequence delivered to the agent.
    pub cursor: Seq,
    /// Messages received and not yet delivered.
    pub pending: usize,
    pub reconnects: u64,
    /// Why the last connection failed, until a stream is live again.
    pub last_error: Option<String>,
}

/// Messages handed to the agent by one [`MessageStream::next`].
#[derive(Debug, Clone)]
pub struct Pending {
    /// Oldest first.
    pub items: Vec<Incoming>,
    /// More are waiting: call again.
    pub has_more: bool,
    /// The cursor after these messages (pass as `since` to an inbox read).
    pub cursor: Seq,
}

/// The running subscription. Dropping it stops the background task.
pub struct MessageStream {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream")
            .field("status", &self.status())
            .finish()
    }
}

struct Shared {
    client: Client,
    options: StreamOptions,
    tx: broadcast::Sender<Incoming>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buffer: VecDeque<Incoming>,
    cursor: Seq,
    /// The highest sequence evicted from the buffer before delivery: while it is above
    /// the cursor, the buffer has a hole and delivery goes through HTTP.
    evicted_up_to: Seq,
    status: StreamStatus,
}

impl MessageStream {
    /// Subscribes for `client`, delivering messages after `from` (exclusive). Spawns the
    /// background task, so it must be called inside a Tokio runtime.
    pub fn start(client: Client, from: Seq, options: StreamOptions) -> MessageStream {
        let (tx, _) = broadcast::channel(options.buffer.max(16));
        let shared = Arc::new(Shared {
            client,
            options,
            tx,
            state: Mutex::new(State {
                cursor: from,
                status: StreamStatus {
                    resume_after: from,
                    ..StreamStatus::default()
                },
                ..State::default()
            }),
        });
        let task = tokio::spawn(run(shared.clone()));
        MessageStream { shared, task }
    }

    /// Every verified arrival, from now on (including ones already delivered through an
    /// inbox read).
    pub fn subscribe(&self) -> broadcast::Receiver<Incoming> {
        self.shared.tx.subscribe()
    }

    pub fn status(&self) -> StreamStatus {
        let state = self.shared.state();
        StreamStatus {
            cursor: state.cursor,
            pending: state.buffer.len(),
            ..state.status.clone()
        }
    }

    /// The last sequence delivered to the agent.
    pub fn cursor(&self) -> Seq {
        self.shared.state().cursor
    }

    /// Records that everything up to `seq` reached the agent (e.g. through an inbox read),
    /// so it is not delivered again. The cursor never moves back.
    pub fn mark_delivered(&self, seq: Seq) {
        self.shared.state().advance(seq);
    }

    /// Up to `limit` messages that arrived after the cursor, at once if some are waiting,
    /// else as soon as one arrives, else empty after `timeout`. Advances the cursor.
    pub async fn next(&self, timeout: Duration, limit: usize) -> Result<Pending, ClientError> {
        let limit = limit.max(1);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let step = {
                let mut state = self.shared.state();
                if state.evicted_up_to > state.cursor {
                    Step::ReadOverflow {
                        since: state.cursor,
                    }
                } else if let Some(pending) = state.take(limit) {
                    Step::Deliver(pending)
                } else {
                    // Subscribed under the lock the task delivers under: no arrival
                    // between the look at the buffer and the subscription goes unnoticed.
                    Step::Wait(self.shared.tx.subscribe(), state.cursor)
                }
            };
            match step {
                Step::Deliver(pending) => return Ok(pending),
                Step::ReadOverflow { since } => {
                    if let Some(pending) = self.read_overflow(since, limit).await? {
                        return Ok(pending);
                    }
                }
                Step::Wait(mut arrivals, cursor) => {
                    match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                        Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                            return Ok(Pending {
                                items: Vec::new(),
                                has_more: false,
                                cursor,
                            })
                        }
                        Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    }
                }
            }
        }
    }

    /// Delivers what the buffer lost, from the server. `None` when there was nothing.
    async fn read_overflow(
        &self,
        since: Seq,
        limit: usize,
    ) -> Result<Option<Pending>, ClientError> {
        let page = self
            .shared
            .client
            .inbox(since, u32::try_from(limit).unwrap_or(u32::MAX))
            .await?;
        let mut state = self.shared.state();
        state.advance(page.next_since);
        if page.items.is_empty() && !page.has_more {
            // The server holds nothing more (the evicted messages may have been pruned):
            // the hole is closed, and no read is repeated for it.
            state.evicted_up_to = state.evicted_up_to.min(state.cursor);
            return Ok(None);
        }
        Ok(Some(Pending {
            items: page.items,
            has_more: page.has_more || !state.buffer.is_empty(),
            cursor: state.cursor,
        }))
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn advance(&mut self, seq: Seq) {
        if seq > self.cursor {
            self.cursor = seq;
        }
        let cursor = self.cursor;
        self.buffer.retain(|item| item.seq() > cursor);
    }

    fn take(&mut self, limit: usize) -> Option<Pending> {
        let cursor = self.cursor;
        let items: Vec<Incoming> = self
            .buffer
            .iter()
            .filter(|item| item.seq() > cursor)
            .take(limit)
            .cloned()
            .collect();
        let last = items.last()?.seq();
        self.advance(last);
        Some(Pending {
            items,
            has_more: !self.buffer.is_empty(),
            cursor: self.cursor,
        })
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panicked holder is harmless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resume_after(&self) -> Seq {
        self.state().status.resume_after
    }

    /// Hands one verified arrival to the buffer and the subscribers, once.
    fn deliver(&self, item: Incoming) {
        let mut state = self.state();
        let seq = item.seq();
        if seq <= state.status.resume_after {
            return;
        }
        state.status.resume_after = seq;
        if seq > state.cursor {
            state.buffer.push_back(item.clone());
            while state.buffer.len() > self.options.buffer.max(1) {
                if let Some(evicted) = state.buffer.pop_front() {
                    state.evicted_up_to = state.evicted_up_to.max(evicted.seq());
                }
            }
        }
        // No subscriber is not an error: the buffer keeps the message.
        let _ = self.tx.send(item);
    }

    fn skip_to(&self, seq: Seq) {
        let mut state = self.state();
        if seq > state.status.resume_after {
            state.status.resume_after = seq;
        }
    }

    fn set_connected(&self, connected: bool, error: Option<String>) {
        let mut state = self.state();
        state.status.connected = connected;
        state.status.live = false;
        if error.is_some() {
            state.status.last_error = error;
        }
    }

    fn set_live(&self) {
        let mut state = self.state();
        state.status.live = true;
        state.status.last_error = None;
    }

    fn count_reconnect(&self) {
        self.state().status.reconnects += 1;
    }
}

/// What [`MessageStream::next`] does next.
enum Step {
    Deliver(Pending),
    ReadOverflow { since: Seq },
    Wait(broadcast::Receiver<Incoming>, Seq),
}

/// How one connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server said the connection fell behind; resume right away.
    CatchUp,
    /// History before `oldest` was pruned.
    CursorTooOld {
        oldest: Seq,
    },
    /// The server closed the stream.
    Closed,
    Failed(String),
}

async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.options.max_backoff);
    loop {
        let ended = read_stream(&shared, &mut backoff).await;
        let delay = match ended {
            Ended::CatchUp => {
                shared.set_connected(false, None);
                // Resume right away, but never in a tight loop.
                Some(jittered(Backoff::FIRST))
            }
            Ended::CursorTooOld { oldest } => {
                shared.set_connected(false, None);
                match reread_from(&shared, oldest).await {
                    Ok(()) => None,
                    Err(error) => {
                        shared.set_connected(false, Some(error.to_string()));
                        Some(backoff.next())
                    }
                }
            }
            Ended::Closed => {
                shared.set_connected(false, None);
                Some(backoff.next())
            }
            Ended::Failed(error) => {
                tracing::debug!(%error, "message stream failed");
                shared.set_connected(false, Some(error));
                Some(backoff.next())
            }
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        shared.count_reconnect();
    }
}

/// Holds one SSE connection open until it ends, delivering what it carries.
async fn read_stream(shared: &Shared, backoff: &mut Backoff) -> Ended {
    let client = &shared.client;
    let after = shared.resume_after();
    let request = match client.http().stream_request(after) {
        Ok(request) => request,
        Err(error) => return Ended::Failed(error.to_string()),
    };
    // The stream has no overall timeout, so the wait for its headers gets one of its own.
    let response = match tokio::time::timeout(shared.options.idle_timeout, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            return Ended::Failed(
                ClientError::Unreachable {
                    url: client.server_url().to_string(),
                    reason: error_chain(&error),
                }
                .to_string(),
            )
        }
        Err(_) => return Ended::Failed("the server did not answer the stream request".into()),
    };
    if !response.status().is_success() {
        return Ended::Failed(ClientError::Api(api_error(response).await).to_string());
    }
    shared.set_connected(true, None);
    tracing::debug!(after = %after, "message stream connected");

    let idle = shared.options.idle_timeout;
    let chunks = futures::stream::unfold(
        Box::pin(response.bytes_stream()),
        move |mut body| async move {
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), body)),
                Ok(Some(Err(error))) => Some((Err(error_chain(&error)), body)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!(
                        "no data for {} s (heartbeats stopped)",
                        idle.as_secs()
                    )),
                    body,
                )),
            }
        },
    );
    let mut events = Box::pin(chunks.eventsource());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => return Ended::Failed(format!("message stream broke: {error}")),
        };
        backoff.reset();
        match classify(&event) {
            Received::Message(stored) => match client.verify(&stored).await {
                Ok(item) => shared.deliver(item),
                // Not judged (agents unavailable): reconnect, and the event comes again.
                Err(error) => return Ended::Failed(error.to_string()),
            },
            Received::Unreadable { seq, error } => {
                tracing::warn!(id = %event.id, %error, "unreadable new_message event skipped");
                if let Some(seq) = seq {
                    shared.skip_to(seq);
                }
            }
            Received::Ready => shared.set_live(),
            Received::End(ended) => {
                if let Ended::CursorTooOld { oldest } = &ended {
                    tracing::warn!(oldest = %oldest, "stream cursor older than the retained history");
                }
                return ended;
            }
            Received::Other => {}
        }
    }
    Ended::Closed
}

/// What one SSE event asks of the reader.
enum Received {
    /// A message to verify and deliver.
    Message(Box<StoredEvent>),
    /// A `new_message` whose data does not parse: skipped, past its id when it has one,
    /// so a reconnect does not fetch it again and again.
    Unreadable { seq: Option<Seq>, error: String },
    /// The backlog is sent; what follows is live.
    Ready,
    /// The server ends this connection (`catch_up`, `cursor_too_old`).
    End(Ended),
    /// Kinds added later (refs, files, kv…) are not this stream's business yet.
    Other,
}

fn classify(event: &eventsource_stream::Event) -> Received {
    match event.event.as_str() {
        sse::NEW_MESSAGE => match serde_json::from_str::<StoredEvent>(&event.data) {
            Ok(stored) => Received::Message(Box::new(stored)),
            Err(error) => Received::Unreadable {
                seq: event.id.parse::<u64>().ok().map(Seq),
                error: error.to_string(),
            },
        },
        sse::READY => Received::Ready,
        sse::CATCH_UP => Received::End(Ended::CatchUp),
        sse::CURSOR_TOO_OLD => match serde_json::from_str::<sse::CursorTooOld>(&event.data) {
            Ok(too_old) => Received::End(Ended::CursorTooOld {
                oldest: too_old.oldest_seq,
            }),
            Err(error) => Received::End(Ended::Failed(format!(
                "unreadable cursor_too_old event: {error}"
            ))),
        },
        _ => Received::Other,
    }
}

/// After pruning: reads the inbox over HTTP from the oldest retained sequence, delivering
/// every page, so the stream can resume from where that read ended.
async fn reread_from(shared: &Shared, oldest: Seq) -> Result<(), ClientError> {
    let mut since = Seq(oldest.0.saturating_sub(1)).max(shared.resume_after());
    loop {
        let page = shared
            .client
            .inbox(since, nexysync_domain::wire::MAX_LIMIT)
            .await?;
        for item in page.items {
            shared.deliver(item);
        }
        shared.skip_to(page.next_since);
        if !page.has_more || page.next_since <= since {
            return Ok(());
        }
        since = page.next_since;
    }
}

/// Exponential backoff from 100 ms, capped, each delay jittered.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST,
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        jittered(delay)
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::{Project, Sent};
    use crate::client::{verify_message, ChainMemory};
    use crate::client::{Directory, Reader};
    use nexysync_domain::wire::AgentList;

    fn incoming(n: usize) -> Vec<Incoming> {
        let project = Project::new();
        let alice = project.agent("alice");
        let bob = project.agent("bob");
        let mut chain = ChainMemory::new();
        let list = AgentList {
            agents: vec![project.agent_info(&alice), project.agent_info(&bob)],
        };
        let directory =
            Directory::verify(project.id, &project.owner.public_key(), &list, &mut chain);
        (0..n)
            .map(|i| {
                let stored = project.message(&alice, Sent::to(&bob), &format!("m{i}"));
                let reader = Reader {
                    project: project.id,
                    keys: &project.keys,
                };
                Incoming::Message(verify_message(reader, &directory, &mut chain, &stored).unwrap())
            })
            .collect()
    }

    #[test]
    fn taking_from_the_buffer_delivers_each_message_once_in_order() {
        let items = incoming(3);
        let mut state = State {
            buffer: items.iter().cloned().collect(),
            ..State::default()
        };
        let first = state.take(2).unwrap();
        assert_eq!(first.items, items[..2]);
        assert!(first.has_more);
        let second = state.take(2).unwrap();
        assert_eq!(second.items, items[2..]);
        assert!(!second.has_more);
        assert!(state.take(2).is_none());
        assert_eq!(state.cursor, items[2].seq());
    }

    #[test]
    fn marking_delivered_drops_what_an_inbox_read_already_showed() {
        let items = incoming(3);
        let mut state = State {
            buffer: items.iter().cloned().collect(),
            ..State::default()
        };
        state.advance(items[1].seq());
        assert_eq!(state.take(10).unwrap().items, items[2..]);
        // The cursor never moves back.
        state.advance(Seq(0));
        assert_eq!(state.cursor, items[2].seq());
    }

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
        assert!(delays[9] >= Duration::from_millis(2500));
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }

    fn sse_event(kind: &str, id: &str, data: &str) -> eventsource_stream::Event {
        eventsource_stream::Event {
            event: kind.to_owned(),
            data: data.to_owned(),
            id: id.to_owned(),
            retry: None,
        }
    }

    fn ended(received: Received) -> Option<Ended> {
        match received {
            Received::End(ended) => Some(ended),
            _ => None,
        }
    }

    #[test]
    fn catch_up_ends_the_connection_to_resume_at_once() {
        let event = sse_event(sse::CATCH_UP, "", r#"{"last_seq":41}"#);
        assert_eq!(ended(classify(&event)), Some(Ended::CatchUp));
    }

    #[test]
    fn cursor_too_old_ends_the_connection_to_reread_from_the_oldest_retained() {
        let event = sse_event(
            sse::CURSOR_TOO_OLD,
            "",
            r#"{"requested":3,"oldest_seq":17}"#,
        );
        assert_eq!(
            ended(classify(&event)),
            Some(Ended::CursorTooOld { oldest: Seq(17) })
        );
        let garbled = sse_event(sse::CURSOR_TOO_OLD, "", "{}");
        assert!(matches!(
            ended(classify(&garbled)),
            Some(Ended::Failed(reason)) if reason.contains("cursor_too_old")
        ));
    }

    #[test]
    fn an_unreadable_message_is_skipped_past_its_id() {
        let event = sse_event(sse::NEW_MESSAGE, "12", "{not json");
        assert!(matches!(
            classify(&event),
            Received::Unreadable {
                seq: Some(Seq(12)),
                ..
            }
        ));
        let without_id = sse_event(sse::NEW_MESSAGE, "", "{not json");
        assert!(matches!(
            classify(&without_id),
            Received::Unreadable { seq: None, .. }
        ));
    }

    #[test]
    fn a_message_ready_and_unknown_kinds_are_told_apart() {
        let project = Project::new();
        let alice = project.agent("alice");
        let stored = project.message(&alice, Sent::broadcast(), "hi");
        let data = serde_json::to_string(&stored).unwrap();
        let event = sse_event(sse::NEW_MESSAGE, &stored.seq.0.to_string(), &data);
        assert!(matches!(classify(&event), Received::Message(m) if *m == stored));
        assert!(matches!(
            classify(&sse_event(sse::READY, "", r#"{"seq":9}"#)),
            Received::Ready
        ));
        assert!(matches!(
            classify(&sse_event("kv_update", "10", "{}")),
            Received::Other
        ));
    }
}
