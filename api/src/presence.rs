//! Presence of this API instance's SSE streams (ADR 0006).
//!
//! - [`Presence::connect`]: every SSE stream holds a [`PresenceGuard`]; the agent's first
//!   stream on this instance publishes `connected`, dropping its last `disconnected`.
//! - [`Presence::run`]: the publisher, run inside the server's future: it owns the
//!   per-agent stream counts, publishes in order, sends a heartbeat (the whole connected
//!   set) every interval, and `stopped` on a graceful shutdown. An instance that dies
//!   stops heartbeating, and the others' boards expire its agents after the timeout.
//! - [`watch_board`]: every instance reads the presence stream into a
//!   [`PresenceBoard`] and sweeps it each interval; changes go to the hub as
//!   `presence_change` frames for the project's streams.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use nexysync_domain::presence::{InstanceId, PresenceBoard, PresenceEvent, PresenceKey};
use nexysync_log::PresenceLog;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::hub::Hub;

enum Command {
    Opened(PresenceKey),
    Closed(PresenceKey),
}

/// This instance's presence handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Presence {
    instance: InstanceId,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Opened(_) => "Opened",
            Self::Closed(_) => "Closed",
        })
    }
}

/// Held by one SSE stream; dropping it closes the stream's presence.
#[derive(Debug)]
pub struct PresenceGuard {
    key: PresenceKey,
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        // The publisher may be gone (shutdown, crash): then nobody needs to know.
        let _ = self.commands.send(Command::Closed(self.key));
    }
}

/// The publisher's half, consumed by [`Presence::run`].
#[derive(Debug)]
pub struct PresencePublisher {
    instance: InstanceId,
    commands: mpsc::UnboundedReceiver<Command>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Presence {
    /// A new instance id and its publisher.
    pub fn new() -> (Self, PresencePublisher) {
        let instance = InstanceId::generate();
        let (commands, receiver) = mpsc::unbounded_channel();
        (
            Self { instance, commands },
            PresencePublisher {
                instance,
                commands: receiver,
            },
        )
    }

    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// Registers one SSE stream of `key`'s agent until the guard drops.
    pub fn connect(&self, key: PresenceKey) -> PresenceGuard {
        let _ = self.commands.send(Command::Opened(key));
        PresenceGuard {
            key,
            commands: self.commands.clone(),
        }
    }
}

impl PresencePublisher {
    /// Publishes this instance's presence until `stopped` turns true, then says
    /// `stopped` (bounded, so a dead NATS cannot hold the shutdown).
    pub async fn run(
        mut self,
        log: PresenceLog,
        heartbeat: Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        let instance = self.instance;
        let mut streams: HashMap<PresenceKey, usize> = HashMap::new();
        let mut beats = tokio::time::interval(heartbeat);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Opened(key)) => {
                        let count = streams.entry(key).or_insert(0);
                        *count += 1;
                        (*count == 1).then(|| PresenceEvent::Connected { instance, key, at: now_ms() })
                    }
                    Some(Command::Closed(key)) => match streams.get_mut(&key) {
                        Some(count) if *count > 1 => {
                            *count -= 1;
                            None
                        }
                        Some(_) => {
                            streams.remove(&key);
                            Some(PresenceEvent::Disconnected { instance, key, at: now_ms() })
                        }
                        None => None,
                    },
                    None => return,
                },
                _ = beats.tick() => Some(PresenceEvent::Heartbeat {
                    instance,
                    at: now_ms(),
                    connected: streams.keys().copied().collect(),
                }),
                _ = stop_requested(&mut stopped) => {
                    let goodbye = PresenceEvent::Stopped { instance, at: now_ms() };
                    match tokio::time::timeout(Duration::from_secs(2), log.publish(&goodbye)).await {
                        Ok(Ok(_)) => debug!(%instance, "presence: said goodbye"),
                        Ok(Err(e)) => warn!(error = %e, "presence: goodbye not published"),
                        Err(_) => warn!("presence: goodbye timed out"),
                    }
                    return;
                }
            };
            if let Some(event) = event {
                // A lost event heals at the next heartbeat, which carries the whole state.
                if let Err(e) = log.publish(&event).await {
                    warn!(error = %e, "presence event not published");
                }
            }
        }
    }
}

/// Resolves once the server is stopping (or its stop signal is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await: drop it here.
    let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
}

/// Reads every retained presence event, then live ones, into a board, and sweeps it every
/// `interval`; each change becomes a `presence_change` on the hub. Ends on shutdown.
pub async fn watch_board(
    log: PresenceLog,
    hub: Hub,
    timeout: Duration,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut board = PresenceBoard::new(timeout.as_millis().min(u64::MAX as u128) as u64);
    let mut after = 0;
    let mut backoff = Duration::from_millis(100);
    let mut sweeps = tokio::time::interval(interval);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut events = match log.read(after).await {
            Ok(events) => events,
            Err(e) => {
                warn!(error = %e, "presence board cannot read the presence stream; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop_requested(&mut stopped) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let changes = tokio::select! {
                next = events.next() => match next {
                    Some(Ok(stored)) => {
                        backoff = Duration::from_millis(100);
                        after = stored.seq;
                        board.apply(&stored.event, now_ms())
                    }
                    Some(Err(nexysync_log::LogError::Corrupt { seq, reason })) => {
                        warn!(seq, %reason, "undecodable presence event skipped");
                        after = seq;
                        continue;
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "presence board lost the stream; resuming");
                        break;
                    }
                    None => break,
                },
                _ = sweeps.tick() => board.sweep(now_ms()),
                _ = stop_requested(&mut stopped) => return,
            };
            for change in changes {
                hub.publish_presence(change);
            }
        }
    }
}
