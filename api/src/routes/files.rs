//! Shared files: declare an upload (a signed `file_shared`, answered with an upload URL),
//! commit it once the blob is stored (the `file_shared` is appended), list, get a download
//! URL, delete (`file_deleted`, blob removed). Names and media types stay sealed inside
//! the envelopes; the blobs are ciphertext the CDN stores.
//!
//! A declaration may leave the ciphertext's SHA-256 to the CDN (an empty `digest`), so a
//! client encrypts once and streams: the CDN measures the bytes as it stores them and
//! signs a receipt; the commit brings the receipt and the `file_shared` signed again with
//! that digest, the one change to the declared event accepted (ADR 0008, addendum).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use nexysync_domain::blob_url::UploadReceipt;
use nexysync_domain::event::{Envelope, EventBody, EventKind};
use nexysync_domain::ids::{EventId, ProjectId, Seq};
use nexysync_domain::wire::{Appended, FileCommit};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::{instrument, warn};

use crate::auth::AgentAuth;
use crate::cdn::SignedUrl;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::paging::PageRequest;
use crate::raw::{self, RawStoredEvent};
use crate::state::AppState;
use crate::write::{check_as_agent, submit_as_agent, write_status};

/// Answer to a declared upload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UploadTicket {
    file: EventId,
    /// `PUT` the ciphertext here: exactly `max_bytes` bytes (with the declared SHA-256,
    /// when the declaration carried one).
    upload_url: String,
    expires_at_ms: i64,
    max_bytes: u64,
}

fn parse_id(id: &str) -> Result<EventId, ApiError> {
    EventId::parse(id).map_err(|e| ApiError::InvalidRequest(format!("file id: {e}")))
}

/// The files' own limit on stored bytes, checked on declare and on commit.
async fn check_file_quota(
    state: &AppState,
    project: ProjectId,
    file: EventId,
    ciphertext_size: u64,
) -> Result<(), ApiError> {
    let quota = state.cdn.settings().quota_bytes;
    let in_use = state.reads.file_bytes_in_use(project, Some(file)).await?;
    if in_use.saturating_add(ciphertext_size) > quota {
        return Err(ApiError::FileQuotaExceeded(format!(
            "this file needs {ciphertext_size} bytes but the project's files already use {in_use} of its {quota}; delete files to make room"
        )));
    }
    Ok(())
}

/// `POST /v1/files`: declares an upload with the signed `file_shared` to append later.
#[instrument(skip_all, fields(file = %event.id))]
pub async fn declare(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<UploadTicket>), ApiError> {
    if check_as_agent(&state, &me, &event, EventKind::FileShared)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict {
            code: "file_already_shared",
            message: format!("file {} is already shared; nothing to upload", event.id),
        });
    }
    let EventBody::FileShared(shared) = &event.body else {
        return Err(ApiError::InvalidRequest("not a `file_shared` event".into()));
    };
    check_file_quota(&state, me.project, event.id, shared.ciphertext_size).await?;
    // Files share the project's `stored_bytes` quota with messages and references (the
    // declared upload counts from here on, so this is checked once, before it is recorded).
    crate::write::check_stored_bytes(&state, me.project, shared.ciphertext_size).await?;
    let digest = (!shared.digest_is_pending()).then_some(shared.digest.as_str());
    let url = state
        .cdn
        .upload_url(me.project, event.id, shared.ciphertext_size, digest);
    let expires_at =
        chrono::DateTime::from_timestamp_millis(url.expires_at_ms).unwrap_or_else(chrono::Utc::now);
    let json = String::from_utf8(event.to_json()).map_err(|e| ApiError::Unexpected(e.into()))?;
    let recorded = state
        .reads
        .declare_upload(
            me.project,
            me.agent,
            event.id,
            shared.ciphertext_size,
            &json,
            expires_at,
        )
        .await?;
    if !recorded {
        return Err(ApiError::Conflict {
            code: "file_id_taken",
            message: format!(
                "file id {} is already used by another upload; sign the file_shared with a fresh id",
                event.id
            ),
        });
    }
    Ok((
        StatusCode::CREATED,
        Json(UploadTicket {
            file: event.id,
            upload_url: url.url,
            expires_at_ms: url.expires_at_ms,
            max_bytes: shared.ciphertext_size,
        }),
    ))
}

