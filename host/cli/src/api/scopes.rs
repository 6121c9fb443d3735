//! Environments, spaces, secrets and key rotation over HTTP.
//!
//! The secrets endpoints follow the seed API: secrets are addressed by an id
//! naming their scope (`env:prod:SLACK_TOKEN`, `space:team-a:SLACK_TOKEN`),
//! writes are upserts, and no response ever carries a value. Store calls
//! that write (and so fsync) run on the blocking pool.
//!
//! The caller's scope is checked first (`auth::within`), before the target
//! is looked up; lists show only what the caller's scope reaches. Each
//! environment, space and secret can also be read alone by id (`GET
//! .../{id}`); deleting environments and spaces is `deletion.rs`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use keyhole_store::{Provenance, RotationReport, RotationTarget, Scope, SecretValue, StoreError};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::audit::audited;
use super::auth::{denied_item, sees, within, within_scope};
use super::error::{ApiError, ApiJson, parse_json, read_body, space_create_error};
use crate::auth::{Permission, Principal};
use crate::trail::secret_target;
use crate::views::{SecretView, parse_secret_id, rfc3339};

/// Runs a store call on the blocking pool.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|r| ApiError::bad_request(r.body_text()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    id: String,
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceView {
    id: String,
    environment_id: String,
    created_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSpace {
    id: String,
    environment_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpaceQuery {
    environment_id: Option<String>,
}

pub async fn list_environments(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let envs = s.runtime.store().list_environments()?;
    let mine = who.scope.environment();
    Ok(Json(
        envs.into_iter()
            .filter(|e| mine.is_none_or(|m| m == e.id))
            .map(|e| EnvironmentView {
                id: e.id,
                created_at: rfc3339(e.created_at_ms),
            })
            .collect(),
    ))
}

/// The environment `id`. A token limited to another environment gets the
/// same 403 whether `id` exists or not.
pub async fn get_environment(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
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
    Ok(Json(EnvironmentView {
        id: e.id,
        created_at: rfc3339(e.created_at_ms),
    }))
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
    let view = EnvironmentView {
        id: e.id,
        created_at: rfc3339(e.created_at_ms),
    };
    Ok((StatusCode::CREATED, Json(view)))
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
            .map(space_view)
            .collect(),
    ))
}

fn space_view(s: keyhole_store::SpaceInfo) -> SpaceView {
    SpaceView {
        id: s.id,
        environment_id: s.environment,
        created_at: rfc3339(s.created_at_ms),
    }
}

