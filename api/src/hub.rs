//! The fan-out hub: each API instance tails the log once and hands every event to the
//! SSE streams of its project, in memory.
//!
//! Ordering contract with subscribers: under one lock the hub records an event's sequence
//! as its position and sends it; a subscriber, under the same lock, subscribes and reads
//! the position. So every event after the position a subscriber saw reaches it through
//! its receiver, and everything up to that position is in the log (and, once projected,
//! in the read models) for the subscriber's backlog.
//!
//! Message-state events (`message_update`) go to whoever may read the message they name,
//! which the event itself does not say: the hub asks the read models, which hold the
//! message since before the update was decided.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nexysync_domain::event::{Actor, EventKind};
use nexysync_domain::ids::{AgentId, EventId, ProjectId, Seq};
use nexysync_domain::wire::sse;
use nexysync_log::EventLog;
use nexysync_projections::ReadModels;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

/// One event as the hub hands it out.
#[derive(Debug)]
pub struct HubEvent {
    /// The event's sequence in the log; `None` for what is not in the log (presence),
    /// which streams pass on without moving their cursor.
    pub seq: Option<Seq>,
    pub actor: Option<AgentId>,
    /// The recipient, or `None` for everyone in the project.
    pub to: Option<AgentId>,
    /// The SSE frame (`new_message`, `new_ref`, `new_file`, `kv_update` or
    /// `message_update`, id, `StoredEvent` JSON; or `presence_change` without id), encoded
    /// once for every subscriber.
    pub frame: bytes::Bytes,
}

impl HubEvent {
    /// Whether this event belongs on `agent`'s stream: the same rule as its inbox (a
    /// direct message to it, even from itself; a broadcast by another agent).
    pub fn is_for(&self, agent: AgentId) -> bool {
        match self.to {
            Some(to) => to == agent,
            None => self.actor != Some(agent),
        }
    }
}

#[derive(Debug)]
struct HubState {
    position: Seq,
    projects: HashMap<ProjectId, broadcast::Sender<Arc<HubEvent>>>,
}

/// The part of a stored event the hub routes by: read without decoding the sealed fields
/// and signature (clients verify those).
#[derive(Debug, serde::Deserialize)]
struct Routing {
    actor: Actor,
    kind: EventKind,
    /// The event's time, for a message's expiry.
    #[serde(default)]
    at: i64,
    #[serde(default)]
    meta: RoutingMeta,
}

#[derive(Debug, Default, serde::Deserialize)]
struct RoutingMeta {
    #[serde(default)]
    to: Option<AgentId>,
    /// The message a message-state event is about.
    #[serde(default)]
    message: Option<EventId>,
    /// A message's own TTL.
    #[serde(default)]
    ttl_s: Option<u32>,
}

/// Shared handle on the hub.
#[derive(Debug, Clone)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    capacity: usize,
    shutdown: watch::Receiver<bool>,
    /// Where the audience of a message-state event is looked up.
    reads: ReadModels,
}

