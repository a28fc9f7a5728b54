//! `ns_file`: share files with the project's agents. Upload a local file (or small inline
//! text), list the files you may read, read one (into a local path, or inline when small
//! and textual), delete one. Files are encrypted here in chunks and streamed, so a large
//! file is never held whole in memory; names and media types are encrypted too.

use std::path::{Path, PathBuf};

use nexysync_domain::ids::{AgentName, EventId, Seq};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::answer::{Answer, ToolError};
use super::session::Session;
use super::NexySyncMcp;
use crate::client::{FileSource, NewFile, SharedFile};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
/// Largest `content` accepted inline, and largest file `read` answers inline.
const INLINE_BYTES: usize = 64 * 1024;

/// Parameters of `ns_file`. Which fields apply depends on `action`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileParams {
    /// `upload`: share a file (`path` of a local file, or `content` for small text).
    /// `list`: files you may read, oldest first. `read`: fetch one (`id`, and `path` to
    /// save it; without `path`, small text files are answered inline). `delete` (`id`).
    pub action: FileAction,
    /// upload: the local file to share. read: where to save the file (a new file, or an
    /// existing directory to save it in under its name). Relative paths are taken from
    /// the directory this server runs in.
    #[serde(default)]
    pub path: Option<String>,
    /// upload: small text to share as a file instead of `path` (at most 64 KiB).
    #[serde(default)]
    pub content: Option<String>,
    /// upload: the name others see (default: the file name of `path`; required with
    /// `content`). A plain file name, without directories.
    #[serde(default)]
    pub name: Option<String>,
    /// upload: the media type (e.g. `text/markdown`, `image/png`).
    #[serde(default)]
    pub media_type: Option<String>,
    /// upload: the agent to share with; omit to share with every agent of the project.
    #[serde(default)]
    pub to: Option<String>,
    /// read, delete: the file's id (from `upload` or `list`).
    #[serde(default)]
    pub id: Option<String>,
    /// list: files after this sequence number (the `next_since` of a previous answer).
    #[serde(default)]
    pub since: Option<u64>,
    /// list: most files to return (default 20, max 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum FileAction {
    Upload,
    List,
    Read,
    Delete,
}

pub(crate) async fn run(server: &NexySyncMcp, params: FileParams) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    match params.action {
        FileAction::Upload => upload(server, &session, params).await,
        FileAction::List => list(&session, params).await,
        FileAction::Read => read(server, &session, params).await,
        FileAction::Delete => delete(&session, params).await,
    }
}

/// A name is a single path component: no directories, no `..`, nothing that would land
/// the file anywhere but where the reader chose.
pub(crate) fn safe_name(name: &str) -> Result<&str, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("the file name is empty".into());
    }
    if trimmed.len() > 255 {
        return Err("the file name is longer than 255 bytes".into());
    }
    if trimmed == "." || trimmed == ".." || trimmed.contains(['/', '\\', '\0']) {
        return Err(format!(
            "`{trimmed}` is not a plain file name (no directories, `..`, `/`, `\\` or NUL)"
        ));
    }
    Ok(trimmed)
}

fn resolve(server: &NexySyncMcp, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        server.cwd().join(path)
    }
}

fn parse_id(id: Option<String>, action: &str) -> Result<EventId, ToolError> {
    let id = id.ok_or_else(|| {
        ToolError::invalid(format!(
            "`id` is required for `{action}` (from `upload` or `list`)"
        ))
    })?;
    EventId::parse(id.trim()).map_err(|e| {
        ToolError::invalid(format!(
            "`id` must be a file id from `upload` or `list`: {e}"
        ))
    })
}

fn not_found(e: crate::client::ClientError, id: EventId) -> ToolError {
    match e.api_code() {
        // `blob_not_found`: the CDN no longer holds it (deleted a moment ago).
        Some("file_not_found" | "blob_not_found") => ToolError::new(
            "file_not_found",
            format!("no file {id} that you may read (never shared with you, or deleted); use ns_file list"),
        ),
        _ => e.into(),
    }
}

fn view(file: &SharedFile) -> serde_json::Value {
    json!({
        "id": file.id,
        "name": file.name,
        "size": file.size,
        "from": file.from,
        "to": file.to,
        "media_type": file.media_type,
        "shared_at": file.shared_at,
        "seq": file.seq,
    })
}

