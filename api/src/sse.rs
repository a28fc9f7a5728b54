//! Server-sent event frames, encoded once and shared: a broadcast to a thousand streams
//! writes the same bytes a thousand times instead of formatting them a thousand times.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nexysync_domain::ids::Seq;

/// An answer that is a stream of server-sent events (so the OpenAPI document can say so).
#[derive(Debug)]
pub struct EventStream(pub Response);

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        self.0
    }
}

/// `event: <name>\nid: <seq>\ndata: <data>\n\n`. `data` must be one line (JSON is).
pub fn frame(name: &str, id: Option<Seq>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + name.len() + 32);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.0.to_string());
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A stored event as a `new_message`-style frame: `data` is `{"seq":N,"event":<envelope>}`.
pub fn stored_event_frame(name: &str, seq: Seq, envelope_json: &str) -> Bytes {
    frame(
        name,
        Some(seq),
        &format!(r#"{{"seq":{},"event":{}}}"#, seq.0, envelope_json),
    )
}

/// A comment line that keeps proxies and clients from timing the stream out.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b": heartbeat\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_names_its_event_and_id() {
        let bytes = stored_event_frame("new_message", Seq(7), r#"{"v":1}"#);
        assert_eq!(
            &bytes[..],
            b"event: new_message\nid: 7\ndata: {\"seq\":7,\"event\":{\"v\":1}}\n\n"
        );
    }
}
