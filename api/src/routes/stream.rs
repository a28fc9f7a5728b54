//! `GET /v1/stream`: server-sent events for one agent.
//!
//! A connection with a cursor (`Last-Event-ID` or `?since_seq=`) first gets everything it
//! missed from the read models, then the hub's live events, with no gap and no duplicate
//! (see `hub` for the ordering contract), leaving out messages deleted since (they have
//! no content left). Then `ready`, then live events. A reader that
//! falls more than the buffer behind gets `catch_up` and the connection closes.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use bytes::Bytes;
use nexysync_domain::ids::Seq;
use nexysync_domain::presence::PresenceKey;
use nexysync_domain::wire::sse;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::sse::{frame, heartbeat, stored_event_frame, EventStream};
use crate::state::AppState;

/// Backlog rows read per query.
const BACKLOG_PAGE: u32 = 500;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StreamQuery {
    /// Resume after this stream sequence (the `Last-Event-ID` header wins when both are
    /// given); absent: live events only.
    since_seq: Option<Seq>,
    /// `presence=true`: also push `presence_change`. Off by default: in a project of N
    /// agents every connect would otherwise cost N frames, N² when they all connect.
    #[serde(default)]
    presence: bool,
}

pub async fn subscribe(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<EventStream, ApiError> {
    let cursor = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Seq)
                .ok_or_else(|| {
                    ApiError::InvalidRequest("Last-Event-ID must be a stream sequence".into())
                })?,
        ),
        None => query.since_seq,
    };
    let (mut live, position) = state.hub.subscribe(me.project);
    // This agent is online while the stream lives (the guard moves into it).
    let presence = state.presence.connect(PresenceKey {
        project: me.project,
        agent: me.agent,
    });
    let mut shutdown = state.hub.shutdown_signal();
    let mut heartbeats = tokio::time::interval(state.heartbeat);
    heartbeats.reset(); // the first tick is one interval from now
    let agent = me.agent;
    let wants_presence = query.presence;

    let frames = async_stream::stream! {
        let _presence = presence;
        let mut sent = position;
        if let Some(after) = cursor {
            // Everything in (after, position] comes from the read models, once they
            // have applied it.
            if let Err(e) = state.wait_for_projection(Some(position)).await {
                // Better a stream the client resumes than a silent gap: say so and close.
                warn!(error = %e, "read models lagging; asking the client to catch up later");
                yield Ok(json_frame(sse::CATCH_UP, &sse::CatchUp { last_seq: after }));
                return;
            }
            let mut from = after;
            loop {
                match state.reads.stream_backlog(agent, from, position, BACKLOG_PAGE).await {
                    Ok(rows) => {
                        let full = rows.len() == BACKLOG_PAGE as usize;
                        for row in rows {
                            from = row.seq;
                            yield Ok::<Bytes, Infallible>(stored_event_frame(sse::NEW_MESSAGE, row.seq, &row.envelope));
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "backlog query failed; closing the stream");
                        return;
                    }
                }
            }
            sent = position.max(after);
        }
        yield Ok(json_frame(sse::READY, &sse::Ready { seq: sent }));
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => match event.seq {
                        Some(seq) if seq > sent => {
                            sent = seq;
                            if event.is_for(agent) {
                                yield Ok(event.frame.clone());
                            }
                        }
                        Some(_) => {}
                        None => {
                            if wants_presence && event.is_for(agent) {
                                yield Ok(event.frame.clone());
                            }
                        }
                    },
                    Err(RecvError::Lagged(missed)) => {
                        debug!(missed, "SSE reader fell behind; asking it to catch up");
                        yield Ok(json_frame(sse::CATCH_UP, &sse::CatchUp { last_seq: sent }));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = heartbeats.tick() => yield Ok(heartbeat()),
                _ = shutdown.changed() => return,
            }
        }
    };
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering proxies (nginx) to pass events through as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(EventStream(response))
}

fn json_frame(name: &str, data: &impl serde::Serialize) -> Bytes {
    frame(name, None, &serde_json::to_string(data).unwrap_or_default())
}
