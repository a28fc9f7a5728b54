//! `ns_message`: send, broadcast, check the inbox, read one message, read a thread, wait
//! for the next message (or ref, or KV change: see `wait`); react, ack, pin, unpin and
//! delete a message.

use nexysync_domain::ids::{AgentName, EventId, Seq};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::answer::{count_summary, list_views, Answer, ListForm, MessageView, ToolError};
use super::session::Session;
use super::NexySyncMcp;
use crate::client::{NewMessage, Toggled};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// Parameters of `ns_message`. Which fields apply depends on `action`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MessageParams {
    /// `send`: a direct message to one agent (needs `to`, `body`). `broadcast`: a message to
    /// every agent of the project (needs `body`). `check`: read the inbox after a cursor.
    /// `read`: one whole message (needs `id`). `thread`: the whole conversation a message
    /// belongs to (needs `id`). `wait`: block until a new event of `kinds` arrives or
    /// `timeout_s` passes. `react`: add an emoji reaction (needs `id`, `emoji`); reacting
    /// again with the same emoji takes it back. `ack`: mark a message read (needs `id`).
    /// `pin` / `unpin`: pin a message for everyone who may read it, or unpin it (needs
    /// `id`). `delete`: delete a message you sent (needs `id`); its content is erased, the
    /// thread keeps a "deleted" node.
    pub action: MessageAction,
    /// send: the recipient agent's name (e.g. `bob`).
    #[serde(default)]
    pub to: Option<String>,
    /// send, broadcast: the message text (up to 64 KiB). Encrypted before it leaves.
    #[serde(default)]
    pub body: Option<String>,
    /// send, broadcast: an optional short topic label (encrypted too).
    #[serde(default)]
    pub topic: Option<String>,
    /// send, broadcast: the id of the message this one answers, to keep a thread together.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// send, broadcast: seconds the message is kept (default: the project's retention).
    #[serde(default)]
    pub ttl_s: Option<u32>,
    /// check: return messages after this sequence number (the `next_since` of a previous
    /// answer). Default: where the last check or wait stopped (remembered across restarts).
    /// thread: return the thread's messages after this sequence number (default 0).
    #[serde(default)]
    pub since: Option<u64>,
    /// check, thread, wait: most items to return (default 20, max 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// check, thread, wait: `true` for every field and longer bodies; default brief (short
    /// bodies, no timestamps). Long bodies are cut either way, their length shown; `read`
    /// shows all of one.
    #[serde(default)]
    pub full: Option<bool>,
    /// read, thread, react, ack, pin, unpin, delete: a message id, as returned by send,
    /// check or wait.
    #[serde(default)]
    pub id: Option<String>,
    /// react: one emoji (or a short label without spaces, up to 64 bytes), e.g. `👍`.
    /// Encrypted before it leaves.
    #[serde(default)]
    pub emoji: Option<String>,
    /// check: only messages you have not marked read with `ack`, from the start of your
    /// inbox unless `since` is given; does not move the check cursor.
    #[serde(default)]
    pub unread_only: Option<bool>,
    /// wait: seconds to wait (default 30, max 300).
    #[serde(default)]
    pub timeout_s: Option<u32>,
    /// wait: the kinds of event that end the wait: `message` (direct messages and others'
    /// broadcasts), `ref` (code references shared with you or everyone), `kv` (another
    /// agent set or deleted a shared key), `file` (a file shared with you or everyone), `update`
    /// (another agent reacted to, read, pinned, unpinned or deleted a message you may read).
    /// Default `["message"]`.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum MessageAction {
    Send,
    Broadcast,
    Check,
    Read,
    Thread,
    Wait,
    React,
    Ack,
    Pin,
    Unpin,
    Delete,
}