/// The declared `file_shared` as it is appended: as declared when it carried its digest;
/// otherwise with the digest the CDN's receipt vouches for and the agent's new signature
/// over it (checked when it is decided). Nothing else of the declaration can change.
fn completed(
    state: &AppState,
    project: ProjectId,
    id: EventId,
    declared: Envelope,
    ciphertext_size: u64,
    commit: FileCommit,
) -> Result<Envelope, ApiError> {
    let EventBody::FileShared(shared) = &declared.body else {
        return Err(ApiError::Unexpected(anyhow::anyhow!(
            "a pending upload holds a {} event",
            declared.body.kind().as_str()
        )));
    };
    if !shared.digest_is_pending() {
        // The CDN checked the declared digest before it kept the blob.
        return Ok(declared);
    }
    let (Some(stored), Some(sig)) = (commit.stored, commit.sig) else {
        return Err(ApiError::InvalidRequest(
            "this upload left its digest to the CDN: commit with the CDN's answer to the upload (`stored`) and the file_shared signed again with that digest (`sig`)".into(),
        ));
    };
    let receipt = UploadReceipt {
        project,
        file: id,
        size: stored.size,
        sha256: stored.sha256.clone(),
    };
    if stored.size != ciphertext_size || !state.cdn.receipt_is_genuine(&receipt, &stored.receipt) {
        return Err(ApiError::Conflict {
            code: "bad_receipt",
            message: format!(
                "this is not the CDN's receipt for the {ciphertext_size} bytes declared for file {id}; commit with the answer the CDN gave to the upload"
            ),
        });
    }
    let mut event = declared;
    if let EventBody::FileShared(shared) = &mut event.body {
        shared.digest = stored.sha256;
    }
    event.sig = sig;
    Ok(event)
}

/// `POST /v1/files/{id}/commit`: the blob is stored; append the declared `file_shared`.
#[instrument(skip_all, fields(file = %id))]
pub async fn commit(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<FileCommit>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let id = parse_id(&id)?;
    let Some(pending) = state
        .reads
        .pending_upload(me.project, id)
        .await?
        .filter(|p| p.uploader == me.agent)
    else {
        // A retried commit whose first attempt went through is answered as a duplicate,
        // but only from read models that have caught up with this instance's writes (a
        // `503 projection_lagging` otherwise): a delete appended a moment ago must not be
        // answered as a live file.
        state
            .wait_for_projection(Some(state.known_log_position()))
            .await?;
        if let Some(file) = state.reads.file_for(me.project, me.agent, id).await? {
            if file.deleted_seq.is_none() {
                return Ok((
                    StatusCode::OK,
                    Json(Appended {
                        id,
                        seq: file.stored.seq,
                        duplicate: true,
                    }),
                ));
            }
        }
        return Err(ApiError::NotFound {
            code: "upload_not_found",
            message: format!("no upload {id} declared by you (declare it with POST /v1/files)"),
        });
    };
    if pending.expires_at < chrono::Utc::now() {
        return Err(ApiError::Gone {
            code: "upload_expired",
            message: "this upload's URL expired before it was committed; declare the file again with a fresh id".into(),
        });
    }
    let declared: Envelope = serde_json::from_str(&pending.envelope)
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e).context("pending upload")))?;
    let event = completed(
        &state,
        me.project,
        id,
        declared,
        pending.ciphertext_size,
        body,
    )?;
    // The receipt says what was stored; the blob must also still be there.
    match state.cdn.blob_size(me.project, id).await? {
        Some(size) if size == pending.ciphertext_size => {}
        _ => {
            return Err(ApiError::Conflict {
                code: "upload_incomplete",
                message: format!(
                    "the CDN does not hold the {} bytes declared for file {id}; upload them to the upload URL first",
                    pending.ciphertext_size
                ),
            })
        }
    }
    check_file_quota(&state, me.project, id, pending.ciphertext_size).await?;
    let appended = submit_as_agent(&state, &me, event, Some(EventKind::FileShared)).await?;
    Ok((write_status(&appended), Json(appended)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only events after this stream sequence (exclusive; default 0): the previous
    /// page's `next_since_seq`.
    since_seq: Option<Seq>,
    /// Page size: default 50, at most 500.
    limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `domain::wire::FilePage` with envelopes as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "FilePage")]
