//! `/v1/blobs/{project}/{file}`: each method allowed by a signed URL for that method only.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nexysync_domain::blob_url::{BlobGrant, BlobMethod, UploadReceipt, UrlSecret};
use nexysync_domain::ids::{EventId, ProjectId};
use nexysync_domain::wire::StoredBlob;
use tracing::instrument;

use crate::error::CdnError;
use crate::store::BlobStore;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct CdnState {
    pub store: BlobStore,
    pub secret: UrlSecret,
}

pub(crate) fn router(state: CdnState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/v1/blobs/{project}/{file}",
            get(download)
                .head(size)
                .put(upload)
                .delete(remove)
                .fallback(|| async { CdnError::MethodNotAllowed }),
        )
        .fallback(|| async { CdnError::NoSuchEndpoint })
        .with_state(state)
}

type Signed = Query<HashMap<String, String>>;

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Rebuilds the grant from the URL and checks its signature and expiry.
fn authorize(
    state: &CdnState,
    method: BlobMethod,
    (project, file): &(String, String),
    query: &HashMap<String, String>,
) -> Result<BlobGrant, CdnError> {
    // Ids only: a blob path can never name anything but `<uuid>/<uuid>`.
    let project = ProjectId::parse(project)
        .map_err(|_| CdnError::InvalidUrl("the project in a blob path must be a UUID".into()))?;
    let file = EventId::parse(file)
        .map_err(|_| CdnError::InvalidUrl("the file in a blob path must be a UUIDv7".into()))?;
    let number = |name: &str| -> Result<u64, CdnError> {
        query
            .get(name)
            .ok_or_else(|| CdnError::InvalidUrl(format!("a signed URL has `{name}`")))?
            .parse()
            .map_err(|_| CdnError::InvalidUrl(format!("`{name}` must be a number")))
    };
    let sig = query
        .get("sig")
        .ok_or_else(|| CdnError::InvalidUrl("a signed URL has `sig`".into()))?;
    let grant = BlobGrant {
        method,
        project,
        file,
        expires_at: number("exp")?,
        max_bytes: number("max")?,
        sha256: query.get("sha256").cloned(),
    };
    state.secret.verify(&grant, sig, now_s())?;
    Ok(grant)
}

#[instrument(skip_all, fields(blob = %ids.1))]
async fn upload(
    State(state): State<CdnState>,
    Path(ids): Path<(String, String)>,
    Query(query): Signed,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<StoredBlob>), CdnError> {
    let grant = authorize(&state, BlobMethod::Put, &ids, &query)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refused before reading a byte when the client says up front it is too large.
    if declared.is_some_and(|len| len > grant.max_bytes) {
        return Err(CdnError::TooLarge {
            limit: grant.max_bytes,
        });
    }
    let stored = state
        .store
        .put(
            &grant.blob_key(),
            body.into_data_stream(),
            grant.max_bytes,
            grant.sha256.as_deref(),
            grant.expires_at,
        )
        .await?;
    // What was stored, signed: the commit carries it to the API, which appends the
    // file only for bytes this service measured.
    let receipt = state.secret.sign_receipt(&UploadReceipt {
        project: grant.project,
        file: grant.file,
        size: stored.size,
        sha256: stored.sha256.clone(),
    });
    Ok((
        StatusCode::CREATED,
        Json(StoredBlob {
            size: stored.size,
            sha256: stored.sha256,
            receipt,
        }),
    ))
}

#[instrument(skip_all, fields(blob = %ids.1))]
async fn download(
    State(state): State<CdnState>,
    Path(ids): Path<(String, String)>,
    Query(query): Signed,
) -> Result<Response, CdnError> {
    let grant = authorize(&state, BlobMethod::Get, &ids, &query)?;
    let blob = state.store.get(&grant.blob_key()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, blob.size.to_string()),
        ],
        Body::from_stream(blob.bytes),
    )
        .into_response())
}

#[instrument(skip_all, fields(blob = %ids.1))]
async fn size(
    State(state): State<CdnState>,
    Path(ids): Path<(String, String)>,
    Query(query): Signed,
) -> Result<Response, CdnError> {
    let grant = authorize(&state, BlobMethod::Head, &ids, &query)?;
    let size = state.store.size(&grant.blob_key()).await?;
    Ok(([(header::CONTENT_LENGTH, size.to_string())], Body::empty()).into_response())
}

#[instrument(skip_all, fields(blob = %ids.1))]
async fn remove(
    State(state): State<CdnState>,
    Path(ids): Path<(String, String)>,
    Query(query): Signed,
) -> Result<StatusCode, CdnError> {
    let grant = authorize(&state, BlobMethod::Delete, &ids, &query)?;
    state.store.delete(&grant.blob_key()).await?;
    Ok(StatusCode::NO_CONTENT)
}
