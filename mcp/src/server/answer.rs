//! How tools answer: a short summary for people plus structured JSON, or an `isError`
//! result whose message says what to do. Long texts in lists (bodies, snippets, values)
//! are cut to keep answers small, their whole length shown: every list answer has a brief
//! form (the default) and a full one ([`ListForm`]), both within one budget.

use std::borrow::Cow;

use nexysync_domain::ids::{AgentName, EventId, Seq};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::{ClientError, Incoming, Message, MessageReaction, RejectedMessage};

/// Longest body, in characters, shown in a `full` list answer (`check`, `thread`, `wait`).
pub(crate) const BODY_PREVIEW_CHARS: usize = 4000;
/// Longest text (body, snippet, value, note) shown in a brief list answer.
pub(crate) const BRIEF_PREVIEW_CHARS: usize = 200;

/// What to tell the user when no key file is in use.
pub(crate) const PROVISIONING_ADVICE: &str =
    "To get a key: run `nexysync agent add PROJECT AGENT --dir .` in the project \
     directory and restart this MCP server, or call ns_auth with action `login` and `path` \
     set to an existing key file (such as `.nexysync/key`).";

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub summary: String,
    pub data: Value,
}

impl Answer {
    pub fn new(summary: impl Into<String>, data: impl Serialize) -> Answer {
        Answer {
            summary: summary.into(),
            data: serde_json::to_value(data)
                .unwrap_or_else(|e| json!({ "unserialisable": e.to_string() })),
        }
    }
}

/// A failed tool call, shown to the model as an `isError` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ToolError {
        ToolError {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ToolError {
        ToolError::new("invalid_params", message)
    }

    pub fn not_authenticated(problem: &str) -> ToolError {
        ToolError::new(
            "not_authenticated",
            format!("{problem}. {PROVISIONING_ADVICE}"),
        )
    }
}

impl From<ClientError> for ToolError {
    fn from(error: ClientError) -> ToolError {
        let code = match &error {
            ClientError::InvalidServerUrl { .. } => "invalid_server_url",
            ClientError::Unreachable { .. } => "server_unreachable",
            ClientError::Api(api) if api.code == "unauthorized" => {
                return ToolError::new(
                    "unauthorized",
                    format!(
                        "the server rejected this agent's token ({}). The key file may be stale \
                         (agent removed, or the server's data reset). {PROVISIONING_ADVICE}",
                        api.message
                    ),
                )
            }
            ClientError::Api(api) => return ToolError::new(api.code.clone(), api.message.clone()),
            ClientError::BadResponse { .. } => "bad_response",
            ClientError::UnknownAgent { .. } => "unknown_agent",
            ClientError::Rejected(_) => "verification_failed",
            ClientError::ContentTooLarge { .. } => "content_too_large",
            ClientError::InvalidTtl { .. } => "invalid_ttl",
            ClientError::TtlAboveProjectMaximum { .. } => "ttl_above_maximum",
            ClientError::InvalidEmoji { .. } => "invalid_emoji",
            ClientError::InvalidLineRange { .. } => "invalid_line_range",
            ClientError::IdentityMismatch { .. } => "identity_mismatch",
            ClientError::NotRegistered { .. } => "not_registered",
            ClientError::File { .. } => "file_error",
            ClientError::FileCorrupt(_) => "file_corrupt",
            ClientError::FileTooLarge { .. } => "file_too_large",
        };
        ToolError::new(code, error.to_string())
    }
}

/// The one place answers become MCP results. The text block carries the summary and the
/// JSON, because many MCP clients show the model only `content`, not `structuredContent`.
pub(crate) fn into_result(outcome: Result<Answer, ToolError>) -> CallToolResult {
    match outcome {
        Ok(answer) => {
            let mut result = CallToolResult::structured(answer.data);
            let json = result
                .structured_content
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
            result.content = vec![ContentBlock::text(format!("{}\n{json}", answer.summary))];
            result
        }
        Err(error) => {
            let mut result = CallToolResult::structured_error(json!({
                "error": { "code": error.code, "message": error.message }
            }));
            result.content = vec![ContentBlock::text(format!(
                "{} ({})",
                error.message, error.code
            ))];
            result
        }
    }
}

