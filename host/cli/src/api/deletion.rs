//! Deleting environments and spaces over HTTP: `DELETE
//! /v1/environments/{id}` and `DELETE /v1/spaces/{id}`, with `force=true`
//! to take what the scope holds with it.
//!
//! Kept apart from `scopes.rs` because a deletion is the one scope
//! operation that reaches into everything else: it is refused (409) while
//! the scope holds secrets, spaces or listeners unless forced, and then
//! undeploys listeners and destroys data keys (`keyhole_runtime`'s
//! `lifecycle.rs`, `keyhole_store`'s `deletion/`). Its audit entry says
//! whether it was forced and what the scope held when it was recorded.
//!
//! Who may: an environment only an unscoped `environments:write` token
//! (admin); a space a `scopes:write` token that reaches the space's
//! environment. A token limited to one space may not delete it (as it may
//! not create one): a space is part of its environment. As with every
//! scoped call, the scope is checked before the space is looked up.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use keyhole_runtime::ScopeHoldings;
use keyhole_store::Scope;
use serde::Deserialize;

use super::Shared;
use super::audit::audited_detailed;
use super::auth::{denied_item, require, within};
use super::body::ApiPath;
use super::error::ApiError;
use super::scopes::{blocking, query};
use crate::auth::{Permission, Principal, TokenScope};
use crate::views::DeletionView;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Take its secrets, spaces and listeners with it.
    #[serde(default)]
    force: bool,
}

pub async fn delete_environment(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<DeletionView>, ApiError> {
    let q = query(q)?;
    // `environments:write` is global: the route's check has let only
    // unscoped admin tokens through.
    let scope = Scope::Environment(id);
    delete(s, who, scope, "environment.delete", q.force).await
}

pub async fn delete_space(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<DeletionView>, ApiError> {
    let q = query(q)?;
    let p = Permission::ScopesWrite;
    let store = s.runtime.store().clone();
    let check = {
        let (who, id) = (who.clone(), id.clone());
        move || match &who.scope {
            TokenScope::All => require(&who, p),
            TokenScope::Environment(env) => within(&who, p, &store, env, Some(&id)),
            TokenScope::Space { .. } => {
                let what = format!("space {}", id.chars().take(64).collect::<String>());
                Err(denied_item(&who, p, &what))
            }
        }
    };
    blocking(check).await?;
    delete(s, who, Scope::Space(id), "space.delete", q.force).await
}

/// Records and runs the deletion of `scope` on the blocking pool.
async fn delete(
    s: Shared,
    who: Principal,
    scope: Scope,
    action: &'static str,
    force: bool,
) -> Result<Json<DeletionView>, ApiError> {
    let done = blocking(move || {
        let runtime = &s.runtime;
        keyhole_store::validate_id(scope.id())?;
        let holdings = runtime.scope_holdings(&scope);
        let detail = detail(force, holdings.as_ref().ok());
        let target = scope.to_string();
        audited_detailed(&s, &who, (action, &target, &detail), || {
            holdings?;
            Ok(runtime.delete_scope(&scope, force)?)
        })
    })
    .await?;
    Ok(Json(done.into()))
}

/// `forced; holds 3 secrets, 2 spaces and 1 listener (spaces: a, b;
/// listeners: hello)`. The trail caps it.
fn detail(force: bool, holdings: Option<&ScopeHoldings>) -> String {
    let forced = if force { "forced" } else { "not forced" };
    let Some(h) = holdings else {
        return forced.to_owned();
    };
    let mut names = Vec::new();
    if !h.spaces.is_empty() {
        names.push(format!("spaces: {}", h.spaces.join(", ")));
    }
    if !h.listeners.is_empty() {
        names.push(format!("listeners: {}", h.listeners.join(", ")));
    }
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join("; "))
    };
    format!("{forced}; holds {h}{names}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_says_forced_and_what_goes() {
        let h = ScopeHoldings {
            secrets: 3,
            spaces: vec!["a".into(), "b".into()],
            listeners: vec!["hello".into()],
        };
        assert_eq!(
            detail(true, Some(&h)),
            "forced; holds 3 secrets, 2 spaces and 1 listener (spaces: a, b; listeners: hello)"
        );
        assert_eq!(
            detail(false, Some(&ScopeHoldings::default())),
            "not forced; holds nothing"
        );
        assert_eq!(detail(false, None), "not forced");
    }
}
