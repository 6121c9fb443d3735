//! Environments and spaces over HTTP: list, read one by id, create.
//! The caller's scope is checked first (`auth::within`), before the target
//! is looked up; lists show only what the caller's scope reaches. Deleting
//! them is `deletion.rs`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use keyhole_store::{Scope, StoreError};

use super::Shared;
use super::audit::audited;
use super::auth::{denied_item, sees, within, within_scope};
use super::body::{ApiJson, ApiPath};
use super::error::{ApiError, space_create_error};
use super::scopes::{blocking, query};
use crate::auth::{Permission, Principal};
use crate::requests::{CreateEnvironment, CreateSpace, SpaceQuery};
use crate::views::{EnvironmentView, SpaceView};

pub async fn list_environments(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let envs = s.runtime.store().list_environments()?;
    let mine = who.scope.environment();
    Ok(Json(
        envs.into_iter()
            .filter(|e| mine.is_none_or(|m| m == e.id))
            .map(EnvironmentView::from)
            .collect(),
    ))
}

/// The environment `id`. A token limited to another environment gets the
/// same 403 whether `id` exists or not.
pub async fn get_environment(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EnvironmentView>, ApiError> {
    if who.scope.environment().is_some_and(|mine| mine != id) {
        let what = format!("env {}", truncated(&id));
        return Err(denied_item(&who, Permission::ScopesRead, &what));
    }
    let store = s.runtime.store().clone();
    let e = blocking(move || {
        store
            .environment(&id)?
            .ok_or_else(|| StoreError::UnknownEnvironment(id).into())
    })
    .await?;
    Ok(Json(e.into()))
}

/// At most 64 characters of a caller's id, for a denial's message.
fn truncated(id: &str) -> String {
    id.chars().take(64).collect()
}

pub async fn create_environment(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>), ApiError> {
    let state = s.clone();
    let e = blocking(move || {
        let target = format!("env:{}", body.id);
        audited(&state, &who, "environment.create", &target, || {
            Ok(state.runtime.store().create_environment(&body.id)?)
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(e.into())))
}

pub async fn list_spaces(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<SpaceQuery>, QueryRejection>,
) -> Result<Json<Vec<SpaceView>>, ApiError> {
    let q = query(q)?;
    let store = s.runtime.store();
    if let Some(env) = &q.environment_id
        && who.scope.environment().is_some_and(|mine| mine != env)
    {
        within(&who, Permission::ScopesRead, store, env, None)?;
    }
    let spaces = store.list_spaces(q.environment_id.as_deref())?;
    Ok(Json(
        spaces
            .into_iter()
            .filter(|sp| sees(&who, &sp.environment, Some(&sp.id)))
            .map(SpaceView::from)
            .collect(),
    ))
}

/// The space `id`. The caller's scope is checked first (for a token
/// limited to an environment, "not in it" and "nowhere" are one 403).
pub async fn get_space(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SpaceView>, ApiError> {
    let store = s.runtime.store().clone();
    let info = blocking(move || {
        let scope = Scope::Space(id.clone());
        within_scope(&who, Permission::ScopesRead, &store, &scope)?;
        store
            .space(&id)?
            .ok_or_else(|| StoreError::UnknownSpace(id).into())
    })
    .await?;
    Ok(Json(info.into()))
}

pub async fn create_space(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<CreateSpace>,
) -> Result<(StatusCode, Json<SpaceView>), ApiError> {
    let store = s.runtime.store().clone();
    // A new space is a change to its environment: a space-scoped token
    // cannot make one.
    within(
        &who,
        Permission::ScopesWrite,
        &store,
        &body.environment_id,
        None,
    )?;
    let state = s.clone();
    let info = blocking(move || {
        let target = format!("space:{} (env:{})", body.id, body.environment_id);
        audited(&state, &who, "space.create", &target, || {
            // Space ids are one namespace: say which environment holds a
            // taken one only to a caller who reaches that environment.
            store
                .create_space(&body.id, &body.environment_id)
                .map_err(|e| space_create_error(e, |env| sees(&who, env, None)))
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}
