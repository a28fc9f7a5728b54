//! Presence: which agents hold an SSE stream on a live API instance.
//!
//! Presence is a server fact, not something an agent says: each API instance publishes
//! [`PresenceEvent`]s to its own short-retention stream, outside the audited log, with
//! no content and no signature (ADR 0006). An agent is online while some instance whose
//! last word is at most `timeout` old has it connected; an instance that dies without
//! saying so therefore leaves nobody online for longer than `timeout`.
//!
//! [`PresenceBoard`] is the pure state machine every instance runs over those events to
//! tell who came online or went offline, including by an instance going silent.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ProjectId};

/// One API instance, chosen at random when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(uuid::Uuid);

impl InstanceId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An agent of a project, as presence tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresenceKey {
    pub project: ProjectId,
    pub agent: AgentId,
}

/// What an API instance says about its SSE streams. `at` is the instance's clock (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The agent's first stream on this instance opened.
    Connected {
        instance: InstanceId,
        #[serde(flatten)]
        key: PresenceKey,
        at: i64,
    },
    /// The agent's last stream on this instance closed.
    Disconnected {
        instance: InstanceId,
        #[serde(flatten)]
        key: PresenceKey,
        at: i64,
    },
    /// The instance is alive, with exactly these agents connected (so a lost
    /// `connected`/`disconnected` heals at the next heartbeat).
    Heartbeat {
        instance: InstanceId,
        at: i64,
        connected: Vec<PresenceKey>,
    },
    /// The instance is shutting down: none of its streams remain.
    Stopped { instance: InstanceId, at: i64 },
}

impl PresenceEvent {
    pub fn instance(&self) -> InstanceId {
        match self {
            Self::Connected { instance, .. }
            | Self::Disconnected { instance, .. }
            | Self::Heartbeat { instance, .. }
            | Self::Stopped { instance, .. } => *instance,
        }
    }

    pub fn at(&self) -> i64 {
        match self {
            Self::Connected { at, .. }
            | Self::Disconnected { at, .. }
            | Self::Heartbeat { at, .. }
            | Self::Stopped { at, .. } => *at,
        }
    }
}

/// An agent came online or went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    pub key: PresenceKey,
    pub online: bool,
    pub at: i64,
}

#[derive(Debug, Default)]
struct InstanceView {
    last_heard: i64,
    connected: HashSet<PresenceKey>,
}

/// Who is online, from the instances' events and their silence.
#[derive(Debug)]
pub struct PresenceBoard {
    timeout_ms: i64,
    instances: HashMap<InstanceId, InstanceView>,
    online: HashSet<PresenceKey>,
}

impl PresenceBoard {
    /// A board on which an instance silent for more than `timeout_ms` counts as gone.
    pub fn new(timeout_ms: u64) -> Self {
        Self {
            timeout_ms: timeout_ms.min(i64::MAX as u64) as i64,
            instances: HashMap::new(),
            online: HashSet::new(),
        }
    }

    /// Applies one event, observed at `now_ms`; the agents whose presence changed.
    pub fn apply(&mut self, event: &PresenceEvent, now_ms: i64) -> Vec<PresenceChange> {
        let instance = event.instance();
        let mut touched: Vec<PresenceKey> = Vec::new();
        match event {
            PresenceEvent::Stopped { .. } => {
                if let Some(view) = self.instances.remove(&instance) {
                    touched.extend(view.connected);
                }
            }
            _ => {
                let cutoff = now_ms.saturating_sub(self.timeout_ms);
                let view = self.instances.entry(instance).or_default();
                // Hearing from an instance changes its other agents only if it had gone
                // silent: touching them all on every connect would make a thousand
                // streams through one instance cost a million look-ups.
                if view.last_heard < cutoff {
                    touched.extend(view.connected.iter().copied());
                }
                view.last_heard = view.last_heard.max(event.at());
                match event {
                    PresenceEvent::Connected { key, .. } => {
                        view.connected.insert(*key);
                        touched.push(*key);
                    }
                    PresenceEvent::Disconnected { key, .. } => {
                        view.connected.remove(key);
                        touched.push(*key);
                    }
                    PresenceEvent::Heartbeat { connected, .. } => {
                        let now_connected: HashSet<PresenceKey> =
                            connected.iter().copied().collect();
                        // Those it no longer lists, and those it lists anew.
                        touched
                            .extend(view.connected.symmetric_difference(&now_connected).copied());
                        view.connected = now_connected;
                    }
                    PresenceEvent::Stopped { .. } => {}
                }
            }
        }
        self.settle(touched, now_ms, event.at())
    }

