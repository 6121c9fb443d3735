//! Secrets and key rotation over HTTP (environments and spaces:
//! `environments.rs`), and the helpers every handler uses.
//!
//! The secrets endpoints follow Flatfile's secrets API: `GET /v1/secrets`,
//! `POST /v1/secrets` (an upsert) and `DELETE /v1/secrets/{id}` all answer
//! `{"data": [...]}`, the scope's effective secrets (after the change, for
//! a write); `spaceId` alone implies its environment; `actorId` is
//! accepted. Secrets are addressed by an id naming their scope
//! (`env:prod:SLACK_TOKEN`, `space:team-a:SLACK_TOKEN`). Unlike Flatfile's,
//! no response ever carries a value: values are write-only. keyhole adds
//! an optional `topics` to the upsert (the topic globs listeners may read
//! the secret during; absent keeps the binding the secret had) and shows
//! each secret's binding in the answers. Store calls that write (and so
//! fsync) run on the blocking pool.
//!
//! The caller's scope is checked first (`auth::within`), before the target
//! is looked up; lists show only what the caller's scope reaches. Each
//! environment, space and secret can also be read alone by id (`GET
//! .../{id}`); deleting environments and spaces is `deletion.rs`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use keyhole_store::{Provenance, Scope, SecretStore, SecretValue, StoreError};

use super::Shared;
use super::audit::{audited, audited_with};
use super::auth::{within, within_scope};
use super::body::{ApiJson, ApiPath, parse_json, read_body};
use super::error::ApiError;
use crate::auth::{Permission, Principal};
use crate::requests::{Rotate, SecretQuery, SetSecret};
use crate::trail::secret_target;
use crate::views::{Data, RotationView, SecretView, SecretsView, parse_secret_id};

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

/// The environment a secrets request is about: `environmentId`, or the
/// environment of `spaceId` when only that is given (as Flatfile's API
/// allows). The caller's scope is checked before anything is looked up.
fn secrets_scope(
    who: &Principal,
    p: Permission,
    store: &SecretStore,
    environment: Option<String>,
    space: Option<String>,
) -> Result<(String, Option<String>), ApiError> {
    match (environment, space) {
        (Some(env), space) => {
            within(who, p, store, &env, space.as_deref())?;
            Ok((env, space))
        }
        (None, Some(space)) => {
            within_scope(who, p, store, &Scope::Space(space.clone()))?;
            match store.space(&space)? {
                Some(info) => Ok((info.environment, Some(space))),
                None => Err(StoreError::UnknownSpace(space).into()),
            }
        }
        (None, None) => Err(ApiError::bad_request(
            "environmentId or spaceId is required",
        )),
    }
}

/// The effective secrets of `environment` (and `space`), as the secrets
/// endpoints answer: Flatfile's `{"data": [...]}`.
pub(super) fn effective(
    store: &SecretStore,
    environment: &str,
    space: Option<&str>,
) -> Result<SecretsView, ApiError> {
    let effective = store.list_effective(environment, space)?;
    Ok(SecretsView {
        data: effective
            .iter()
            .map(|e| SecretView::new(&e.meta, environment, e.provenance))
            .collect(),
        revision: None,
    })
}

pub async fn list_secrets(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<SecretQuery>, QueryRejection>,
) -> Result<Json<SecretsView>, ApiError> {
    let q = query(q)?;
    let store = s.runtime.store();
    let (env, space) = secrets_scope(
        &who,
        Permission::SecretsRead,
        store,
        q.environment_id,
        q.space_id,
    )?;
    Ok(Json(effective(store, &env, space.as_deref())?))
}

