//! `ns_kv`: the project's shared key-value store: get, set (optionally compare-and-set
//! on the revision, optionally with a TTL), delete and list. Keys and values are
//! encrypted; every value shown was verified (writer's signature, project, chain).

use nexysync_domain::crypto::BlindIndex;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::answer::{
    cut, cut_field, drop_fields, Answer, ListForm, ToolError, BRIEF_PREVIEW_CHARS,
};
use super::session::Session;
use super::NexySyncMcp;
use crate::client::ClientError;

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// Parameters of `ns_kv`. Which fields apply depends on `action`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct KvParams {
    /// `get`: one entry (needs `key`). `set`: write a value (needs `key`, `value`).
    /// `delete`: remove a key (needs `key`). `list`: the live entries, a page at a time.
    pub action: KvAction,
    /// get, set, delete: the key (e.g. `lease:src/upload.rs`). Encrypted before it leaves.
    #[serde(default)]
    pub key: Option<String>,
    /// set: the value (encrypted too).
    #[serde(default)]
    pub value: Option<String>,
    /// set, delete: compare-and-set. Only write if the key's current revision is this;
    /// `0` means "only if the key does not exist". Omit to write unconditionally.
    #[serde(default)]
    pub expected_revision: Option<u64>,
    /// set: seconds until the entry disappears by itself (e.g. 600 for a 10-minute lease).
    #[serde(default)]
    pub ttl_s: Option<u32>,
    /// list: most entries to return (default 20, max 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// list: the `next_cursor` of a previous answer, for the next page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// list: `true` for every field and longer values; default brief (key, a short value,
    /// revision, writer; long values are cut, their length shown; `get` shows all).
    #[serde(default)]
    pub full: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum KvAction {
    Get,
    Set,
    Delete,
    List,
}

pub(crate) async fn run(server: &NexySyncMcp, params: KvParams) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    match params.action {
        KvAction::Get => get(&session, params).await,
        KvAction::Set => set(&session, params).await,
        KvAction::Delete => delete(&session, params).await,
        KvAction::List => list(&session, params).await,
    }
}

fn required_key(key: Option<String>) -> Result<String, ToolError> {
    key.filter(|k| !k.is_empty())
        .ok_or_else(|| ToolError::invalid("`key` is required (e.g. `lease:src/upload.rs`)"))
}

/// A refused compare-and-set says what to do next.
fn write_error(error: ClientError, key: &str) -> ToolError {
    match error.api_code() {
        Some("revision_mismatch") => ToolError::new(
            "revision_mismatch",
            format!(
                "`{key}` changed since you read it: {}. Use ns_kv get to see the current value \
                 and revision, then decide again.",
                api_message(&error)
            ),
        ),
        Some("key_not_found") => ToolError::new(
            "key_not_found",
            format!("`{key}` does not exist (never set, deleted, or expired); nothing to delete"),
        ),
        _ => error.into(),
    }
}

fn api_message(error: &ClientError) -> String {
    match error {
        ClientError::Api(api) => api.message.clone(),
        other => other.to_string(),
    }
}

async fn get(session: &Session, params: KvParams) -> Result<Answer, ToolError> {
    let key = required_key(params.key)?;
    match session.client.kv_get(&key).await? {
        Some(entry) => {
            // The whole value is in the structured answer: the summary only names it.
            let (shown, whole) = cut(&entry.value, BRIEF_PREVIEW_CHARS);
            let cut_note = match whole {
                Some(chars) => format!("… (cut; all {chars} characters in `entry.value`)"),
                None => String::new(),
            };
            Ok(Answer::new(
                format!(
                    "`{key}` = {shown:?}{cut_note} (revision {}, set by {})",
                    entry.revision, entry.updated_by
                ),
                json!({ "found": true, "entry": entry }),
            ))
        }
        None => Ok(Answer::new(
            format!("`{key}` does not exist (revision 0: set it with expected_revision 0 to create it only if still absent)"),
            json!({ "found": false, "key": key, "revision": 0 }),
        )),
    }
}

async fn set(session: &Session, params: KvParams) -> Result<Answer, ToolError> {
    let key = required_key(params.key)?;
    let value = params
        .value
        .ok_or_else(|| ToolError::invalid("`value` is required for `set`"))?;
    let appended = session
        .client
        .kv_set(&key, &value, params.expected_revision, params.ttl_s)
        .await
        .map_err(|e| write_error(e, &key))?;
    let ttl = params
        .ttl_s
        .map(|t| format!(", expires in {t} s"))
        .unwrap_or_default();
    Ok(Answer::new(
        format!("set `{key}` (revision {}{ttl})", appended.revision),
        json!({
            "key": key,
            "revision": appended.revision,
            "id": appended.id,
            "ttl_s": params.ttl_s,
            "duplicate": appended.duplicate,
        }),
    ))
}

async fn delete(session: &Session, params: KvParams) -> Result<Answer, ToolError> {
    let key = required_key(params.key)?;
    let appended = session
        .client
        .kv_delete(&key, params.expected_revision)
        .await
        .map_err(|e| write_error(e, &key))?;
    Ok(Answer::new(
        format!("deleted `{key}` (revision {})", appended.revision),
        json!({ "key": key, "deleted": true, "revision": appended.revision, "id": appended.id }),
    ))
}

async fn list(session: &Session, params: KvParams) -> Result<Answer, ToolError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ToolError::invalid(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let cursor = params
        .cursor
        .map(|c| {
            BlindIndex::try_from(c).map_err(|_| {
                ToolError::invalid("`cursor` must be the `next_cursor` of a previous list answer")
            })
        })
        .transpose()?;
    let form = ListForm::from_flag(params.full);
    let page = session.client.kv_list(cursor.as_ref(), limit).await?;
    let chars = form.preview_chars(page.items.len());
    let mut entries = Vec::new();
    let mut rejected = Vec::new();
    for item in page.items {
        match item {
            Ok(entry) => {
                let mut row = json!(entry);
                if form == ListForm::Brief {
                    drop_fields(&mut row, &["updated_at"]);
                }
                entries.push(match cut_field(&mut row, "value", chars) {
                    Some(whole) => json!({ "entry": row, "value_cut": true, "value_chars": whole }),
                    None => json!({ "entry": row }),
                });
            }
            Err(r) => rejected
                .push(json!({ "id": r.id, "revision": r.seq, "error": r.reason.to_string() })),
        }
    }
    let mut summary = match entries.len() {
        0 => "no keys".to_owned(),
        1 => "1 key".to_owned(),
        n => format!("{n} keys"),
    };
    if !rejected.is_empty() {
        summary.push_str(&format!(
            ", {} entries failed verification (not shown)",
            rejected.len()
        ));
    }
    if page.has_more {
        summary.push_str("; more with `cursor`");
    }
    if entries.iter().any(|e| e.get("value_cut").is_some()) {
        summary.push_str("; long values are cut (`get` by key shows all)");
    }
    Ok(Answer::new(
        summary,
        json!({
            "entries": entries,
            "rejected": rejected,
            "next_cursor": page.next_cursor,
            "has_more": page.has_more,
            "form": form.as_str(),
        }),
    ))
}