async fn upload(
    server: &NexySyncMcp,
    session: &Session,
    params: FileParams,
) -> Result<Answer, ToolError> {
    let (source, default_name) = match (params.path, params.content) {
        (Some(_), Some(_)) => {
            return Err(ToolError::invalid(
                "give either `path` (a local file) or `content` (small text), not both",
            ))
        }
        (None, None) => {
            return Err(ToolError::invalid(
                "`upload` needs `path` (a local file) or `content` (small text)",
            ))
        }
        (Some(path), None) => {
            let full = resolve(server, &path);
            if !full.is_file() {
                return Err(ToolError::new(
                    "file_not_readable",
                    format!("`{}` is not a readable file", full.display()),
                ));
            }
            let name = full.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            (FileSource::Path(full), name)
        }
        (None, Some(content)) => {
            if content.len() > INLINE_BYTES {
                return Err(ToolError::new(
                    "content_too_large",
                    format!(
                        "`content` is {} bytes; inline content is at most {INLINE_BYTES}: write it to a file and give `path`",
                        content.len()
                    ),
                ));
            }
            (FileSource::Bytes(content.into_bytes()), None)
        }
    };
    let name = params
        .name
        .or(default_name)
        .ok_or_else(|| ToolError::invalid("`name` is required with `content` (e.g. `notes.md`)"))?;
    let name = safe_name(&name).map_err(|e| ToolError::invalid(format!("`name`: {e}")))?;
    let to = params
        .to
        .filter(|to| !to.trim().is_empty())
        .map(|to| AgentName::parse(to.trim()).map_err(|e| ToolError::invalid(format!("`to`: {e}"))))
        .transpose()?;
    let (appended, size) = session
        .client
        .upload_file(NewFile {
            source,
            name: name.to_owned(),
            media_type: params.media_type,
            to: to.clone(),
        })
        .await?;
    let who = to
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "everyone".into());
    Ok(Answer::new(
        format!(
            "shared `{name}` ({size} bytes) with {who} (id {})",
            appended.id
        ),
        json!({
            "id": appended.id,
            "name": name,
            "size": size,
            "from": session.client.key_file().agent.name,
            "to": to,
            "seq": appended.seq,
        }),
    ))
}

async fn list(session: &Session, params: FileParams) -> Result<Answer, ToolError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ToolError::invalid(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let page = session
        .client
        .files(Seq(params.since.unwrap_or(0)), limit)
        .await?;
    let mut files = Vec::new();
    let mut rejected = Vec::new();
    for item in page.items {
        match item {
            Ok(file) => files.push(view(&file)),
            Err(r) => {
                rejected.push(json!({ "id": r.id, "seq": r.seq, "error": r.reason.to_string() }))
            }
        }
    }
    let mut summary = match files.len() {
        0 => "no files".to_owned(),
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
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
    Ok(Answer::new(
        summary,
        json!({
            "files": files,
            "rejected": rejected,
            "next_since": page.next_since,
            "has_more": page.has_more,
        }),
    ))
}

async fn read(
    server: &NexySyncMcp,
    session: &Session,
    params: FileParams,
) -> Result<Answer, ToolError> {
    let id = parse_id(params.id, "read")?;
    let Some(path) = params.path else {
        let (file, bytes) = session
            .client
            .download_file_bytes(id, INLINE_BYTES as u64)
            .await
            .map_err(|e| not_found(e, id))?;
        let text = bytes.and_then(|b| String::from_utf8(b).ok());
        return match text {
            Some(text) => Ok(Answer::new(
                format!("`{}` ({} bytes) from {}", file.name, file.size, file.from),
                json!({ "file": view(&file), "content": text }),
            )),
            None => Err(ToolError::new(
                "needs_path",
                format!(
                    "`{}` is {} bytes{}: give `path` to save it to a local file",
                    file.name,
                    file.size,
                    if file.size as usize > INLINE_BYTES {
                        ""
                    } else {
                        " and not text"
                    }
                ),
            )),
        };
    };
    let target = resolve(server, &path);
    let dest = if target.is_dir() {
        // Saved under the sender's name: it must stay a plain name inside that directory.
        let file = session
            .client
            .file(id)
            .await
            .map_err(|e| not_found(e, id))?;
        let name = safe_name(&file.name).map_err(|e| {
            ToolError::new(
                "unsafe_file_name",
                format!("{e}; give `path` as a full file path to save it under a name you choose"),
            )
        })?;
        target.join(name)
    } else {
        target
    };
    if dest.exists() {
        return Err(ToolError::new(
            "path_exists",
            format!(
                "`{}` already exists; choose another path (nothing is overwritten)",
                dest.display()
            ),
        ));
    }
    let file = session
        .client
        .download_file(id, &dest)
        .await
        .map_err(|e| not_found(e, id))?;
    Ok(Answer::new(
        format!(
            "saved `{}` ({} bytes) from {} to {}",
            file.name,
            file.size,
            file.from,
            dest.display()
        ),
        json!({ "file": view(&file), "path": dest }),
    ))
}

async fn delete(session: &Session, params: FileParams) -> Result<Answer, ToolError> {
    let id = parse_id(params.id, "delete")?;
    let appended = session
        .client
        .delete_file(id)
        .await
        .map_err(|e| not_found(e, id))?;
    Ok(Answer::new(
        format!("deleted file {id}"),
        json!({ "id": id, "seq": appended.seq }),
    ))
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn only_plain_file_names_are_safe() {
        assert_eq!(safe_name(" report.pdf "), Ok("report.pdf"));
        for bad in [
            "",
            "..",
            ".",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "x\0y",
            "/abs",
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }
}
