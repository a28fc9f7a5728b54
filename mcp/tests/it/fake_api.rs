//! A small in-memory stand-in for the NexySync API (docs/api.md), enough to drive the
//! client and the MCP tools end to end without NATS or Postgres: agent auth, the agents
//! list, the write path through `domain::decide`, the inbox, messages, threads and SSE
//! with `Last-Event-ID` resume. It can also misbehave on purpose (inject events, drop
//! connections) so tests can watch the client refuse forgeries and recover.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::decide::{decide, Lookup, WriteFacts};
use nexysync_domain::event::{
    Actor, AgentRegistered, ChainLink, Draft, Envelope, EventBody, ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};
use nexysync_domain::wire::{
    sse, AgentInfo, AgentList, Appended, ErrorBody, ErrorDetail, MessagePage, StoredEvent, Thread,
    WhoAmI,
};
use nexysync_mcp::key_file::{AgentEntry, KeyFile, ProjectEntry, KEY_FILE_VERSION};
use serde::Deserialize;
use tokio::sync::broadcast;

pub struct FakeApi {
    pub url: String,
    pub state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Shared {
    pub project: ProjectId,
    pub owner: SigningKey,
    pub project_key: ProjectKey,
    log: Mutex<Log>,
    appended: broadcast::Sender<StoredEvent>,
    /// Makes every open SSE connection close, silently or with a `catch_up` event.
    disconnect: broadcast::Sender<Disconnect>,
}

#[derive(Debug, Clone, Copy)]
enum Disconnect {
    Silently,
    WithCatchUp,
}

#[derive(Default)]
struct Log {
    events: Vec<StoredEvent>,
    agents: Vec<(AgentInfo, AgentToken)>,
    last: Option<ChainLink>,
    next_seq: u64,
    /// History before this sequence is pruned: reads skip it, older stream cursors are
    /// told `cursor_too_old`.
    oldest: u64,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let owner = SigningKey::generate();
        let project = ProjectId::generate();
        let (appended, _) = broadcast::channel(1024);
        let (disconnect, _) = broadcast::channel(16);
        let state = Arc::new(Shared {
            project,
            owner,
            project_key: ProjectKey::generate(),
            log: Mutex::new(Log {
                next_seq: 1,
                oldest: 1,
                ..Log::default()
            }),
            appended,
            disconnect,
        });
        let created = Draft::new(
            project,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("demo").unwrap(),
                owner_key: state.owner.public_key(),
            }),
        )
        .sign(&state.owner);
        state.append(created);

        let app = Router::new()
            .route("/v1/whoami", get(whoami))
            .route("/v1/agents", get(agents))
            .route("/v1/messages", get(inbox).post(post_message))
            .route("/v1/messages/{id}", get(message))
            .route("/v1/messages/{id}/thread", get(thread))
            .route("/v1/stream", get(stream))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeApi {
            url: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// Registers an agent (signed by the owner) and returns its key file.
    pub fn add_agent(&self, name: &str) -> KeyFile {
        let key = SigningKey::generate();
        let token = AgentToken::generate();
        let id = AgentId::generate();
        let name = AgentName::parse(name).unwrap();
        let registration = Draft::new(
            self.state.project,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent: id,
                name: name.clone(),
                signing_key: key.public_key(),
                token_hash: token.hash(),
            }),
        )
        .sign(&self.state.owner);
        let stored = self.state.append(registration);
        self.state.log.lock().unwrap().agents.push((
            AgentInfo {
                id,
                name: name.clone(),
                signing_key: key.public_key(),
                registration: stored,
            },
            token.clone(),
        ));
        KeyFile {
            version: KEY_FILE_VERSION,
            server: self.url.clone(),
            project: ProjectEntry {
                id: self.state.project,
                name: ProjectName::parse("demo").unwrap(),
                owner_key: self.state.owner.public_key(),
            },
            agent: AgentEntry { id, name },
            token,
            project_key: self.state.project_key.clone(),
            signing_key: key,
        }
    }

    /// Lists an agent whose registration the owner did NOT sign: the server slipping in
    /// a key of its own. Returns its key file (with the right project key, as an insider
    /// would have).
    pub fn add_impostor(&self, name: &str) -> KeyFile {
        let key_file = self.add_agent(name);
        let mut log = self.state.log.lock().unwrap();
        let (info, _) = log
            .agents
            .iter_mut()
            .find(|(info, _)| info.id == key_file.agent.id)
            .unwrap();
        let forged = Draft::new(
            self.state.project,
            Actor::Owner,
            info.registration.event.body.clone(),
        )
        .sign(&SigningKey::generate());
        info.registration.event = Envelope {
            prev: info.registration.event.prev,
            ..forged
        };
        key_file
    }

    /// Appends an event as-is (no checks), as a malicious server could, and pushes it.
    pub fn inject(&self, event: Envelope) -> StoredEvent {
        self.state.append(event)
    }

    /// Closes every open SSE connection.
    pub fn drop_streams(&self) {
        let _ = self.state.disconnect.send(Disconnect::Silently);
    }

    /// Tells every open SSE connection it fell behind (`catch_up`) and closes it.
    pub fn catch_up_streams(&self) {
        let _ = self.state.disconnect.send(Disconnect::WithCatchUp);
    }

    /// Prunes the history before `seq`.
    pub fn prune_before(&self, seq: Seq) {
        self.state.log.lock().unwrap().oldest = seq.0;
    }
}

