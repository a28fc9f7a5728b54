//! Bearer authentication: agent tokens (looked up by their SHA-256) and the admin token
//! (compared in constant time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use nexysync_domain::crypto::TokenHash;
use nexysync_projections::TokenOwner;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a token lookup is trusted before asking the read models again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
const TOKEN_CACHE_MAX: usize = 10_000;

/// The authenticated agent of a request.
#[derive(Debug, Clone)]
pub struct AgentAuth(pub Arc<TokenOwner>);

/// A request carrying the admin token.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hash = TokenHash::of(bearer(parts)?);
        if let Some(owner) = state.tokens.get(&hash) {
            return Ok(Self(owner));
        }
        let mut owner = state.reads.token_owner(&hash).await?;
        if owner.is_none() {
            // The agent may have been registered a moment ago.
            state.settle_projection().await;
            owner = state.reads.token_owner(&hash).await?;
        }
        let owner = owner.ok_or(ApiError::Unauthorized("unknown agent token"))?;
        let owner = Arc::new(owner);
        state.tokens.put(hash, owner.clone());
        Ok(Self(owner))
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer(parts)?;
        let expected = state.admin_token.expose();
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(AdminAuth)
        } else {
            Err(ApiError::Unauthorized("provisioning needs the admin token"))
        }
    }
}

/// When a token was looked up, and whose it is.
type CachedOwner = (Instant, Arc<TokenOwner>);

/// Recently seen tokens, so a busy agent costs one query per TTL, not one per request.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<HashMap<TokenHash, CachedOwner>>>,
}

impl TokenCache {
    fn get(&self, hash: &TokenHash) -> Option<Arc<TokenOwner>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(at, _)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(_, owner)| owner.clone())
    }

    fn put(&self, hash: TokenHash, owner: Arc<TokenOwner>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (at, _)| at.elapsed() < TOKEN_CACHE_TTL);
        }
        entries.insert(hash, (Instant::now(), owner));
    }
}