pub struct RawFilePage {
    files: Vec<RawStoredEvent>,
    next_since_seq: Seq,
    has_more: bool,
}

/// `GET /v1/files`: live files shared with me, with everyone, or by me, oldest first.
#[instrument(skip_all)]
pub async fn list(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RawFilePage>, ApiError> {
    state.wait_for_projection(query.min_seq).await?;
    let page = PageRequest::new(query.since_seq, query.limit)?;
    let rows = state
        .reads
        .files_for(me.project, me.agent, page.since, page.fetch())
        .await?;
    let (rows, next_since_seq, has_more) = page.split(rows);
    Ok(Json(RawFilePage {
        files: raw::all(rows)?,
        next_since_seq,
        has_more,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadQuery {
    /// Read-your-writes: wait (bounded) until the read models reached this sequence,
    /// else `503 projection_lagging`.
    min_seq: Option<Seq>,
}

/// `domain::wire::FileDownload` with the envelope as stored.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "FileDownload")]
pub struct RawFileDownload {
    file: RawStoredEvent,
    download_url: String,
    expires_at_ms: i64,
}

/// `GET /v1/files/{id}`: the file's event and a short-lived download URL.
#[instrument(skip_all, fields(file = %id))]
pub async fn read(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<RawFileDownload>, ApiError> {
    let id = parse_id(&id)?;
    state.wait_for_projection(query.min_seq).await?;
    let mut file = state.reads.file_for(me.project, me.agent, id).await?;
    if file.is_none() {
        // Perhaps shared a moment ago (the `new_file` push can outrun the read models).
        state.settle_projection().await;
        file = state.reads.file_for(me.project, me.agent, id).await?;
    }
    let file = match file {
        Some(file) if file.deleted_seq.is_none() => file,
        Some(_) => {
            return Err(ApiError::NotFound {
                code: "file_not_found",
                message: format!("file {id} was deleted"),
            })
        }
        None => {
            return Err(ApiError::NotFound {
                code: "file_not_found",
                message: format!("no file {id} that you may read"),
            })
        }
    };
    let SignedUrl { url, expires_at_ms } = state.cdn.download_url(me.project, id);
    Ok(Json(RawFileDownload {
        file: file.stored.try_into()?,
        download_url: url,
        expires_at_ms,
    }))
}

/// `POST /v1/files/delete`: a signed `file_deleted`; the blob is removed once it is
/// appended.
#[instrument(skip_all, fields(event = %event.id))]
pub async fn delete(
    AgentAuth(me): AgentAuth,
    State(state): State<AppState>,
    ApiJson(event): ApiJson<Envelope>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let file = match &event.body {
        EventBody::FileDeleted(deleted) => Some(deleted.file),
        _ => None,
    };
    let appended = submit_as_agent(&state, &me, event, Some(EventKind::FileDeleted)).await?;
    if let Some(file) = file {
        // The event is the fact; a blob that cannot be removed now is unreachable (no
        // download URL is signed for a deleted file) and left to the sweeper.
        if let Err(e) = state.cdn.remove(me.project, file).await {
            warn!(error = %e, file = %file, "blob of a deleted file not removed yet; the sweeper will");
        }
        // An upload URL of the file may still be within its lifetime, and the CDN keeps
        // no state: once the blob is gone, it would store a blob PUT under that URL again,
        // outside the quota. The sweeper removes whatever is there once every such URL
        // has expired (the last was signed before the commit, so before now).
        let every_url_expired = chrono::Duration::from_std(state.cdn.settings().upload_url_ttl)
            .ok()
            .and_then(|ttl| chrono::Utc::now().checked_add_signed(ttl))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if let Err(e) = state
            .reads
            .sweep_blob_after(me.project, me.agent, file, every_url_expired)
            .await
        {
            warn!(error = %e, file = %file, "the blob of a deleted file could not be queued for the sweeper");
        }
    }
    Ok((write_status(&appended), Json(appended)))
}
