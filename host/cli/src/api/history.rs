//! A secret's versions over HTTP: its history, rollback, undelete and
//! destroy (`keyhole_store`'s `history.rs`). Secrets are addressed by id as
//! in `scopes.rs` (`env:prod:SLACK_TOKEN`); the caller's scope is checked
//! before anything is looked up, and every change is audited. No answer
//! carries a value.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use keyhole_audit::{AuditQuery, Entry};
use keyhole_store::{Scope, SecretStore, VersionInfo, VersionState};

use super::Shared;
use super::audit::{audited, audited_with};
use super::body::{ApiJson, ApiPath};
use super::error::ApiError;
use super::scopes::{blocking, effective, expected_version, secret_home, written};
use crate::auth::{Permission, Principal};
use crate::requests::{Destroy, Rollback, SecretsConfig};
use crate::trail::secret_target;
use crate::views::{Data, DestroyedView, SecretsView, VersionView, parse_secret_id, rfc3339};

/// Most audit entries (the newest) read to say who wrote each version.
const AUTHORS_SCAN: usize = 10_000;

fn secret(id: &str) -> Result<(Scope, String), ApiError> {
    parse_secret_id(id)
        .ok_or_else(|| ApiError::bad_request("secret id must be env:ENV:NAME or space:SPACE:NAME"))
}

