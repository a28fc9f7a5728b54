//! `ns_ref`: shared code references: share a snippet with its file context, list those
//! shared with you (or everyone, or by you), get one whole. Every textual field is
//! encrypted; every reference shown was verified (sender's signature, project, chain).

use nexysync_domain::event::MAX_REF_LINES;
use nexysync_domain::ids::{AgentName, EventId, Seq};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::answer::{cut_field, drop_fields, Answer, ListForm, ToolError, BRIEF_PREVIEW_CHARS};
use super::session::Session;
use super::NexySyncMcp;
use crate::client::{ClientError, NewRef, SharedRef};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// Parameters of `ns_ref`. Which fields apply depends on `action`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RefParams {
    /// `share`: send a code reference (needs `path`, `start_line`, `end_line`, `snippet`).
    /// `list`: references you may read, oldest first, a page at a time. `get`: one whole
    /// reference (needs `id`).
    pub action: RefAction,
    /// share: the file's path in the repository (e.g. `src/upload.rs`).
    #[serde(default)]
    pub path: Option<String>,
    /// share: the first line of the snippet, 1-based.
    #[serde(default)]
    pub start_line: Option<u32>,
    /// share: the last line of the snippet, inclusive (at most 10000 lines in all).
    #[serde(default)]
    pub end_line: Option<u32>,
    /// share: the code itself.
    #[serde(default)]
    pub snippet: Option<String>,
    /// share: the snippet's language (e.g. `rust`).
    #[serde(default)]
    pub language: Option<String>,
    /// share: the commit or branch the lines refer to.
    #[serde(default)]
    pub commit: Option<String>,
    /// share: why you are sharing it.
    #[serde(default)]
    pub note: Option<String>,
    /// share: the agent to share with; omit to share with every agent of the project.
    #[serde(default)]
    pub to: Option<String>,
    /// list: return references after this sequence number (the `next_since` of a
    /// previous answer); default 0, from the start.
    #[serde(default)]
    pub since: Option<u64>,
    /// list: most references to return (default 20, max 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// list: `true` for every field and longer snippets; default brief (path, lines,
    /// note and a short snippet; long ones are cut, their length shown; `get` shows all).
    #[serde(default)]
    pub full: Option<bool>,
    /// get: the reference's id (from `share` or `list`).
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum RefAction {
    Share,
    List,
    Get,
}

pub(crate) async fn run(server: &NexySyncMcp, params: RefParams) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    match params.action {
        RefAction::Share => share(&session, params).await,
        RefAction::List => list(&session, params).await,
        RefAction::Get => get(&session, params).await,
    }
}

fn required<T>(value: Option<T>, field: &str, example: &str) -> Result<T, ToolError> {
    value
        .ok_or_else(|| ToolError::invalid(format!("`{field}` is required for `share` ({example})")))
}

async fn share(session: &Session, params: RefParams) -> Result<Answer, ToolError> {
    let path = required(params.path, "path", "e.g. `src/upload.rs`")?;
    if path.trim().is_empty() {
        return Err(ToolError::invalid("`path` must not be empty"));
    }
    let start_line = required(params.start_line, "start_line", "the first line, from 1")?;
    let end_line = required(params.end_line, "end_line", "the last line, inclusive")?;
    let snippet = required(params.snippet, "snippet", "the lines' code")?;
    let to = params
        .to
        .filter(|to| !to.trim().is_empty())
        .map(|to| AgentName::parse(to.trim()).map_err(|e| ToolError::invalid(format!("`to`: {e}"))))
        .transpose()?;
    let appended = session
        .client
        .share_ref(NewRef {
            path: path.clone(),
            start_line,
            end_line,
            snippet,
            language: params.language,
            commit: params.commit,
            note: params.note,
            to: to.clone(),
        })
        .await
        .map_err(|e| match e {
            ClientError::InvalidLineRange { .. } => ToolError::new(
                "invalid_line_range",
                format!(
                    "{e}. Give start_line >= 1 and end_line >= start_line, at most {MAX_REF_LINES} lines apart."
                ),
            ),
            other => other.into(),
        })?;
    let who = to
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "everyone".into());
    Ok(Answer::new(
        format!(
            "shared {path}:{start_line}-{end_line} with {who} (id {})",
            appended.id
        ),
        json!({
            "id": appended.id,
            "seq": appended.seq,
            "to": to,
            "duplicate": appended.duplicate,
        }),
    ))
}