pub(crate) async fn run(server: &NexySyncMcp, params: MessageParams) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    match params.action {
        MessageAction::Send => send(&session, params, false).await,
        MessageAction::Broadcast => send(&session, params, true).await,
        MessageAction::Check => check(&session, params).await,
        MessageAction::Read => read(&session, params).await,
        MessageAction::Thread => thread(&session, params).await,
        MessageAction::Wait => super::wait::run(&session, params).await,
        MessageAction::React => react(&session, params).await,
        MessageAction::Ack | MessageAction::Pin | MessageAction::Unpin | MessageAction::Delete => {
            update(&session, params).await
        }
    }
}

async fn react(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let id = required_id(params.id.as_deref())?;
    let emoji = params.emoji.ok_or_else(|| {
        ToolError::invalid("`emoji` is required for `react`: one emoji such as 👍")
    })?;
    let emoji = crate::client::valid_emoji(&emoji)?.to_owned();
    let (toggled, appended) = session.client.react(id, &emoji).await?;
    let what = match toggled {
        Toggled::Added => format!("reacted {emoji} to {id}"),
        Toggled::Removed => format!("took back your {emoji} reaction from {id}"),
    };
    Ok(Answer::new(
        format!("{what} (seq {})", appended.seq),
        json!({
            "id": id,
            "emoji": emoji,
            "reaction": toggled,
            "seq": appended.seq,
            "duplicate": appended.duplicate,
        }),
    ))
}

/// ack, pin, unpin, delete: one signed event naming the message.
async fn update(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let id = required_id(params.id.as_deref())?;
    let client = &session.client;
    let (appended, done) = match params.action {
        MessageAction::Ack => (client.ack(id).await?, "marked read"),
        MessageAction::Pin => (client.pin(id).await?, "pinned"),
        MessageAction::Unpin => (client.unpin(id).await?, "unpinned"),
        _ => (client.delete_message(id).await?, "deleted"),
    };
    Ok(Answer::new(
        format!("{done} {id} (seq {})", appended.seq),
        json!({
            "id": id,
            "done": done,
            "seq": appended.seq,
            "duplicate": appended.duplicate,
        }),
    ))
}

async fn send(
    session: &Session,
    params: MessageParams,
    broadcast: bool,
) -> Result<Answer, ToolError> {
    let body = params
        .body
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ToolError::invalid("`body` is required: the message text to send"))?;
    let to = match (broadcast, params.to) {
        (true, Some(to)) => {
            return Err(ToolError::invalid(format!(
                "a broadcast goes to every agent; drop `to` ({to}) or use action `send`"
            )))
        }
        (true, None) => None,
        (false, None) => {
            return Err(ToolError::invalid(
                "`to` is required for `send`: the recipient agent's name (use `broadcast` to reach everyone)",
            ))
        }
        (false, Some(to)) => Some(
            AgentName::parse(to.trim()).map_err(|e| ToolError::invalid(format!("`to`: {e}")))?,
        ),
    };
    let mut message = NewMessage::broadcast(body);
    message.to = to.clone();
    message.topic = params.topic.filter(|t| !t.is_empty());
    message.reply_to = params
        .reply_to
        .as_deref()
        .map(|id| parse_id("reply_to", id))
        .transpose()?;
    message.ttl_s = params.ttl_s;
    let appended = session.client.send(message).await?;
    let recipient = to
        .as_ref()
        .map_or("everyone".to_owned(), AgentName::to_string);
    Ok(Answer::new(
        format!(
            "sent {} to {recipient} (seq {}){}",
            appended.id,
            appended.seq,
            if appended.duplicate {
                ", already delivered before"
            } else {
                ""
            }
        ),
        json!({
            "id": appended.id,
            "seq": appended.seq,
            "to": to,
            "broadcast": broadcast,
            "duplicate": appended.duplicate,
        }),
    ))
}