impl Hub {
    /// Starts tailing the log from its current end. `capacity` bounds each project's
    /// buffer: a subscriber that falls further behind is told to catch up.
    pub async fn start(
        log: EventLog,
        reads: ReadModels,
        capacity: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, nexysync_log::LogError> {
        let position = Seq(log.last_seq().await?);
        let hub = Self {
            state: Arc::new(Mutex::new(HubState {
                position,
                projects: HashMap::new(),
            })),
            capacity,
            shutdown,
            reads,
        };
        tokio::spawn(hub.clone().tail(log));
        Ok(hub)
    }

    /// Subscribes to `project`; returns the receiver and the hub's position at that
    /// instant (every later event arrives through the receiver).
    pub fn subscribe(&self, project: ProjectId) -> (broadcast::Receiver<Arc<HubEvent>>, Seq) {
        let mut state = self.lock();
        let position = state.position;
        let capacity = self.capacity;
        let receiver = state
            .projects
            .entry(project)
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        (receiver, position)
    }

    /// The last sequence the hub has handed out.
    pub fn position(&self) -> Seq {
        self.lock().position
    }

    /// Resolves when the server is shutting down (SSE streams end then).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn tail(self, log: EventLog) {
        let mut backoff = Duration::from_millis(100);
        let mut shutdown = self.shutdown.clone();
        loop {
            let from = self.position();
            match log.read_all(from).await {
                Ok(mut events) => {
                    info!(from = from.0, "hub tailing the log");
                    loop {
                        let next = tokio::select! {
                            next = events.next() => next,
                            _ = shutdown.changed() => return,
                        };
                        let Some(next) = next else { break };
                        match next {
                            Ok(raw) => {
                                backoff = Duration::from_millis(100);
                                self.publish(log.prefix(), raw).await;
                            }
                            Err(e) => {
                                warn!(error = %e, "hub lost the log; resuming");
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "hub cannot read the log; retrying"),
            }
            if *self.shutdown.borrow() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Hands a presence change to the streams of its project (every agent but the one
    /// that changed), outside the log's order.
    pub fn publish_presence(&self, change: nexysync_domain::presence::PresenceChange) {
        let data = sse::PresenceChange {
            agent: change.key.agent,
            online: change.online,
            at: change.at,
        };
        let Ok(json) = serde_json::to_string(&data) else {
            return;
        };
        let event = HubEvent {
            seq: None,
            actor: Some(change.key.agent),
            to: None,
            frame: crate::sse::frame(sse::PRESENCE_CHANGE, None, &json),
        };
        let mut state = self.lock();
        if let Some(sender) = state.projects.get(&change.key.project) {
            if sender.send(Arc::new(event)).is_err() {
                state.projects.remove(&change.key.project);
            }
        }
    }

    async fn publish(&self, prefix: &nexysync_log::Prefix, raw: nexysync_log::RawEvent) {
        let event = self.hub_event(prefix, &raw).await;
        let mut state = self.lock();
        if raw.seq > state.position {
            state.position = raw.seq;
        }
        if let Some((project, event)) = event {
            if let Some(sender) = state.projects.get(&project) {
                if sender.send(Arc::new(event)).is_err() {
                    // Nobody of this project is listening any more.
                    state.projects.remove(&project);
                }
            }
        }
    }

    /// The frame and route of `raw`, if it is an event the streams carry.
    async fn hub_event(
        &self,
        prefix: &nexysync_log::Prefix,
        raw: &nexysync_log::RawEvent,
    ) -> Option<(ProjectId, HubEvent)> {
        let routing = serde_json::from_slice::<Routing>(&raw.payload).ok()?;
        let project = prefix.project_of(raw.subject.as_str())?;
        let actor = match routing.actor {
            Actor::Agent(id) => Some(id),
            Actor::Owner | Actor::Pruner => None,
        };
        let (name, to) = match routing.kind {
            EventKind::MessageSent => {
                // A message the tail reaches after its own TTL ran out is not pushed: an
                // expired message is never returned again (ADR 0012). One expiring by the
                // project default only can be late by that default at most; the read
                // models, which resumes and reads use, hold the exact expiry.
                let expires = routing
                    .meta
                    .ttl_s
                    .map(|ttl| routing.at.saturating_add(i64::from(ttl) * 1000));
                if expires.is_some_and(|at| at <= chrono::Utc::now().timestamp_millis()) {
                    return None;
                }
                (sse::NEW_MESSAGE, routing.meta.to)
            }
            EventKind::KvSet | EventKind::KvDeleted => (sse::KV_UPDATE, routing.meta.to),
            EventKind::RefShared => (sse::NEW_REF, routing.meta.to),
            EventKind::FileShared => (sse::NEW_FILE, routing.meta.to),
            EventKind::ReactionAdded
            | EventKind::ReactionRemoved
            | EventKind::MessageRead
            | EventKind::MessagePinned
            | EventKind::MessageUnpinned
            | EventKind::MessageDeleted => {
                let audience = match self.reads.audience(project, routing.meta.message?).await {
                    Ok(audience) => audience?,
                    Err(e) => {
                        warn!(error = %e, seq = raw.seq.0, "no audience for a message update; not pushed");
                        return None;
                    }
                };
                // Only the sender and the recipient may act on a direct message: the
                // update goes to the other one. A broadcast's goes to everyone else.
                let to = audience.recipient.map(|recipient| {
                    if actor == Some(audience.sender) {
                        recipient
                    } else {
                        audience.sender
                    }
                });
                (sse::MESSAGE_UPDATE, to)
            }
            _ => return None,
        };
        let payload = std::str::from_utf8(&raw.payload).ok()?;
        Some((
            project,
            HubEvent {
                seq: Some(raw.seq),
                actor,
                to,
                frame: crate::sse::stored_event_frame(name, raw.seq, payload),
            },
        ))
    }
}