/// The space `id`. The caller's scope is checked first (for a token
/// limited to an environment, "not in it" and "nowhere" are one 403).
pub async fn get_space(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
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
    Ok(Json(space_view(info)))
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
    Ok((StatusCode::CREATED, Json(space_view(info))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretQuery {
    environment_id: Option<String>,
    space_id: Option<String>,
}

pub async fn list_secrets(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<SecretQuery>, QueryRejection>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let q = query(q)?;
    let env = q
        .environment_id
        .ok_or_else(|| ApiError::bad_request("query parameter environmentId is required"))?;
    let store = s.runtime.store();
    within(
        &who,
        Permission::SecretsRead,
        store,
        &env,
        q.space_id.as_deref(),
    )?;
    let effective = store.list_effective(&env, q.space_id.as_deref())?;
    Ok(Json(
        effective
            .iter()
            .map(|e| SecretView::new(&e.meta, &env, e.provenance))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetSecret {
    name: String,
    value: String,
    environment_id: String,
    space_id: Option<String>,
}

pub async fn set_secret(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(mut body): ApiJson<SetSecret>,
) -> Result<Json<SecretView>, ApiError> {
    // Into a zeroizing buffer at once; the request's own bytes are gone
    // when the extractor returns.
    let value = SecretValue::new(std::mem::take(&mut body.value));
    let store = s.runtime.store().clone();
    let state = s.clone();
    let view = blocking(move || {
        within(
            &who,
            Permission::SecretsWrite,
            &store,
            &body.environment_id,
            body.space_id.as_deref(),
        )?;
        keyhole_store::validate_name(&body.name)?;
        store.check_scope(&body.environment_id, body.space_id.as_deref())?;
        let (scope, provenance) = match &body.space_id {
            Some(space) => (Scope::Space(space.clone()), Provenance::SpaceOverride),
            None => (
                Scope::Environment(body.environment_id.clone()),
                Provenance::Environment,
            ),
        };
        let target = secret_target(&scope, &body.name);
        let meta = audited(&state, &who, "secret.set", &target, || {
            Ok(store.set_secret(&scope, &body.name, &value)?)
        })?;
        Ok(SecretView::new(&meta, &body.environment_id, provenance))
    })
    .await?;
    Ok(Json(view))
}

/// `{"data": <secret>}`: the secrets API's envelope.
#[derive(Serialize)]
pub struct Data<T> {
    data: T,
}

/// One secret's metadata (never a value), by id: the scope is checked
/// before the secret is looked up.
pub async fn get_secret(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Data<SecretView>>, ApiError> {
    let (scope, name) = parse_secret_id(&id).ok_or_else(|| {
        ApiError::bad_request("secret id must be env:ENV:NAME or space:SPACE:NAME")
    })?;
    let store = s.runtime.store().clone();
    let view = blocking(move || {
        within_scope(&who, Permission::SecretsRead, &store, &scope)?;
        let meta = store.secret_meta(&scope, &name)?;
        let (environment, provenance) = match &scope {
            Scope::Environment(e) => (e.clone(), Provenance::Environment),
            Scope::Space(sp) => {
                let space = store
                    .space(sp)?
                    .ok_or_else(|| StoreError::UnknownSpace(sp.clone()))?;
                (space.environment, Provenance::SpaceOverride)
            }
        };
        Ok(SecretView::new(&meta, &environment, provenance))
    })
    .await?;
    Ok(Json(Data { data: view }))
}

pub async fn delete_secret(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (scope, name) = parse_secret_id(&id).ok_or_else(|| {
        ApiError::bad_request("secret id must be env:ENV:NAME or space:SPACE:NAME")
    })?;
    let store = s.runtime.store().clone();
    let state = s.clone();
    blocking(move || {
        within_scope(&who, Permission::SecretsWrite, &store, &scope)?;
        let target = secret_target(&scope, &name);
        audited(&state, &who, "secret.delete", &target, || {
            if store.delete_secret(&scope, &name)? {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(StoreError::NotFound { scope, name }.into())
            }
        })
    })
    .await
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// `env:NAME` or `space:NAME`; absent rotates the master key.
    scope: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// `kek`, `env:NAME` or `space:NAME`.
    target: String,
    previous_version: Option<u64>,
    new_version: u64,
    records_rewritten: usize,
    retired_versions: Vec<u64>,
}

impl From<RotationReport> for RotationView {
    fn from(r: RotationReport) -> Self {
        RotationView {
            target: match r.target {
                RotationTarget::Kek => "kek".into(),
                RotationTarget::Dek(scope) => scope.to_string(),
            },
            previous_version: r.previous_version,
            new_version: r.new_version,
            records_rewritten: r.records_rewritten,
            retired_versions: r.retired_versions,
        }
    }
}

pub async fn rotate(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<Json<RotationView>, ApiError> {
    let body = read_body(body, super::JSON_BODY_LIMIT).await?;
    let body: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        parse_json(&body)?
    };
    let scope = body
        .scope
        .map(|s| {
            s.parse::<Scope>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let state = s.clone();
    let report = blocking(move || {
        let store = state.runtime.store();
        let target = scope.as_ref().map_or("kek".to_owned(), |s| s.to_string());
        audited(&state, &who, "keys.rotate", &target, || {
            Ok(match &scope {
                None => store.rotate_kek()?,
                Some(scope) => store.rotate_dek(scope)?,
            })
        })
    })
    .await?;
    Ok(Json(report.into()))
}