/// A message as tools show it.
#[derive(Debug, Serialize)]
pub(crate) struct MessageView<'a> {
    pub id: EventId,
    pub seq: Seq,
    pub from: &'a AgentName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a AgentName>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    /// The whole topic's length in characters, when a list cut `topic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_len: Option<usize>,
    /// Absent on a deleted message.
    #[serde(skip_serializing_if = "is_empty")]
    pub body: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// The whole body's length in characters, when `body` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<EventId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub reactions: &'a [MessageReaction],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_by_me: bool,
    /// Deleted by its sender: no body, no topic, still a node of its thread.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[allow(clippy::ptr_arg)] // serde's `skip_serializing_if` hands over `&Cow`.
fn is_empty(body: &Cow<'_, str>) -> bool {
    body.is_empty()
}

impl<'a> MessageView<'a> {
    /// The whole message.
    pub fn full(message: &'a Message) -> Self {
        Self::with_body(message, Cow::Borrowed(&message.body), None)
    }

    /// The message with its body cut to `max_chars` characters, and its topic to
    /// [`BRIEF_PREVIEW_CHARS`] (a label; only the sealed content as a whole is bounded).
    pub fn preview(message: &'a Message, max_chars: usize) -> Self {
        let (body, body_len) = cut(&message.body, max_chars);
        let mut view = Self::with_body(message, Cow::Borrowed(body), body_len);
        if let Some(topic) = view.topic {
            let (shown, whole) = cut(topic, BRIEF_PREVIEW_CHARS);
            view.topic = Some(shown);
            view.topic_len = whole;
        }
        view
    }

    /// The row of a brief list: the body cut short, and no timestamps.
    pub fn brief(message: &'a Message) -> Self {
        let mut view = Self::preview(message, BRIEF_PREVIEW_CHARS);
        view.sent_at = None;
        view.ttl_s = None;
        view
    }

    fn with_body(message: &'a Message, body: Cow<'a, str>, body_len: Option<usize>) -> Self {
        MessageView {
            id: message.id,
            seq: message.seq,
            from: &message.from,
            to: message.to.as_ref(),
            broadcast: message.to.is_none(),
            topic: message.topic.as_deref(),
            topic_len: None,
            body,
            body_truncated: body_len.is_some(),
            body_len,
            reply_to: message.reply_to,
            sent_at: Some(&message.sent_at),
            ttl_s: message.ttl_s,
            reactions: &message.reactions,
            pinned: message.pinned,
            read_by_me: message.read_by_me,
            deleted: message.deleted,
        }
    }
}

/// A message that failed verification, as tools show it: which one and why, no content.
#[derive(Debug, Serialize)]
pub(crate) struct RejectedView {
    pub id: EventId,
    pub seq: Seq,
    pub error: String,
}

impl From<&RejectedMessage> for RejectedView {
    fn from(rejected: &RejectedMessage) -> Self {
        RejectedView {
            id: rejected.id,
            seq: rejected.seq,
            error: format!("failed verification: {}", rejected.reason),
        }
    }
}

/// Characters of body a whole list answer may carry: long lists get shorter previews, so
/// one call never floods a model's context (`read` gives any whole body).
pub(crate) const LIST_BODY_BUDGET_CHARS: usize = 32_000;
/// The shortest preview a list cuts a body to, however long the list.
pub(crate) const MIN_BODY_PREVIEW_CHARS: usize = 280;

/// How much of each item a list answer shows: `brief` (the default) cuts long texts to
/// [`BRIEF_PREVIEW_CHARS`] and leaves out secondary fields; `full` shows every field and
/// texts up to [`BODY_PREVIEW_CHARS`], or shorter when the list is long (an even share of
/// [`LIST_BODY_BUDGET_CHARS`]). Either way a cut text says its whole length, and the
/// tool's `read`/`get` gives it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListForm {
    Brief,
    Full,
}

impl ListForm {
    /// The form a tool's `full` parameter asks for.
    pub fn from_flag(full: Option<bool>) -> ListForm {
        if full == Some(true) {
            ListForm::Full
        } else {
            ListForm::Brief
        }
    }

    /// Characters of each long text shown in a list of `count` items.
    pub fn preview_chars(self, count: usize) -> usize {
        match self {
            ListForm::Brief => BRIEF_PREVIEW_CHARS,
            ListForm::Full => (LIST_BODY_BUDGET_CHARS / count.max(1))
                .clamp(MIN_BODY_PREVIEW_CHARS, BODY_PREVIEW_CHARS),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListForm::Brief => "brief",
            ListForm::Full => "full",
        }
    }
}

/// `text` cut to `max_chars` characters, with its whole length in characters when it was
/// cut.
pub(crate) fn cut(text: &str, max_chars: usize) -> (&str, Option<usize>) {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => (&text[..at], Some(text.chars().count())),
        None => (text, None),
    }
}

/// Cuts the string at `field` of `object` to `max_chars`; its whole length when it was cut.
pub(crate) fn cut_field(object: &mut Value, field: &str, max_chars: usize) -> Option<usize> {
    let text = object.get_mut(field)?;
    let (shown, whole) = cut(text.as_str()?, max_chars);
    let whole = whole?;
    *text = Value::String(shown.to_owned());
    Some(whole)
}

/// Leaves out `fields` of a JSON object (the secondary fields of a brief row).
pub(crate) fn drop_fields(object: &mut Value, fields: &[&str]) {
    if let Some(map) = object.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
}

/// Messages and rejections of a list in `form`.
pub(crate) fn list_views(
    items: &[Incoming],
    form: ListForm,
) -> (Vec<MessageView<'_>>, Vec<RejectedView>) {
    let preview = form.preview_chars(items.len());
    let mut messages = Vec::new();
    let mut rejected = Vec::new();
    for item in items {
        match item {
            Incoming::Message(message) => messages.push(match form {
                ListForm::Brief => MessageView::brief(message),
                ListForm::Full => MessageView::preview(message, preview),
            }),
            Incoming::Rejected(r) => rejected.push(RejectedView::from(r)),
        }
    }
    (messages, rejected)
}

/// "3 messages", "1 message", "no messages", plus rejections and truncation hints.
pub(crate) fn count_summary(
    messages: &[MessageView<'_>],
    rejected: &[RejectedView],
    none: &str,
) -> String {
    let mut summary = match messages.len() {
        0 => none.to_owned(),
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    };
    if !rejected.is_empty() {
        summary.push_str(&format!(
            "; {} failed verification and {} not shown",
            rejected.len(),
            if rejected.len() == 1 { "is" } else { "are" }
        ));
    }
    if messages.iter().any(|m| m.body_truncated) {
        summary.push_str(
            "; long bodies are cut (`full: true` shows more, `read` by id shows all of it)",
        );
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message {
            id: EventId::generate(),
            seq: Seq(7),
            from: AgentName::parse("alice").unwrap(),
            to: None,
            topic: None,
            body: body.to_owned(),
            reply_to: None,
            sent_at: "2025-01-01T00:00:00.000Z".into(),
            ttl_s: None,
            reactions: Vec::new(),
            pinned: false,
            read_by_me: false,
            deleted: false,
        }
    }

    #[test]
    fn a_long_body_is_cut_in_lists_and_says_so() {
        let long = "é".repeat(BODY_PREVIEW_CHARS + 10);
        let m = message(&long);
        let view = serde_json::to_value(MessageView::preview(&m, BODY_PREVIEW_CHARS)).unwrap();
        assert_eq!(view["body_truncated"], true);
        assert_eq!(view["body_len"], BODY_PREVIEW_CHARS + 10);
        assert_eq!(
            view["body"].as_str().unwrap().chars().count(),
            BODY_PREVIEW_CHARS
        );
        let full = serde_json::to_value(MessageView::full(&m)).unwrap();
        assert_eq!(full["body"].as_str().unwrap(), long);
        assert!(full.get("body_truncated").is_none());
    }

    #[test]
    fn a_long_topic_is_cut_in_lists_whatever_the_form_and_shown_whole_by_read() {
        let mut m = message("hi");
        m.topic = Some("t".repeat(10_000));
        for view in [
            MessageView::brief(&m),
            MessageView::preview(&m, BODY_PREVIEW_CHARS),
        ] {
            let view = serde_json::to_value(view).unwrap();
            assert_eq!(view["topic"].as_str().unwrap().len(), BRIEF_PREVIEW_CHARS);
            assert_eq!(view["topic_len"], 10_000);
        }
        m.topic = Some("design".into());
        let view = serde_json::to_value(MessageView::brief(&m)).unwrap();
        assert_eq!(view["topic"], "design");
        assert!(view.get("topic_len").is_none());
        m.topic = Some("t".repeat(10_000));
        let full = serde_json::to_value(MessageView::full(&m)).unwrap();
        assert_eq!(full["topic"].as_str().unwrap().len(), 10_000);
    }

    #[test]
    fn a_short_body_is_shown_whole_and_a_broadcast_says_so() {
        let m = message("hello");
        let view = serde_json::to_value(MessageView::preview(&m, BODY_PREVIEW_CHARS)).unwrap();
        assert_eq!(view["body"], "hello");
        assert!(view.get("body_truncated").is_none());
        assert!(view.get("body_len").is_none());
        assert_eq!(view["broadcast"], true);
        assert!(view.get("to").is_none());
    }

    #[test]
    fn a_message_that_failed_verification_is_listed_without_its_content() {
        use crate::client::VerifyError;
        let genuine = message("the plaintext");
        let rejected = RejectedMessage {
            id: EventId::generate(),
            seq: Seq(8),
            reason: VerifyError::BadSignature(AgentName::parse("alice").unwrap()),
        };
        let items = [
            Incoming::Message(genuine),
            Incoming::Rejected(rejected.clone()),
        ];
        let (messages, rejections) = list_views(&items, ListForm::Brief);
        assert_eq!(messages.len(), 1);
        let shown = serde_json::to_value(&rejections).unwrap();
        assert_eq!(shown[0]["id"], json!(rejected.id));
        assert!(shown[0]["error"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"));
        assert!(shown[0].get("body").is_none());
        let summary = count_summary(&messages, &rejections, "none");
        assert!(summary.contains("1 failed verification"), "{summary}");

        let error = ToolError::from(ClientError::Rejected(rejected));
        assert_eq!(error.code, "verification_failed");
    }

    #[test]
    fn a_long_list_shares_a_bounded_budget_of_body_characters() {
        let items: Vec<Incoming> = (0..100)
            .map(|_| Incoming::Message(message(&"y".repeat(BODY_PREVIEW_CHARS))))
            .collect();
        let (messages, _) = list_views(&items, ListForm::Full);
        let shown = serde_json::to_value(&messages).unwrap();
        let total: usize = shown
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().chars().count())
            .sum();
        assert!(
            total <= LIST_BODY_BUDGET_CHARS + 100,
            "{total} characters of body"
        );
        assert_eq!(shown[0]["body_truncated"], true);
        assert_eq!(shown[0]["body_len"], BODY_PREVIEW_CHARS);
    }

    #[test]
    fn a_brief_list_cuts_bodies_shorter_than_a_full_one_and_both_show_the_length() {
        let long = "z".repeat(BODY_PREVIEW_CHARS * 2);
        let items = [Incoming::Message(message(&long))];
        for (form, shown_chars) in [
            (ListForm::Brief, BRIEF_PREVIEW_CHARS),
            (ListForm::Full, BODY_PREVIEW_CHARS),
        ] {
            let (messages, _) = list_views(&items, form);
            let row = serde_json::to_value(&messages[0]).unwrap();
            assert_eq!(row["body"].as_str().unwrap().len(), shown_chars, "{form:?}");
            assert_eq!(row["body_len"], long.len());
            assert_eq!(row["body_truncated"], true);
            assert_eq!(row.get("sent_at").is_some(), form == ListForm::Full);
        }
    }

    #[test]
    fn a_cut_field_says_its_whole_length_and_a_short_one_is_left_alone() {
        let mut row = json!({ "snippet": "abcdef", "note": "ok" });
        assert_eq!(cut_field(&mut row, "snippet", 3), Some(6));
        assert_eq!(row["snippet"], "abc");
        assert_eq!(cut_field(&mut row, "note", 3), None);
        assert_eq!(cut_field(&mut row, "missing", 3), None);
        drop_fields(&mut row, &["note"]);
        assert_eq!(row, json!({ "snippet": "abc" }));
    }

    #[test]
    fn errors_become_is_error_results_with_code_and_message() {
        let result = into_result(Err(ToolError::new("unknown_agent", "no agent named `zed`")));
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["error"]["code"], "unknown_agent");
        let text = &result.content[0].as_text().unwrap().text;
        assert!(text.contains("no agent named `zed`"));
    }
}
