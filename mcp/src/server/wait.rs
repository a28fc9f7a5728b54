//! `ns_message wait`: block until an event of the asked kinds arrives on the live stream
//! (messages by default; code references, KV changes), verified and opened like
//! everything else, or until the timeout. Each kind has its own delivery cursor, saved
//! beside the key file: a wait for refs leaves messages for the next message wait.

use std::time::Duration;

use serde_json::{json, Value};

use super::answer::{
    cut_field, drop_fields, list_views, Answer, ListForm, RejectedView, ToolError,
    BRIEF_PREVIEW_CHARS,
};
use super::message_tool::{clamp_limit, list_json, MessageParams};
use super::ref_tool::ref_row;
use super::session::Session;
use crate::client::{Arrival, Incoming, KvChange, StreamKind};

const DEFAULT_WAIT_S: u32 = 30;
const MAX_WAIT_S: u32 = 300;

pub(crate) async fn run(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let kinds = parse_kinds(params.kinds.as_deref())?;
    let timeout_s = params.timeout_s.unwrap_or(DEFAULT_WAIT_S).min(MAX_WAIT_S);
    let limit = clamp_limit(params.limit)?;
    let form = ListForm::from_flag(params.full);
    let arrivals = session
        .stream
        .next_of(
            &kinds,
            Duration::from_secs(u64::from(timeout_s)),
            limit as usize,
        )
        .await?;
    session.save_cursor();
    let count = arrivals.items.len();
    let timed_out = count == 0;
    if timed_out {
        stream_heard_throughout(session)?;
    }

    let mut incoming = Vec::new();
    let mut refs = Vec::new();
    let mut kv = Vec::new();
    let mut files = Vec::new();
    let mut updates = Vec::new();
    let mut other_rejected = Vec::new();
    // Messages that expired while they waited were passed over by the stream.
    for item in arrivals.items {
        match item {
            Arrival::Message(m) => incoming.push(Incoming::Message(m)),
            Arrival::Rejected(StreamKind::Message, r) => incoming.push(Incoming::Rejected(r)),
            Arrival::Ref(shared) => refs.push(ref_row(&shared, form, count)),
            Arrival::Kv(change) => kv.push(kv_row(&change, form, count)),
            Arrival::File(file) => {
                let mut row = json!(file);
                cut_field(&mut row, "name", BRIEF_PREVIEW_CHARS);
                files.push(row);
            }
            Arrival::Update(update) => updates.push(json!(update)),
            Arrival::Rejected(kind, r) => {
                let mut row = json!(RejectedView::from(&r));
                row["kind"] = json!(kind);
                other_rejected.push(row);
            }
        }
    }
    let (messages, rejected) = list_views(&incoming, form);
    let message_cursor = arrivals.cursors.get(StreamKind::Message);
    let summary = summary(
        &kinds,
        timeout_s,
        [
            (messages.len(), "message", "messages"),
            (refs.len(), "code reference", "code references"),
            (kv.len(), "kv change", "kv changes"),
            (files.len(), "file", "files"),
            (updates.len(), "message update", "message updates"),
            (
                rejected.len() + other_rejected.len(),
                "event failed verification (not shown)",
                "events failed verification (not shown)",
            ),
        ],
        message_cursor,
        arrivals.has_more,
    );
    let cut = messages.iter().any(|m| m.body_truncated)
        || refs.iter().any(|r| r.get("snippet_cut").is_some())
        || kv.iter().any(|c| c.get("value_cut").is_some());
    let summary = if cut {
        format!("{summary}; long texts are cut (`full: true` shows more; ns_message `read`, ns_ref `get`, ns_kv `get` show all)")
    } else {
        summary
    };
    let mut rejected = json!(rejected);
    if let Some(all) = rejected.as_array_mut() {
        all.extend(other_rejected);
    }
    let mut data = list_json(
        messages,
        Vec::new(),
        message_cursor,
        arrivals.has_more,
        form,
    );
    if rejected.as_array().is_some_and(|r| !r.is_empty()) {
        data["rejected"] = rejected;
    }
    if kinds.contains(&StreamKind::Ref) {
        data["refs"] = json!(refs);
    }
    if kinds.contains(&StreamKind::Kv) {
        data["kv"] = json!(kv);
    }
    if kinds.contains(&StreamKind::File) {
        data["files"] = json!(files);
    }
    if kinds.contains(&StreamKind::Update) {
        data["updates"] = json!(updates);
    }
    if !kinds.contains(&StreamKind::Message) {
        // Nothing of the inbox was looked at: no messages list to mislead.
        drop_fields(&mut data, &["messages"]);
    }
    data["kinds"] = json!(kinds);
    data["cursors"] = json!(arrivals.cursors);
    data["timed_out"] = json!(timed_out);
    Ok(Answer::new(summary, data))
}