async fn check(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let unread_only = params.unread_only.unwrap_or(false);
    let since = match (params.since, unread_only) {
        (Some(since), _) => Seq(since),
        // Unread messages may be older than the cursor: look from the start.
        (None, true) => Seq(0),
        (None, false) => session.stream.cursor(),
    };
    let limit = clamp_limit(params.limit)?;
    let form = ListForm::from_flag(params.full);
    let page = session
        .client
        .inbox_filtered(since, limit, unread_only)
        .await?;
    if !unread_only {
        session.stream.mark_delivered(page.next_since);
        session.save_cursor();
    }
    let (messages, rejected) = list_views(&page.items, form);
    let none = if unread_only {
        "no unread messages"
    } else {
        "no new messages"
    };
    let mut summary = count_summary(&messages, &rejected, none);
    summary.push_str(&format!(", next_since={}", page.next_since));
    if page.has_more {
        summary.push_str(" (more waiting: check again)");
    }
    Ok(Answer::new(
        summary,
        list_json(messages, rejected, page.next_since, page.has_more, form),
    ))
}

async fn read(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let id = required_id(params.id.as_deref())?;
    let message = session.client.message(id).await?;
    let summary = if message.deleted {
        format!(
            "message {} from {} (seq {}) was deleted by its sender",
            message.id, message.from, message.seq
        )
    } else {
        format!(
            "message {} from {} (seq {}), {} characters{}",
            message.id,
            message.from,
            message.seq,
            message.body.chars().count(),
            match message.reactions.len() {
                0 => String::new(),
                n => format!(", {n} reaction{}", if n == 1 { "" } else { "s" }),
            }
        )
    };
    Ok(Answer::new(summary, MessageView::full(&message)))
}

async fn thread(session: &Session, params: MessageParams) -> Result<Answer, ToolError> {
    let id = required_id(params.id.as_deref())?;
    let limit = clamp_limit(params.limit)? as usize;
    let since = Seq(params.since.unwrap_or(0));
    let form = ListForm::from_flag(params.full);
    // After `since`, one more than the page: whether more follow.
    let thread = session.client.thread(id, since, limit + 1).await?;
    let after = thread.items;
    let has_more = after.len() > limit || thread.has_more;
    let page = &after[..after.len().min(limit)];
    let next_since = page.last().map_or(since, |item| item.seq());
    let (messages, rejected) = list_views(page, form);
    let mut summary = format!(
        "thread {}: {}, next_since={next_since}",
        thread.root,
        count_summary(&messages, &rejected, "no messages you may read")
    );
    if has_more {
        summary.push_str(" (more: thread again with `since`)");
    }
    if !thread.expired.is_empty() {
        summary.push_str(&format!(
            "; {} expired message(s) shown as placeholders",
            thread.expired.len()
        ));
    }
    let mut data = list_json(messages, rejected, next_since, has_more, form);
    data["root"] = json!(thread.root);
    if !thread.expired.is_empty() {
        // Where each expired message was (retention erased its content).
        data["expired"] = json!(thread.expired);
    }
    Ok(Answer::new(summary, data))
}

/// A list answer's JSON: its messages, rejections, cursor and form.
pub(crate) fn list_json(
    messages: Vec<MessageView<'_>>,
    rejected: Vec<super::answer::RejectedView>,
    next_since: Seq,
    has_more: bool,
    form: ListForm,
) -> serde_json::Value {
    let mut data = json!({
        "messages": messages,
        "next_since": next_since,
        "has_more": has_more,
        "form": form.as_str(),
    });
    if !rejected.is_empty() {
        data["rejected"] = json!(rejected);
    }
    data
}

pub(crate) fn clamp_limit(limit: Option<u32>) -> Result<u32, ToolError> {
    match limit {
        Some(0) => Err(ToolError::invalid("`limit` must be at least 1")),
        Some(n) => Ok(n.min(MAX_LIMIT)),
        None => Ok(DEFAULT_LIMIT),
    }
}

fn required_id(id: Option<&str>) -> Result<EventId, ToolError> {
    let id = id.ok_or_else(|| {
        ToolError::invalid("`id` is required: a message id, as returned by send, check or wait")
    })?;
    parse_id("id", id)
}

fn parse_id(field: &str, id: &str) -> Result<EventId, ToolError> {
    EventId::parse(id.trim()).map_err(|e| {
        ToolError::invalid(format!(
            "`{field}` must be a message id as returned by send, check or wait: {e}"
        ))
    })
}