impl Shared {
    /// Everything the server stores.
    pub fn dump(&self) -> Vec<StoredEvent> {
        self.log.lock().unwrap().events.clone()
    }

    fn append(&self, mut event: Envelope) -> StoredEvent {
        let stored = {
            let mut log = self.log.lock().unwrap();
            let seq = Seq(log.next_seq);
            log.next_seq += 1;
            event.prev = log.last;
            log.last = Some(ChainLink {
                seq,
                hash: event.hash(),
            });
            let stored = StoredEvent { seq, event };
            log.events.push(stored.clone());
            stored
        };
        let _ = self.appended.send(stored.clone());
        stored
    }

    fn caller(&self, headers: &HeaderMap) -> Result<AgentInfo, Response> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unauthorized", "missing token"))?;
        let log = self.log.lock().unwrap();
        log.agents
            .iter()
            .find(|(_, t)| t.expose_secret() == token)
            .map(|(info, _)| info.clone())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }),
    )
        .into_response()
}

/// Whether `me` may read `event`: its sender, its recipient, or anyone for a broadcast.
fn readable(me: AgentId, event: &Envelope) -> bool {
    let EventBody::MessageSent(sent) = &event.body else {
        return false;
    };
    event.actor == Actor::Agent(me) || sent.to.is_none() || sent.to == Some(me)
}

/// Inbox membership: readable and not sent by me.
fn in_inbox(me: AgentId, event: &Envelope) -> bool {
    readable(me, event) && event.actor != Actor::Agent(me)
}

async fn whoami(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match state.caller(&headers) {
        Ok(me) => Json(WhoAmI {
            project: state.project,
            project_name: ProjectName::parse("demo").unwrap(),
            agent: me.id,
            agent_name: me.name,
        })
        .into_response(),
        Err(e) => e,
    }
}

async fn agents(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.caller(&headers) {
        return e;
    }
    let log = state.log.lock().unwrap();
    Json(AgentList {
        agents: log.agents.iter().map(|(info, _)| info.clone()).collect(),
    })
    .into_response()
}

async fn post_message(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(event): Json<Envelope>,
) -> Response {
    let me = match state.caller(&headers) {
        Ok(me) => me,
        Err(e) => return e,
    };
    let facts = {
        let log = state.log.lock().unwrap();
        if let Some(existing) = log.events.iter().find(|s| s.event.id == event.id) {
            return (
                StatusCode::OK,
                Json(Appended {
                    id: event.id,
                    seq: existing.seq,
                    duplicate: true,
                }),
            )
                .into_response();
        }
        let mut facts = WriteFacts::new(state.project, Actor::Agent(me.id));
        facts.owner_key = Some(state.owner.public_key());
        facts.caller_key = Some(me.signing_key);
        if let EventBody::MessageSent(sent) = &event.body {
            if let Some(to) = sent.to {
                facts.recipient = if log.agents.iter().any(|(a, _)| a.id == to) {
                    Lookup::Found
                } else {
                    Lookup::Missing
                };
            }
            if let Some(parent) = sent.reply_to {
                facts.reply_to = if log.events.iter().any(|s| s.event.id == parent) {
                    Lookup::Found
                } else {
                    Lookup::Missing
                };
            }
        }
        facts
    };
    if let Err(rejection) = decide(&facts, &event) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            rejection.code(),
            &rejection.to_string(),
        );
    }
    let stored = state.append(event);
    (
        StatusCode::CREATED,
        Json(Appended {
            id: stored.event.id,
            seq: stored.seq,
            duplicate: false,
        }),
    )
        .into_response()
}

#[derive(Deserialize)]
struct InboxQuery {
    since_seq: Option<u64>,
    limit: Option<u32>,
}

