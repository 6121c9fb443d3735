//! Environments, spaces, secrets and key rotation over HTTP.
//!
//! The secrets endpoints follow the seed API: secrets are addressed by an id
//! naming their scope (`env:prod:SLACK_TOKEN`, `space:team-a:SLACK_TOKEN`),
//! writes are upserts, and no response ever carries a value. Store calls
//! that write (and so fsync) run on the blocking pool.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use keyhole_store::{Provenance, RotationReport, RotationTarget, Scope, SecretValue, StoreError};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::error::{ApiError, ApiJson, parse_json, read_body};
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
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let envs = s.runtime.store().list_environments()?;
    Ok(Json(
        envs.into_iter()
            .map(|e| EnvironmentView {
                id: e.id,
                created_at: rfc3339(e.created_at_ms),
            })
            .collect(),
    ))
}

pub async fn create_environment(
    State(s): State<Shared>,
    ApiJson(body): ApiJson<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>), ApiError> {
    let store = s.runtime.store().clone();
    let e = blocking(move || Ok(store.create_environment(&body.id)?)).await?;
    let view = EnvironmentView {
        id: e.id,
        created_at: rfc3339(e.created_at_ms),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list_spaces(
    State(s): State<Shared>,
    q: Result<Query<SpaceQuery>, QueryRejection>,
) -> Result<Json<Vec<SpaceView>>, ApiError> {
    let q = query(q)?;
    let spaces = s.runtime.store().list_spaces(q.environment_id.as_deref())?;
    Ok(Json(spaces.into_iter().map(space_view).collect()))
}

fn space_view(s: keyhole_store::SpaceInfo) -> SpaceView {
    SpaceView {
        id: s.id,
        environment_id: s.environment,
        created_at: rfc3339(s.created_at_ms),
    }
}

pub async fn create_space(
    State(s): State<Shared>,
    ApiJson(body): ApiJson<CreateSpace>,
) -> Result<(StatusCode, Json<SpaceView>), ApiError> {
    let store = s.runtime.store().clone();
    let info = blocking(move || Ok(store.create_space(&body.id, &body.environment_id)?)).await?;
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
    q: Result<Query<SecretQuery>, QueryRejection>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let q = query(q)?;
    let env = q
        .environment_id
        .ok_or_else(|| ApiError::bad_request("query parameter environmentId is required"))?;
    let effective = s
        .runtime
        .store()
        .list_effective(&env, q.space_id.as_deref())?;
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
    ApiJson(mut body): ApiJson<SetSecret>,
) -> Result<Json<SecretView>, ApiError> {
    // Into a zeroizing buffer at once; the request's own bytes are gone
    // when the extractor returns.
    let value = SecretValue::new(std::mem::take(&mut body.value));
    let store = s.runtime.store().clone();
    let view = blocking(move || {
        keyhole_store::validate_name(&body.name)?;
        store.check_scope(&body.environment_id, body.space_id.as_deref())?;
        let (scope, provenance) = match &body.space_id {
            Some(space) => (Scope::Space(space.clone()), Provenance::SpaceOverride),
            None => (
                Scope::Environment(body.environment_id.clone()),
                Provenance::Environment,
            ),
        };
        let meta = store.set_secret(&scope, &body.name, &value)?;
        Ok(SecretView::new(&meta, &body.environment_id, provenance))
    })
    .await?;
    Ok(Json(view))
}

pub async fn delete_secret(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (scope, name) = parse_secret_id(&id).ok_or_else(|| {
        ApiError::bad_request("secret id must be env:ENV:NAME or space:SPACE:NAME")
    })?;
    let store = s.runtime.store().clone();
    blocking(move || {
        if store.delete_secret(&scope, &name)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(StoreError::NotFound { scope, name }.into())
        }
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

pub async fn rotate(State(s): State<Shared>, body: Body) -> Result<Json<RotationView>, ApiError> {
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
    let store = s.runtime.store().clone();
    let report = blocking(move || {
        Ok(match &scope {
            None => store.rotate_kek()?,
            Some(scope) => store.rotate_dek(scope)?,
        })
    })
    .await?;
    Ok(Json(report.into()))
}
