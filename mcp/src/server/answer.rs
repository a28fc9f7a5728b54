//! How tools answer: a short summary for people plus structured JSON, or an `isError`
//! result whose message says what to do. Bodies in lists are cut to keep answers small.

use std::borrow::Cow;

use nexysync_domain::ids::{AgentName, EventId, Seq};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::{ClientError, Incoming, Message, RejectedMessage};

/// Longest body, in characters, shown in list answers (`check`, `thread`, `wait`).
pub(crate) const BODY_PREVIEW_CHARS: usize = 4000;

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
    pub body: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// The whole body's length in characters, when `body` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<EventId>,
    pub sent_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
}

impl<'a> MessageView<'a> {
    /// The whole message.
    pub fn full(message: &'a Message) -> Self {
        Self::with_body(message, Cow::Borrowed(&message.body), None)
    }

    /// The message with its body cut to `max_chars` characters.
    pub fn preview(message: &'a Message, max_chars: usize) -> Self {
        match message.body.char_indices().nth(max_chars) {
            Some((cut, _)) => Self::with_body(
                message,
                Cow::Borrowed(&message.body[..cut]),
                Some(message.body.chars().count()),
            ),
            None => Self::full(message),
        }
    }

    fn with_body(message: &'a Message, body: Cow<'a, str>, body_len: Option<usize>) -> Self {
        MessageView {
            id: message.id,
            seq: message.seq,
            from: &message.from,
            to: message.to.as_ref(),
            broadcast: message.to.is_none(),
            topic: message.topic.as_deref(),
            body,
            body_truncated: body_len.is_some(),
            body_len,
            reply_to: message.reply_to,
            sent_at: &message.sent_at,
            ttl_s: message.ttl_s,
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

/// Messages and rejections of a list, bodies cut to [`BODY_PREVIEW_CHARS`], or shorter
/// when the list is long (an even share of [`LIST_BODY_BUDGET_CHARS`]).
pub(crate) fn list_views(items: &[Incoming]) -> (Vec<MessageView<'_>>, Vec<RejectedView>) {
    let count = items.len().max(1);
    let preview =
        (LIST_BODY_BUDGET_CHARS / count).clamp(MIN_BODY_PREVIEW_CHARS, BODY_PREVIEW_CHARS);
    let mut messages = Vec::new();
    let mut rejected = Vec::new();
    for item in items {
        match item {
            Incoming::Message(message) => messages.push(MessageView::preview(message, preview)),
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
        summary.push_str("; long bodies are cut (read the message by id for all of it)");
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
        let (messages, rejections) = list_views(&items);
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
        let (messages, _) = list_views(&items);
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
    fn errors_become_is_error_results_with_code_and_message() {
        let result = into_result(Err(ToolError::new("unknown_agent", "no agent named `zed`")));
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["error"]["code"], "unknown_agent");
        let text = &result.content[0].as_text().unwrap().text;
        assert!(text.contains("no agent named `zed`"));
    }
}