/// A wait that heard nothing is only an answer when the stream was there to hear: when it
/// is down with an error (token revoked, server unreachable), saying `timed_out` would
/// tell an agent that nobody wrote.
fn stream_heard_throughout(session: &Session) -> Result<(), ToolError> {
    let status = session.stream.status();
    match status.last_error {
        // Connected but not yet live (replaying after a reconnect) still hears everything.
        Some(error) if !status.connected => Err(ToolError::new(
            "stream_unavailable",
            format!(
                "the live stream from the server is down, so this wait could not hear \
                 anything: {error}. It reconnects in the background and loses nothing; \
                 `check` reads the inbox over HTTP meanwhile"
            ),
        )),
        _ => Ok(()),
    }
}

/// The kinds a wait ends on: `["message"]` unless the caller names others.
fn parse_kinds(kinds: Option<&[String]>) -> Result<Vec<StreamKind>, ToolError> {
    let known = || {
        StreamKind::ALL
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(names) = kinds else {
        return Ok(vec![StreamKind::Message]);
    };
    let mut parsed = Vec::new();
    for name in names {
        let kind = StreamKind::parse(name.trim()).ok_or_else(|| {
            ToolError::invalid(format!(
                "unknown kind `{name}` in `kinds`; the kinds you can wait for are {}",
                known()
            ))
        })?;
        if !parsed.contains(&kind) {
            parsed.push(kind);
        }
    }
    if parsed.is_empty() {
        return Err(ToolError::invalid(format!(
            "`kinds` must name at least one of {} (or be left out: messages)",
            known()
        )));
    }
    Ok(parsed)
}

/// A KV change as a list row: its value cut, the whole length shown.
fn kv_row(change: &KvChange, form: ListForm, count: usize) -> Value {
    let mut row = json!(change);
    if form == ListForm::Brief {
        drop_fields(&mut row, &["at"]);
        if change.key.is_some() {
            drop_fields(&mut row, &["key_ix"]);
        }
    }
    match cut_field(&mut row, "value", form.preview_chars(count)) {
        Some(whole) => json!({ "change": row, "value_cut": true, "value_chars": whole }),
        None => json!({ "change": row }),
    }
}

fn summary(
    kinds: &[StreamKind],
    timeout_s: u32,
    counts: [(usize, &str, &str); 6],
    message_cursor: nexysync_domain::ids::Seq,
    has_more: bool,
) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {many}"),
        })
        .collect();
    if parts.is_empty() {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return format!(
            "no {} within {timeout_s} s (timed_out), next_since={message_cursor}",
            names.join(" or ")
        );
    }
    format!(
        "{}, next_since={message_cursor}{}",
        parts.join(", "),
        if has_more {
            " (more waiting: wait or check again)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_default_to_messages_and_unknown_ones_are_named_in_the_error() {
        assert_eq!(parse_kinds(None).unwrap(), [StreamKind::Message]);
        let asked = ["ref".to_owned(), "kv".to_owned(), "ref".to_owned()];
        assert_eq!(
            parse_kinds(Some(&asked)).unwrap(),
            [StreamKind::Ref, StreamKind::Kv]
        );
        let error = parse_kinds(Some(&["mail".to_owned()])).unwrap_err();
        assert_eq!(error.code, "invalid_params");
        assert!(error.message.contains("unknown kind `mail`"), "{error:?}");
        assert!(
            error
                .message
                .contains("`message`, `ref`, `kv`, `file`, `update`"),
            "{error:?}"
        );
        assert!(parse_kinds(Some(&[])).is_err());
    }
}
