//! The live stream: a background task that holds `GET /v1/stream` open and pushes every
//! verified arrival (messages, code references, KV changes: see [`StreamKind`]) to a
//! broadcast channel and a small buffer.
//!
//! Two kinds of position are tracked. `resume_after` is the last stream id received:
//! reconnects (with backoff and jitter, capped by [`StreamOptions::max_backoff`]) send it
//! as `Last-Event-ID`, so nothing is missed or repeated. The [`Cursors`] are the last
//! sequence *delivered to the agent*, one per kind (by [`MessageStream::next_of`] or
//! [`MessageStream::mark_delivered`]): a wait for refs does not consume messages. The
//! buffer holds what arrived after them, so a wait returns at once when something came in
//! since the last look.
//!
//! What the buffer could not keep, and what the server does not replay on resume (only
//! messages are replayed), is a *gap* of that kind: it is read back over HTTP (the inbox,
//! the refs list) rather than lost. KV changes have no history to read back: a wait for
//! them sees the changes made while it listens; `ns_kv list` shows the current state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::ids::Seq;
use nexysync_domain::wire::{sse, StoredEvent};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::arrival::{Arrival, Cursors, StreamKind};
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
    /// Arrivals kept for delivery; older undelivered ones are re-read over HTTP.
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
    /// The last message sequence delivered to the agent.
    pub cursor: Seq,
    /// The last sequence delivered to the agent, per kind.
    pub cursors: Cursors,
    /// Arrivals received and not yet delivered.
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

/// Arrivals handed to the agent by one [`MessageStream::next_of`].
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// Oldest first within each kind.
    pub items: Vec<Arrival>,
    /// More of the asked kinds are waiting: call again.
    pub has_more: bool,
    /// The cursors after these arrivals.
    pub cursors: Cursors,
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
    tx: broadcast::Sender<Arrival>,
    /// Moves whenever a gap opens without an arrival (on `ready`), so waiters look again.
    gaps_opened: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every kind, in stream order.
    buffer: VecDeque<Arrival>,
    cursors: Cursors,
    /// Per kind, the highest sequence that may be missing from the buffer (evicted before
    /// delivery, or not replayed on resume): while it is above the kind's cursor, that
    /// kind is delivered through HTTP.
    gaps: BTreeMap<StreamKind, Seq>,
    status: StreamStatus,
}

impl MessageStream {
    /// Subscribes for `client`, delivering every kind after `from` (exclusive). Spawns the
    /// background task, so it must be called inside a Tokio runtime.
    pub fn start(client: Client, from: Seq, options: StreamOptions) -> MessageStream {
        Self::start_at(client, Cursors::all_at(from), options)
    }

