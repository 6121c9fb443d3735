//! API tokens over HTTP (`tokens:admin`, so admin only): create (the token
//! is in that one response, never again), list (never a token or a hash)
//! and revoke (the next request with it gets a 401).
//!
//! Also the daemon's "last used" write-back: every [`LAST_USED_PERIOD`]
//! the times the token view keeps in memory are written to the records, so
//! the event path costs no write per request.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::Shared;
use super::audit::audited;
use super::body::{ApiJson, ApiPath};
use super::error::ApiError;
use super::scopes::blocking;
use crate::auth::{NewToken, Principal, Role, TokenError, TokenScope, UnknownRole};
use crate::requests::CreateToken;
use crate::views::{CreatedToken, TokenInfo};

/// How often last-used times are written back.
pub const LAST_USED_PERIOD: Duration = Duration::from_secs(60);

pub async fn create(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let role: Role = body
        .role
        .parse()
        .map_err(|e: UnknownRole| ApiError::bad_request(e.to_string()))?;
    let scope = TokenScope::from_parts(body.environment_id, body.space_id)
        .ok_or(TokenError::SpaceWithoutEnvironment)?;
    let expires_in = body
        .expires_in
        .map(|t| humantime::parse_duration(&t))
        .transpose()
        .map_err(|e| TokenError::InvalidExpiry(e.to_string()))?;
    // Before the audit entry, which would keep the name: a token pasted
    // where its name belongs must not be.
    checked_name(&body.name)?;
    let state = s.clone();
    let (token, secret) = blocking(move || {
        crate::auth::check_scope_exists(state.runtime.store(), &scope)?;
        let target = format!("token:{} (role {role}, scope {scope})", body.name);
        audited(&state, &who, "token.create", &target, || {
            Ok(state.tokens.tokens().create(NewToken {
                name: body.name,
                role,
                scope,
                expires_in,
                created_by: who.actor(),
            })?)
        })
    })
    .await?;
    let created = CreatedToken {
        info: TokenInfo::new(&token, None),
        token: secret,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(State(s): State<Shared>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let state = s.clone();
    let tokens = blocking(move || Ok(state.tokens.tokens().list()?)).await?;
    Ok(Json(
        tokens
            .iter()
            .map(|t| TokenInfo::new(t, s.tokens.last_used(&t.name)))
            .collect(),
    ))
}

pub async fn revoke(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    blocking(move || {
        let target = format!("token:{name}");
        audited(&s, &who, "token.revoke", &target, || {
            Ok(s.tokens.tokens().revoke(&name)?)
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/tokens/{name}/rotate`: a new secret for the token (role,
/// scope and expiry kept), in this one response; the old one stops working.
pub async fn rotate(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CreatedToken>, ApiError> {
    checked_name(&name)?;
    let state = s.clone();
    let (token, secret) = blocking(move || {
        let target = format!("token:{name}");
        audited(&state, &who, "token.rotate", &target, || {
            Ok(state.tokens.tokens().rotate(&name)?)
        })
    })
    .await?;
    Ok(Json(CreatedToken {
        info: TokenInfo::new(&token, s.tokens.last_used(&token.name)),
        token: secret,
    }))
}

/// Writes back last-used times every [`LAST_USED_PERIOD`] until the daemon
/// stops (it writes them once more at shutdown).
pub fn spawn_last_used_writer(state: &Shared) {
    let state = state.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + LAST_USED_PERIOD;
        let mut tick = tokio::time::interval_at(start, LAST_USED_PERIOD);
        loop {
            tick.tick().await;
            let s = state.clone();
            match tokio::task::spawn_blocking(move || s.tokens.write_back()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("writing back token last-used times: {e}"),
                Err(e) => tracing::warn!("writing back token last-used times: {e}"),
            }
        }
    });
}

/// A token name as the store takes it, checked before anything records it
/// (the error does not echo it).
fn checked_name(name: &str) -> Result<(), ApiError> {
    if crate::auth::valid_name(name) {
        Ok(())
    } else {
        Err(TokenError::InvalidName.into())
    }
}