async fn inbox(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Response {
    let me = match state.caller(&headers) {
        Ok(me) => me,
        Err(e) => return e,
    };
    let since = Seq(query.since_seq.unwrap_or(0));
    let limit = query.limit.unwrap_or(50).min(500) as usize;
    let log = state.log.lock().unwrap();
    let all: Vec<StoredEvent> = log
        .events
        .iter()
        .filter(|s| s.seq > since && s.seq.0 >= log.oldest && in_inbox(me.id, &s.event))
        .cloned()
        .collect();
    let has_more = all.len() > limit;
    let messages: Vec<StoredEvent> = all.into_iter().take(limit).collect();
    let next_since_seq = messages.last().map_or(since, |s| s.seq);
    Json(MessagePage {
        messages,
        next_since_seq,
        has_more,
    })
    .into_response()
}

async fn message(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let me = match state.caller(&headers) {
        Ok(me) => me,
        Err(e) => return e,
    };
    let log = state.log.lock().unwrap();
    match log
        .events
        .iter()
        .find(|s| s.event.id.to_string() == id && readable(me.id, &s.event))
    {
        Some(stored) => Json(stored.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "message_not_found",
            "no such message",
        ),
    }
}

async fn thread(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let me = match state.caller(&headers) {
        Ok(me) => me,
        Err(e) => return e,
    };
    let log = state.log.lock().unwrap();
    let by_id: HashMap<EventId, &StoredEvent> =
        log.events.iter().map(|s| (s.event.id, s)).collect();
    let root_of = |mut id: EventId| loop {
        match by_id.get(&id).map(|s| &s.event.body) {
            Some(EventBody::MessageSent(sent)) if sent.reply_to.is_some() => {
                id = sent.reply_to.unwrap_or(id)
            }
            _ => return id,
        }
    };
    let Some(start) = log
        .events
        .iter()
        .find(|s| s.event.id.to_string() == id && readable(me.id, &s.event))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "message_not_found",
            "no such message",
        );
    };
    let root = root_of(start.event.id);
    let messages = log
        .events
        .iter()
        .filter(|s| readable(me.id, &s.event) && root_of(s.event.id) == root)
        .cloned()
        .collect();
    Json(Thread { root, messages }).into_response()
}

#[derive(Deserialize)]
struct StreamQuery {
    since_seq: Option<u64>,
}

async fn stream(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let me = match state.caller(&headers) {
        Ok(me) => me,
        Err(e) => return e,
    };
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(query.since_seq)
        .unwrap_or(0);
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut live = state.appended.subscribe();
    let mut disconnect = state.disconnect.subscribe();
    let (backlog, head, oldest) = {
        let log = state.log.lock().unwrap();
        let backlog: Vec<StoredEvent> = log
            .events
            .iter()
            .filter(|s| s.seq.0 > since && s.seq.0 >= log.oldest && in_inbox(me.id, &s.event))
            .cloned()
            .collect();
        (backlog, log.next_seq - 1, log.oldest)
    };
    let events = async_stream::stream! {
        if since + 1 < oldest {
            let too_old = sse::CursorTooOld { requested: Seq(since), oldest_seq: Seq(oldest) };
            yield Ok::<_, std::convert::Infallible>(
                Event::default().event(sse::CURSOR_TOO_OLD).data(serde_json::to_string(&too_old).unwrap()),
            );
            return;
        }
        let mut last = since;
        for stored in backlog {
            last = stored.seq.0;
            yield Ok(new_message(&stored));
        }
        yield Ok(Event::default().event(sse::READY).data(format!("{{\"seq\":{head}}}")));
        loop {
            tokio::select! {
                how = disconnect.recv() => {
                    if let Ok(Disconnect::WithCatchUp) = how {
                        let catch_up = sse::CatchUp { last_seq: Seq(last) };
                        yield Ok(Event::default().event(sse::CATCH_UP).data(serde_json::to_string(&catch_up).unwrap()));
                    }
                    break;
                }
                next = live.recv() => match next {
                    Ok(stored) if stored.seq.0 > last && in_inbox(me.id, &stored.event) => {
                        last = stored.seq.0;
                        yield Ok(new_message(&stored));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
            }
        }
    };
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_millis(500))
                .text("heartbeat"),
        )
        .into_response()
}

fn new_message(stored: &StoredEvent) -> Event {
    Event::default()
        .event(sse::NEW_MESSAGE)
        .id(stored.seq.0.to_string())
        .data(serde_json::to_string(stored).unwrap())
}