    /// Subscribes for `client`, delivering each kind after its cursor in `from`.
    pub fn start_at(client: Client, from: Cursors, options: StreamOptions) -> MessageStream {
        let (tx, _) = broadcast::channel(options.buffer.max(16));
        // The server replays messages after the resume position; the other kinds'
        // cursors are honoured by the delivery side.
        let resume_after = from.get(StreamKind::Message);
        let shared = Arc::new(Shared {
            client,
            options,
            tx,
            gaps_opened: watch::channel(0).0,
            state: Mutex::new(State {
                cursors: from,
                status: StreamStatus {
                    resume_after,
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
    pub fn subscribe(&self) -> broadcast::Receiver<Arrival> {
        self.shared.tx.subscribe()
    }

    /// What arrives from now on, and how many arrivals already wait undelivered: counted
    /// and subscribed under the lock arrivals are delivered under, so each is either
    /// counted or received, never both or neither.
    pub fn subscribe_counting_waiting(&self) -> (broadcast::Receiver<Arrival>, usize) {
        let state = self.shared.state();
        (self.shared.tx.subscribe(), state.undelivered())
    }

    pub fn status(&self) -> StreamStatus {
        let state = self.shared.state();
        StreamStatus {
            cursor: state.cursors.get(StreamKind::Message),
            cursors: state.cursors.clone(),
            pending: state.buffer.len(),
            ..state.status.clone()
        }
    }

    /// The last message sequence delivered to the agent.
    pub fn cursor(&self) -> Seq {
        self.shared.state().cursors.get(StreamKind::Message)
    }

    /// The last sequence delivered to the agent, per kind.
    pub fn cursors(&self) -> Cursors {
        self.shared.state().cursors.clone()
    }

    /// Records that every message up to `seq` reached the agent (e.g. through an inbox
    /// read), so it is not delivered again. The cursor never moves back.
    pub fn mark_delivered(&self, seq: Seq) {
        self.shared.state().advance(StreamKind::Message, seq);
    }

    /// Up to `limit` messages that arrived after the cursor, at once if some are waiting,
    /// else as soon as one arrives, else empty after `timeout`. Advances the cursor.
    pub async fn next(&self, timeout: Duration, limit: usize) -> Result<Pending, ClientError> {
        let arrivals = self.next_of(&[StreamKind::Message], timeout, limit).await?;
        Ok(Pending {
            items: arrivals
                .items
                .into_iter()
                .filter_map(Arrival::into_incoming)
                .collect(),
            has_more: arrivals.has_more,
            cursor: arrivals.cursors.get(StreamKind::Message),
        })
    }

    /// Up to `limit` arrivals of `kinds` (none: messages) after their cursors, at once if
    /// some are waiting, else as soon as one arrives, else empty after `timeout`. Advances
    /// the cursors of what it returns; other kinds stay waiting for their own reader.
    pub async fn next_of(
        &self,
        kinds: &[StreamKind],
        timeout: Duration,
        limit: usize,
    ) -> Result<Arrivals, ClientError> {
        let kinds = if kinds.is_empty() {
            &[StreamKind::Message][..]
        } else {
            kinds
        };
        let limit = limit.max(1);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let step = {
                let mut state = self.shared.state();
                if let Some(kind) = state.gap_in(kinds) {
                    Step::ReadGap {
                        kind,
                        since: state.cursors.get(kind),
                    }
                } else if let Some(arrivals) = state.take(kinds, limit) {
                    Step::Deliver(arrivals)
                } else {
                    // Subscribed under the lock the task delivers under: no arrival (or
                    // gap) between the look at the buffer and the subscription goes
                    // unnoticed.
                    Step::Wait(
                        self.shared.tx.subscribe(),
                        self.shared.gaps_opened.subscribe(),
                    )
                }
            };
            match step {
                Step::Deliver(arrivals) => return Ok(arrivals),
                Step::ReadGap { kind, since } => {
                    if let Some(arrivals) = self.read_gap(kinds, kind, since, limit).await? {
                        return Ok(arrivals);
                    }
                }
                Step::Wait(mut arrivals, mut gaps) => {
                    let woken = async {
                        tokio::select! {
                            received = arrivals.recv() => {
                                !matches!(received, Err(broadcast::error::RecvError::Closed))
                            }
                            changed = gaps.changed() => changed.is_ok(),
                        }
                    };
                    match tokio::time::timeout_at(deadline, woken).await {
                        Err(_) | Ok(false) => {
                            return Ok(Arrivals {
                                items: Vec::new(),
                                has_more: false,
                                cursors: self.cursors(),
                            })
                        }
                        Ok(true) => {}
                    }
                }
            }
        }
    }

    /// Delivers what the stream could not of `kind`, from the server. `None` when that
    /// read found nothing to show (the gap is then closed, or narrowed for the next look).
    async fn read_gap(
        &self,
        kinds: &[StreamKind],
        kind: StreamKind,
        since: Seq,
        limit: usize,
    ) -> Result<Option<Arrivals>, ClientError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let client = &self.shared.client;
        let (items, next_since, has_more) = match kind {
            StreamKind::Message => {
                let page = client.inbox(since, limit).await?;
                let items = page.items.into_iter().map(Arrival::from).collect();
                (items, page.next_since, page.has_more)
            }
            StreamKind::Ref => {
                let page = client.refs(since, limit).await?;
                let me = &client.key_file().agent.name;
                // The refs list also holds what this agent shared with others, which its
                // stream does not carry.
                let items = page
                    .items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(r) if r.to.as_ref() == Some(me) || (r.to.is_none() && r.from != *me) => {
                            Some(Arrival::Ref(r))
                        }
                        Ok(_) => None,
                        Err(rejected) => Some(Arrival::Rejected(kind, rejected)),
                    })
                    .collect();
                (items, page.next_since, page.has_more)
            }
            StreamKind::File => {
                let page = client.files(since, limit).await?;
                let me = &client.key_file().agent.name;
                // Like refs: the list also holds this agent's own files.
                let items = page
                    .items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(f) if f.to.as_ref() == Some(me) || (f.to.is_none() && f.from != *me) => {
                            Some(Arrival::File(f))
                        }
                        Ok(_) => None,
                        Err(rejected) => Some(Arrival::Rejected(kind, rejected)),
                    })
                    .collect();
                (items, page.next_since, page.has_more)
            }
            // Current state only: `ns_kv list`, and `read` of the message, show what they led to.
            StreamKind::Kv | StreamKind::Update => (Vec::new(), since, false),
        };
        let mut state = self.shared.state();
        state.advance(kind, next_since);
        if items.is_empty() {
            // A page that does not move the cursor would be asked for again and again.
            if !has_more || next_since <= since {
                // The server holds nothing more (what was missed may have been pruned):
                // the gap is closed, and no read is repeated for it.
                let cursor = state.cursors.get(kind);
                state.gaps.insert(kind, cursor);
            }
            return Ok(None);
        }
        let more = has_more || state.gap_in(kinds).is_some() || state.waiting(kinds);
        Ok(Some(Arrivals {
            items,
            has_more: more,
            cursors: state.cursors.clone(),
        }))
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn advance(&mut self, kind: StreamKind, seq: Seq) {
        self.cursors.advance(kind, seq);
        let cursors = &self.cursors;
        self.buffer
            .retain(|item| item.seq() > cursors.get(item.kind()));
    }

    /// The first of `kinds` with a gap above its cursor.
    fn gap_in(&self, kinds: &[StreamKind]) -> Option<StreamKind> {
        kinds.iter().copied().find(|kind| {
            self.gaps
                .get(kind)
                .is_some_and(|gap| *gap > self.cursors.get(*kind))
        })
    }

    /// Whether the buffer holds something of `kinds` not yet delivered.
    /// How many arrivals, of every kind, no reader has taken yet.
    fn undelivered(&self) -> usize {
        self.buffer
            .iter()
            .filter(|item| item.seq() > self.cursors.get(item.kind()))
            .count()
    }

    fn waiting(&self, kinds: &[StreamKind]) -> bool {
        self.buffer
            .iter()
            .any(|item| kinds.contains(&item.kind()) && item.seq() > self.cursors.get(item.kind()))
    }

    fn take(&mut self, kinds: &[StreamKind], limit: usize) -> Option<Arrivals> {
        // A message that expired while it waited here is passed over, not shown (nor
        // counted against `limit`): were it all a wait took, the wait would end at once
        // with nothing to show.
        let now = chrono::Utc::now();
        let cursors = &self.cursors;
        let mut items: Vec<Arrival> = Vec::new();
        let mut passed_over: Vec<(StreamKind, Seq)> = Vec::new();
        for item in self
            .buffer
            .iter()
            .filter(|item| kinds.contains(&item.kind()) && item.seq() > cursors.get(item.kind()))
        {
            if matches!(item, Arrival::Message(m) if m.has_expired(now)) {
                passed_over.push((item.kind(), item.seq()));
                continue;
            }
            if items.len() == limit {
                break;
            }
            items.push(item.clone());
        }
        // What is taken (and passed over) is, per kind, the oldest of that kind: each
        // cursor moves to the last one.
        for (kind, seq) in passed_over
            .into_iter()
            .chain(items.iter().map(|item| (item.kind(), item.seq())))
        {
            self.cursors.advance(kind, seq);
        }
        let cursors = &self.cursors;
        self.buffer
            .retain(|item| item.seq() > cursors.get(item.kind()));
        if items.is_empty() {
            return None;
        }
        Some(Arrivals {
            items,
            has_more: self.waiting(kinds),
            cursors: self.cursors.clone(),
        })
    }

    /// After `ready` at `seq`: what the server did not replay of the kinds it does not
    /// replay, up to `seq`, is a gap, unless already delivered.
    fn note_unreplayed(&mut self, seq: Seq) {
        for kind in StreamKind::ALL {
            if !kind.replayed_on_resume() && kind.has_history() && seq > self.cursors.get(kind) {
                let gap = self.gaps.entry(kind).or_insert(Seq(0));
                *gap = (*gap).max(seq);
            }
        }
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
    fn deliver(&self, item: Arrival) {
        let mut state = self.state();
        let seq = item.seq();
        if seq <= state.status.resume_after {
            return;
        }
        state.status.resume_after = seq;
        if seq > state.cursors.get(item.kind()) {
            state.buffer.push_back(item.clone());
            while state.buffer.len() > self.options.buffer.max(1) {
                if let Some(evicted) = state.buffer.pop_front() {
                    let kind = evicted.kind();
                    if kind.has_history() {
                        let gap = state.gaps.entry(kind).or_insert(Seq(0));
                        *gap = (*gap).max(evicted.seq());
                    }
                }
            }
        }
        // No subscriber is not an error: the buffer keeps the arrival.
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

    fn set_live(&self, ready_at: Option<Seq>) {
        let mut state = self.state();
        state.status.live = true;
        state.status.last_error = None;
        if let Some(seq) = ready_at {
            state.note_unreplayed(seq);
            self.gaps_opened.send_modify(|n| *n += 1);
            // The log holds `seq`: reads of what the stream did not replay wait for the
            // read models to have applied it.
            self.client.note_known(seq);
        }
    }

    fn count_reconnect(&self) {
        self.state().status.reconnects += 1;
    }
}

/// What [`MessageStream::next_of`] does next.
enum Step {
    Deliver(Arrivals),
    ReadGap { kind: StreamKind, since: Seq },
    Wait(broadcast::Receiver<Arrival>, watch::Receiver<u64>),
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
            Received::Event(kind, stored) => match client.verify_arrival(kind, &stored).await {
                Ok(item) => shared.deliver(item),
                // Not judged (agents unavailable): reconnect, and the event comes again.
                Err(error) => return Ended::Failed(error.to_string()),
            },
            Received::Unreadable { kind, seq, error } => {
                tracing::warn!(id = %event.id, %kind, %error, "unreadable stream event skipped");
                if let Some(seq) = seq {
                    shared.skip_to(seq);
                }
            }
            Received::Ready(seq) => shared.set_live(seq),
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
    /// An event of a followed kind to verify and deliver.
    Event(StreamKind, Box<StoredEvent>),
    /// An event whose data does not parse: skipped, past its id when it has one, so a
    /// reconnect does not fetch it again and again.
    Unreadable {
        kind: StreamKind,
        seq: Option<Seq>,
        error: String,
    },
    /// The backlog is sent, up to the sequence it names; what follows is live.
    Ready(Option<Seq>),
    /// The server ends this connection (`catch_up`, `cursor_too_old`).
    End(Ended),
    /// Kinds this client does not follow (yet).
    Other,
}

fn classify(event: &eventsource_stream::Event) -> Received {
    if let Some(kind) = StreamKind::from_sse_event(&event.event) {
        return match serde_json::from_str::<StoredEvent>(&event.data) {
            Ok(stored) => Received::Event(kind, Box::new(stored)),
            Err(error) => Received::Unreadable {
                kind,
                seq: event.id.parse::<u64>().ok().map(Seq),
                error: error.to_string(),
            },
        };
    }
    match event.event.as_str() {
        sse::READY => Received::Ready(
            serde_json::from_str::<sse::Ready>(&event.data)
                .ok()
                .map(|ready| ready.seq),
        ),
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
            shared.deliver(item.into());
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

    fn incoming(n: usize) -> Vec<Arrival> {
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
                Arrival::Message(verify_message(reader, &directory, &mut chain, &stored).unwrap())
            })
            .collect()
    }

    fn a_ref(seq: u64) -> Arrival {
        Arrival::Ref(crate::client::SharedRef {
            id: nexysync_domain::ids::EventId::generate(),
            seq: Seq(seq),
            from: nexysync_domain::ids::AgentName::parse("alice").unwrap(),
            to: None,
            path: "src/lib.rs".into(),
            start_line: 1,
            end_line: 2,
            snippet: "fn main() {}".into(),
            language: None,
            commit: None,
            note: None,
            shared_at: "2025-01-01T00:00:00.000Z".into(),
        })
    }

    const MESSAGES: &[StreamKind] = &[StreamKind::Message];

    /// A stream state whose buffer holds `items`, nothing taken yet.
    fn buffered(items: &[Arrival]) -> State {
        State {
            buffer: items.iter().cloned().collect(),
            ..State::default()
        }
    }

    #[test]
    fn taking_from_the_buffer_delivers_each_message_once_in_order() {
        let items = incoming(3);
        let mut state = buffered(&items);
        let first = state.take(MESSAGES, 2).unwrap();
        assert_eq!(first.items, items[..2]);
        assert!(first.has_more);
        let second = state.take(MESSAGES, 2).unwrap();
        assert_eq!(second.items, items[2..]);
        assert!(!second.has_more);
        assert!(state.take(MESSAGES, 2).is_none());
        assert_eq!(state.cursors.get(StreamKind::Message), items[2].seq());
    }

    #[test]
    fn what_no_reader_has_taken_is_counted_for_the_notice_of_what_waits() {
        let items = incoming(3);
        let mut state = buffered(&items);
        assert_eq!(state.undelivered(), 3);
        state.take(MESSAGES, 1).unwrap();
        assert_eq!(state.undelivered(), 2);
        state.buffer.push_back(a_ref(1));
        assert_eq!(state.undelivered(), 3, "every kind counts");
    }

    #[test]
    fn a_message_that_expired_in_the_buffer_is_passed_over_not_shown() {
        let mut items = incoming(3);
        for item in &mut items[..2] {
            if let Arrival::Message(m) = item {
                m.ttl_s = Some(60);
                m.sent_at = "2025-01-01T00:00:00.000Z".into();
            }
        }
        let mut state = buffered(&items[..2]);
        assert!(
            state.take(MESSAGES, 10).is_none(),
            "nothing to show: wait on"
        );
        assert_eq!(state.cursors.get(StreamKind::Message), items[1].seq());
        assert!(state.buffer.is_empty());
        state.buffer.push_back(items[2].clone());
        let live = state.take(MESSAGES, 10).unwrap();
        assert_eq!(live.items, items[2..]);

        // Passed over before the limit counts: one live message behind expired ones is
        // taken, not left waiting.
        let mut state = buffered(&items);
        let taken = state.take(MESSAGES, 1).unwrap();
        assert_eq!(taken.items, items[2..]);
        assert!(!taken.has_more);
    }

    #[test]
    fn marking_delivered_drops_what_an_inbox_read_already_showed() {
        let items = incoming(3);
        let mut state = buffered(&items);
        state.advance(StreamKind::Message, items[1].seq());
        assert_eq!(state.take(MESSAGES, 10).unwrap().items, items[2..]);
        // The cursor never moves back.
        state.advance(StreamKind::Message, Seq(0));
        assert_eq!(state.cursors.get(StreamKind::Message), items[2].seq());
    }

    #[test]
    fn a_wait_for_one_kind_leaves_the_other_kinds_to_their_own_readers() {
        let messages = incoming(2);
        let reference = a_ref(messages[0].seq().0 + 1);
        let mut state = State {
            buffer: [messages[0].clone(), reference.clone(), messages[1].clone()]
                .into_iter()
                .collect(),
            ..State::default()
        };
        let refs = state.take(&[StreamKind::Ref], 10).unwrap();
        assert_eq!(refs.items, [reference]);
        assert!(!refs.has_more);
        assert_eq!(refs.cursors.get(StreamKind::Message), Seq(0));
        assert!(state.take(&[StreamKind::Kv], 10).is_none());
        let got = state.take(MESSAGES, 10).unwrap();
        assert_eq!(got.items, messages);
        assert!(state.take(&StreamKind::ALL, 10).is_none());
    }

    #[test]
    fn what_a_resume_does_not_replay_is_a_gap_of_the_kinds_with_a_history() {
        let mut state = State::default();
        state.cursors.advance(StreamKind::Ref, Seq(5));
        state.note_unreplayed(Seq(20));
        assert_eq!(state.gap_in(&[StreamKind::Ref]), Some(StreamKind::Ref));
        assert_eq!(state.gap_in(&[StreamKind::Message, StreamKind::Kv]), None);
        // Once delivered up to the gap, it is closed.
        state.advance(StreamKind::Ref, Seq(20));
        assert_eq!(state.gap_in(&[StreamKind::Ref]), None);
        assert_eq!(state.gap_in(&[StreamKind::File]), Some(StreamKind::File));
        state.advance(StreamKind::File, Seq(20));
        // A resume at a position already delivered opens none.
        state.note_unreplayed(Seq(20));
        assert_eq!(state.gap_in(&StreamKind::ALL), None);
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
        assert!(matches!(
            classify(&event),
            Received::Event(StreamKind::Message, m) if *m == stored
        ));
        let as_ref = sse_event(sse::NEW_REF, &stored.seq.0.to_string(), &data);
        assert!(matches!(
            classify(&as_ref),
            Received::Event(StreamKind::Ref, _)
        ));
        assert!(matches!(
            classify(&sse_event(sse::READY, "", r#"{"seq":9}"#)),
            Received::Ready(Some(Seq(9)))
        ));
        assert!(matches!(
            classify(&sse_event(sse::KV_UPDATE, "10", "{}")),
            Received::Unreadable {
                kind: StreamKind::Kv,
                ..
            }
        ));
        assert!(matches!(
            classify(&sse_event("presence_change", "11", "{}")),
            Received::Other
        ));
    }
}