async fn list(session: &Session, params: RefParams) -> Result<Answer, ToolError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ToolError::invalid(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let since = Seq(params.since.unwrap_or(0));
    let form = ListForm::from_flag(params.full);
    let page = session.client.refs(since, limit).await?;
    let count = page.items.len();
    let mut refs = Vec::new();
    let mut rejected = Vec::new();
    for item in page.items {
        match item {
            Ok(shared) => refs.push(ref_row(&shared, form, count)),
            Err(r) => {
                rejected.push(json!({ "id": r.id, "seq": r.seq, "error": r.reason.to_string() }))
            }
        }
    }
    let mut summary = match refs.len() {
        0 => "no code references".to_owned(),
        1 => "1 code reference".to_owned(),
        n => format!("{n} code references"),
    };
    if !rejected.is_empty() {
        summary.push_str(&format!(
            ", {} failed verification (not shown)",
            rejected.len()
        ));
    }
    summary.push_str(&format!(", next_since={}", page.next_since));
    if page.has_more {
        summary.push_str("; more with `since`");
    }
    if refs.iter().any(|r| r.get("snippet_cut").is_some()) {
        summary.push_str("; long snippets are cut (`get` by id shows all)");
    }
    Ok(Answer::new(
        summary,
        json!({
            "refs": refs,
            "rejected": rejected,
            "next_since": page.next_since,
            "has_more": page.has_more,
            "form": form.as_str(),
        }),
    ))
}

/// A reference as a list row of `count` in `form`: its snippet and note cut, the
/// snippet's whole length shown, and its path cut to a label's length (a sender bounds
/// only the sealed content as a whole).
pub(crate) fn ref_row(shared: &SharedRef, form: ListForm, count: usize) -> serde_json::Value {
    let chars = form.preview_chars(count);
    let mut row = json!(shared);
    if form == ListForm::Brief {
        drop_fields(&mut row, &["commit", "shared_at"]);
    }
    cut_field(&mut row, "note", chars);
    cut_field(&mut row, "path", BRIEF_PREVIEW_CHARS);
    match cut_field(&mut row, "snippet", chars) {
        Some(whole) => json!({ "ref": row, "snippet_cut": true, "snippet_chars": whole }),
        None => json!({ "ref": row }),
    }
}

async fn get(session: &Session, params: RefParams) -> Result<Answer, ToolError> {
    let id = params
        .id
        .ok_or_else(|| ToolError::invalid("`id` is required for `get` (from `share` or `list`)"))?;
    let id = EventId::parse(id.trim()).map_err(|e| {
        ToolError::invalid(format!(
            "`id` must be a reference id from `share` or `list`: {e}"
        ))
    })?;
    let shared = session
        .client
        .get_ref(id)
        .await
        .map_err(|e| match e.api_code() {
            Some("ref_not_found") => ToolError::new(
                "ref_not_found",
                format!("no code reference {id} that you may read; use ns_ref list to see yours"),
            ),
            _ => e.into(),
        })?;
    Ok(Answer::new(
        format!(
            "{}:{}-{} from {}",
            shared.path, shared.start_line, shared.end_line, shared.from
        ),
        json!({ "ref": shared }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexysync_domain::ids::{AgentName, EventId, Seq};

    #[test]
    fn a_list_row_cuts_a_long_path_and_note_in_either_form() {
        let shared = SharedRef {
            id: EventId::generate(),
            seq: Seq(3),
            from: AgentName::parse("alice").unwrap(),
            to: None,
            path: "p/".repeat(5_000),
            start_line: 1,
            end_line: 2,
            snippet: "fn main() {}".into(),
            language: None,
            commit: None,
            note: Some("n".repeat(50_000)),
            shared_at: "2025-01-01T00:00:00.000Z".into(),
        };
        for form in [ListForm::Brief, ListForm::Full] {
            let row = ref_row(&shared, form, 1);
            let path = row["ref"]["path"].as_str().unwrap();
            assert_eq!(path.chars().count(), BRIEF_PREVIEW_CHARS, "{form:?}");
            let note = row["ref"]["note"].as_str().unwrap();
            assert_eq!(note.chars().count(), form.preview_chars(1), "{form:?}");
        }
    }
}
