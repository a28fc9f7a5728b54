//! `GET /v1/stream`: server-sent events for one agent.
//!
//! A connection with a cursor (`Last-Event-ID` or `?since_seq=`) first gets everything it
//! missed from the read models, then the hub's live events, with no gap and no duplicate
//! (see `hub` for the ordering contract). Then `ready`, then live events. A reader that
//! falls more than the buffer behind gets `catch_up` and the connection closes.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use nexysync_domain::ids::Seq;
use nexysync_domain::wire::sse;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::auth::AgentAuth;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Backlog rows read per query.
const BACKLOG_PAGE: u32 = 500;

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    since_seq: Option<Seq>,
}

pub async fn subscribe(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
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
    let mut shutdown = state.hub.shutdown_signal();
    let heartbeat = state.heartbeat;
    let agent = me.agent;

    let events = async_stream::stream! {
        let mut sent = position;
        if let Some(after) = cursor {
            // Everything in (after, position] comes from the read models, once they
            // have applied it.
            if let Err(e) = state.wait_for_projection(Some(position)).await {
                warn!(error = %e, "backlog may be incomplete: read models lagging");
            }
            let mut from = after;
            loop {
                match state.reads.inbox_between(agent, from, position, BACKLOG_PAGE).await {
                    Ok(rows) => {
                        let full = rows.len() == BACKLOG_PAGE as usize;
                        for row in rows {
                            from = row.seq;
                            let data = format!(r#"{{"seq":{},"event":{}}}"#, row.seq.0, row.envelope);
                            yield Ok(Event::default().event(sse::NEW_MESSAGE).id(row.seq.0.to_string()).data(data));
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
        yield Ok(json_event(sse::READY, &sse::Ready { seq: sent }));
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if event.seq > sent => {
                        sent = event.seq;
                        if event.is_for(agent) {
                            yield Ok(Event::default()
                                .event(sse::NEW_MESSAGE)
                                .id(event.seq.0.to_string())
                                .data(event.data.as_ref()));
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        debug!(missed, "SSE reader fell behind; asking it to catch up");
                        yield Ok(json_event(sse::CATCH_UP, &sse::CatchUp { last_seq: sent }));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}