    /// Forgets instances silent for longer than the timeout; the agents that went
    /// offline with them.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<PresenceChange> {
        let cutoff = now_ms.saturating_sub(self.timeout_ms);
        let silent: Vec<InstanceId> = self
            .instances
            .iter()
            .filter(|(_, view)| view.last_heard < cutoff)
            .map(|(id, _)| *id)
            .collect();
        let mut touched = Vec::new();
        for id in silent {
            if let Some(view) = self.instances.remove(&id) {
                touched.extend(view.connected);
            }
        }
        self.settle(touched, now_ms, now_ms)
    }

    /// Whether `key` is online now.
    pub fn is_online(&self, key: &PresenceKey, now_ms: i64) -> bool {
        let cutoff = now_ms.saturating_sub(self.timeout_ms);
        self.instances
            .values()
            .any(|view| view.last_heard >= cutoff && view.connected.contains(key))
    }

    fn settle(&mut self, touched: Vec<PresenceKey>, now_ms: i64, at: i64) -> Vec<PresenceChange> {
        let mut changes = Vec::new();
        let mut seen = HashSet::new();
        for key in touched {
            if !seen.insert(key) {
                continue;
            }
            let online = self.is_online(&key, now_ms);
            let was = self.online.contains(&key);
            if online != was {
                if online {
                    self.online.insert(key);
                } else {
                    self.online.remove(&key);
                }
                changes.push(PresenceChange { key, online, at });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PresenceKey {
        PresenceKey {
            project: ProjectId::generate(),
            agent: AgentId::generate(),
        }
    }

    #[test]
    fn an_agent_is_online_from_its_first_stream_to_its_last() {
        let mut board = PresenceBoard::new(3_000);
        let a = InstanceId::generate();
        let bob = key();
        let on = board.apply(
            &PresenceEvent::Connected {
                instance: a,
                key: bob,
                at: 1_000,
            },
            1_000,
        );
        assert_eq!(
            on,
            [PresenceChange {
                key: bob,
                online: true,
                at: 1_000
            }]
        );
        let beat = PresenceEvent::Heartbeat {
            instance: a,
            at: 2_000,
            connected: vec![bob],
        };
        assert!(board.apply(&beat, 2_000).is_empty(), "no change");
        let off = board.apply(
            &PresenceEvent::Disconnected {
                instance: a,
                key: bob,
                at: 2_500,
            },
            2_500,
        );
        assert_eq!(off.len(), 1);
        assert!(!off[0].online);
    }

    #[test]
    fn a_silent_instance_leaves_nobody_online_after_the_timeout() {
        let mut board = PresenceBoard::new(3_000);
        let (a, b) = (InstanceId::generate(), InstanceId::generate());
        let (bob, carol) = (key(), key());
        board.apply(
            &PresenceEvent::Heartbeat {
                instance: a,
                at: 0,
                connected: vec![bob, carol],
            },
            0,
        );
        board.apply(
            &PresenceEvent::Heartbeat {
                instance: b,
                at: 2_000,
                connected: vec![carol],
            },
            2_000,
        );
        assert!(board.sweep(3_000).is_empty(), "within the bound");
        let gone = board.sweep(3_001);
        assert_eq!(gone.len(), 1, "carol is still on b");
        assert_eq!((gone[0].key, gone[0].online), (bob, false));
        assert!(board.is_online(&carol, 3_001));
    }

    #[test]
    fn an_instance_that_stops_takes_its_agents_offline_at_once() {
        let mut board = PresenceBoard::new(3_000);
        let a = InstanceId::generate();
        let bob = key();
        board.apply(
            &PresenceEvent::Connected {
                instance: a,
                key: bob,
                at: 0,
            },
            0,
        );
        let off = board.apply(
            &PresenceEvent::Stopped {
                instance: a,
                at: 10,
            },
            10,
        );
        assert_eq!(off.len(), 1);
        assert!(!board.is_online(&bob, 10));
    }

    #[test]
    fn events_replayed_from_long_ago_bring_nobody_online() {
        let mut board = PresenceBoard::new(3_000);
        let old = PresenceEvent::Connected {
            instance: InstanceId::generate(),
            key: key(),
            at: 0,
        };
        assert!(board.apply(&old, 60_000).is_empty());
    }

    #[test]
    fn presence_events_have_a_stable_json_shape() {
        let event = PresenceEvent::Stopped {
            instance: InstanceId::from_uuid(uuid::Uuid::nil()),
            at: 5,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"stopped","instance":"00000000-0000-0000-0000-000000000000","at":5}"#
        );
    }
}