pub async fn set_secret(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<SetSecret>,
) -> Result<Json<SecretsView>, ApiError> {
    // Into the store's zeroizing value at once.
    let value = SecretValue::new(std::mem::take(&mut *body.value));
    let expect = expected_version(&headers, body.expected_version)?;
    let store = s.runtime.store().clone();
    let state = s.clone();
    let view = blocking(move || {
        let (env, space) = secrets_scope(
            &who,
            Permission::SecretsWrite,
            &store,
            body.environment_id,
            body.space_id,
        )?;
        keyhole_store::validate_name(&body.name)?;
        // Checked before the write it goes with: a bad count writes nothing.
        if let Some(n) = body.keep_versions {
            keyhole_store::validate_versions_kept(n)?;
        }
        store.check_scope(&env, space.as_deref())?;
        let scope = match &space {
            Some(space) => Scope::Space(space.clone()),
            None => Scope::Environment(env.clone()),
        };
        let target = secret_target(&scope, &body.name);
        let topics = body.topics.as_deref();
        let detail: Vec<String> = [
            topics.map(|t| match t {
                [] => "topics *".to_owned(),
                t => format!("topics {}", t.join(", ")),
            }),
            expect.map(|v| format!("expected version {v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let detail = (!detail.is_empty()).then(|| detail.join("; "));
        let meta = audited_with(
            &state,
            &who,
            "secret.set",
            &target,
            detail.as_deref(),
            || Ok(store.write_secret(&scope, &body.name, &value, topics, expect)?),
        )?;
        // A second change with its own entry: if it fails, the value's
        // entry stays `ok` (it was stored) and the error says so, so a
        // client does not write the value again as if it were lost.
        if let Some(n) = body.keep_versions {
            audited_with(
                &state,
                &who,
                "secret.keep",
                &target,
                Some(&format!("keeps {n} versions")),
                || Ok(store.set_versions_kept(&scope, &body.name, Some(n))?),
            )
            .map_err(|e| ApiError {
                message: format!(
                    "the value was stored (version {}), but keepVersions was not applied: {}",
                    meta.version, e.message
                ),
                ..e
            })?;
        }
        written(&store, effective(&store, &env, space.as_deref())?)
    })
    .await?;
    Ok(Json(view))
}

/// The version a write expects: `expectedVersion`, or `If-Match: "N"`
/// (both: they must agree).
pub(super) fn expected_version(
    headers: &HeaderMap,
    body: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    let Some(header) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(body);
    };
    let text = header.to_str().unwrap_or_default().trim();
    let version: u64 = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .parse()
        .map_err(|_| ApiError::bad_request("If-Match must be a secret version, e.g. \"3\""))?;
    match body {
        Some(b) if b != version => Err(ApiError::bad_request(
            "If-Match and expectedVersion name different versions",
        )),
        _ => Ok(Some(version)),
    }
}

/// One secret's metadata (never a value), by id: the scope is checked
/// before the secret is looked up.
pub async fn get_secret(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
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
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SecretsView>, ApiError> {
    let (scope, name) = parse_secret_id(&id).ok_or_else(|| {
        ApiError::bad_request("secret id must be env:ENV:NAME or space:SPACE:NAME")
    })?;
    let store = s.runtime.store().clone();
    let state = s.clone();
    let view = blocking(move || {
        let (env, space) = secret_home(&who, Permission::SecretsWrite, &store, &scope)?;
        let target = secret_target(&scope, &name);
        audited(&state, &who, "secret.delete", &target, || {
            if store.delete_secret(&scope, &name)? {
                Ok(())
            } else {
                Err(StoreError::NotFound {
                    scope: scope.clone(),
                    name: name.clone(),
                }
                .into())
            }
        })?;
        written(&store, effective(&store, &env, space.as_deref())?)
    })
    .await?;
    Ok(Json(view))
}

/// The environment (and space) of a secret addressed by id in `scope`,
/// once the caller's reach is checked: an unknown scope is named as such,
/// not as a missing secret.
pub(super) fn secret_home(
    who: &Principal,
    p: Permission,
    store: &SecretStore,
    scope: &Scope,
) -> Result<(String, Option<String>), ApiError> {
    within_scope(who, p, store, scope)?;
    match scope {
        Scope::Environment(e) => {
            store.check_scope(e, None)?;
            Ok((e.clone(), None))
        }
        Scope::Space(sp) => match store.space(sp)? {
            Some(info) => Ok((info.environment, Some(sp.clone()))),
            None => Err(StoreError::UnknownSpace(sp.clone()).into()),
        },
    }
}

/// A write's answer: `view`, with the store revision the write is at (the
/// store's newest, which covers the write).
pub(super) fn written(store: &SecretStore, view: SecretsView) -> Result<SecretsView, ApiError> {
    Ok(SecretsView {
        revision: Some(store.revision()),
        ..view
    })
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
    if body.prepare && scope.is_some() {
        return Err(ApiError::bad_request(
            "prepare applies to the master key only; a data key rotates in one step",
        ));
    }
    let state = s.clone();
    let report = blocking(move || {
        let store = state.runtime.store();
        let target = scope.as_ref().map_or("kek".to_owned(), |s| s.to_string());
        let action = if body.prepare {
            "keys.prepare"
        } else {
            "keys.rotate"
        };
        audited(&state, &who, action, &target, || {
            Ok(match &scope {
                None if body.prepare => store.prepare_kek()?,
                None => store.rotate_kek()?,
                Some(scope) => store.rotate_dek(scope)?,
            })
        })
    })
    .await?;
    Ok(Json(report.into()))
}