/// `GET /v1/secrets/{id}/history`: every version still known, oldest
/// first, with who wrote each when the caller may read the audit log.
pub async fn history(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Data<Vec<VersionView>>>, ApiError> {
    let (scope, name) = secret(&id)?;
    let state = s.clone();
    let views = blocking(move || {
        let store = state.runtime.store();
        secret_home(&who, Permission::SecretsRead, store, &scope)?;
        let versions = store.secret_history(&scope, &name)?;
        let authors = match state.runtime.audit() {
            Some(log) if super::require(&who, Permission::AuditRead).is_ok() => {
                // The newest entries: a version older than they reach has
                // no author shown rather than a wrong one.
                let query = AuditQuery {
                    target: Some(secret_target(&scope, &name)),
                    limit: AUTHORS_SCAN,
                    ..AuditQuery::default()
                };
                log.query(&query)
                    .map(|mut r| {
                        r.reverse();
                        writes(&r)
                    })
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(versions.iter().map(|v| view(v, &authors)).collect())
    })
    .await?;
    Ok(Json(Data { data: views }))
}

/// Successful changes to one secret from its audit entries, oldest first:
/// (time, actor, destroy?).
fn writes(records: &[keyhole_audit::AuditRecord]) -> Vec<(u64, String, bool)> {
    applied(records)
        .into_iter()
        .map(|c| (c.time_ms, c.actor, c.action == "secret.destroy"))
        .collect()
}

/// An admin change the audit log says was applied.
pub(crate) struct Applied {
    pub time_ms: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
}

/// The admin changes among `records` (oldest first) that were applied,
/// oldest first. An `ok` entry is written before its change and a
/// `failed` one after a change that failed, which cancels it.
pub(crate) fn applied(records: &[keyhole_audit::AuditRecord]) -> Vec<Applied> {
    let mut out: Vec<Applied> = Vec::new();
    for r in records {
        let Entry::Admin {
            time_ms,
            actor,
            action,
            target,
            outcome,
            ..
        } = &r.entry
        else {
            continue;
        };
        match outcome.as_str() {
            "ok" => out.push(Applied {
                time_ms: *time_ms,
                actor: actor.clone(),
                action: action.clone(),
                target: target.clone(),
            }),
            "failed" => {
                if let Some(i) = out
                    .iter()
                    .rposition(|c| c.actor == *actor && c.action == *action && c.target == *target)
                {
                    out.remove(i);
                }
            }
            _ => {}
        }
    }
    out
}

/// A version's view; its author is the newest change recorded at or
/// before its time (its entry is written just before the change).
fn view(v: &VersionInfo, authors: &[(u64, String, bool)]) -> VersionView {
    let destroyed = v.state == VersionState::Destroyed;
    let by = authors
        .iter()
        .rev()
        .find(|(t, _, d)| *t <= v.updated_at_ms && *d == destroyed)
        .map(|(_, a, _)| a.clone());
    VersionView {
        version: v.version,
        state: v.state,
        created_at: rfc3339(v.created_at_ms),
        updated_at: rfc3339(v.updated_at_ms),
        by,
    }
}

/// `POST /v1/secrets/{id}/rollback`: a new version with an older one's
/// value.
pub async fn rollback(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Rollback>,
) -> Result<Json<SecretsView>, ApiError> {
    let (scope, name) = secret(&id)?;
    let expect = expected_version(&headers, body.expected_version)?;
    let state = s.clone();
    let view = blocking(move || {
        let store = state.runtime.store();
        let (env, space) = secret_home(&who, Permission::SecretsWrite, store, &scope)?;
        let detail = format!("to the value of version {}", body.version);
        audited_with(
            &state,
            &who,
            "secret.rollback",
            &secret_target(&scope, &name),
            Some(&detail),
            || Ok(store.rollback_secret(&scope, &name, body.version, expect)?),
        )?;
        after_write(store, &env, space.as_deref())
    })
    .await?;
    Ok(Json(view))
}

/// `POST /v1/secrets/{id}/undelete`.
pub async fn undelete(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SecretsView>, ApiError> {
    let (scope, name) = secret(&id)?;
    let state = s.clone();
    let view = blocking(move || {
        let store = state.runtime.store();
        let (env, space) = secret_home(&who, Permission::SecretsWrite, store, &scope)?;
        audited(
            &state,
            &who,
            "secret.undelete",
            &secret_target(&scope, &name),
            || Ok(store.undelete_secret(&scope, &name)?),
        )?;
        after_write(store, &env, space.as_deref())
    })
    .await?;
    Ok(Json(view))
}

/// `POST /v1/secrets/{id}/destroy`: `{"versions": [..]}` or `{"all": true}`.
pub async fn destroy(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Destroy>,
) -> Result<Json<DestroyedView>, ApiError> {
    let (scope, name) = secret(&id)?;
    if body.all != body.versions.is_empty() {
        return Err(ApiError::bad_request(
            "give either versions (a list of version numbers) or all: true",
        ));
    }
    let state = s.clone();
    let view = blocking(move || {
        let store = state.runtime.store();
        secret_home(&who, Permission::SecretsWrite, store, &scope)?;
        let versions = (!body.all).then_some(body.versions.as_slice());
        let detail = match versions {
            None => "all versions".to_owned(),
            Some(v) => format!(
                "versions {}",
                v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        let destroyed = audited_with(
            &state,
            &who,
            "secret.destroy",
            &secret_target(&scope, &name),
            Some(&detail),
            || Ok(store.destroy_versions(&scope, &name, versions)?),
        )?;
        Ok(DestroyedView {
            destroyed,
            revision: Some(store.revision()),
        })
    })
    .await?;
    Ok(Json(view))
}

fn after_write(
    store: &SecretStore,
    env: &str,
    space: Option<&str>,
) -> Result<SecretsView, ApiError> {
    written(store, effective(store, env, space)?)
}

/// `GET /v1/secrets/config`.
pub async fn config(State(s): State<Shared>) -> Result<Json<SecretsConfig>, ApiError> {
    let state = s.clone();
    let versions_kept = blocking(move || Ok(state.runtime.store().history_keep()?)).await?;
    Ok(Json(SecretsConfig { versions_kept }))
}

/// `POST /v1/secrets/config`: store-wide, so for unscoped admins only
/// (the route needs `environments:write`).
pub async fn set_config(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<SecretsConfig>,
) -> Result<Json<SecretsConfig>, ApiError> {
    let state = s.clone();
    let n = body.versions_kept;
    blocking(move || {
        let detail = format!("versions kept {n}");
        audited_with(
            &state,
            &who,
            "secrets.config",
            "secrets",
            Some(&detail),
            || Ok(state.runtime.store().set_history_keep(n)?),
        )
    })
    .await?;
    Ok(Json(SecretsConfig { versions_kept: n }))
}
