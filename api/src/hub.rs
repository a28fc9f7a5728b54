//! The fan-out hub: each API instance tails the log once and hands every event to the
//! SSE streams of its project, in memory.
//!
//! Ordering contract with subscribers: under one lock the hub records an event's sequence
//! as its position and sends it; a subscriber, under the same lock, subscribes and reads
//! the position. So every event after the position a subscriber saw reaches it through
//! its receiver, and everything up to that position is in the log (and, once projected,
//! in the read models) for the subscriber's backlog.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nexysync_domain::event::{Actor, EventKind};
use nexysync_domain::ids::{AgentId, ProjectId, Seq};
use nexysync_domain::wire::sse;
use nexysync_log::EventLog;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

/// One event as the hub hands it out.
#[derive(Debug)]
pub struct HubEvent {
    pub seq: Seq,
    pub actor: Option<AgentId>,
    /// The recipient, or `None` for everyone in the project.
    pub to: Option<AgentId>,
    /// The SSE frame (`new_message`, `new_ref`, `new_file` or `kv_update`, id, `StoredEvent` JSON), encoded
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
    #[serde(default)]
    meta: RoutingMeta,
}

#[derive(Debug, Default, serde::Deserialize)]
struct RoutingMeta {
    #[serde(default)]
    to: Option<AgentId>,
}

/// Shared handle on the hub.
#[derive(Debug, Clone)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    capacity: usize,
    shutdown: watch::Receiver<bool>,
}

impl Hub {
    /// Starts tailing the log from its current end. `capacity` bounds each project's
    /// buffer: a subscriber that falls further behind is told to catch up.
    pub async fn start(
        log: EventLog,
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
                                self.publish(log.prefix(), raw);
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

    fn publish(&self, prefix: &nexysync_log::Prefix, raw: nexysync_log::RawEvent) {
        let event = serde_json::from_slice::<Routing>(&raw.payload)
            .ok()
            .and_then(|routing| {
                let name = match routing.kind {
                    EventKind::MessageSent => sse::NEW_MESSAGE,
                    EventKind::KvSet | EventKind::KvDeleted => sse::KV_UPDATE,
                    EventKind::RefShared => sse::NEW_REF,
                    EventKind::FileShared => sse::NEW_FILE,
                    _ => return None,
                };
                let payload = std::str::from_utf8(&raw.payload).ok()?;
                Some((
                    prefix.project_of(&raw.subject)?,
                    HubEvent {
                        seq: raw.seq,
                        actor: match routing.actor {
                            Actor::Agent(id) => Some(id),
                            Actor::Owner => None,
                        },
                        to: routing.meta.to,
                        frame: crate::sse::stored_event_frame(name, raw.seq, payload),
                    },
                ))
            });
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
}
