//! Grants across a redeploy, as `POST /v1/listeners` decides them.
//!
//! A deployment's grants (extra scopes, declared secrets, HTTP origins,
//! injected secrets: `DeploySpec::has_grants`) hold for the module they were given to. So a
//! deploy gets exactly the grants its request states, and to carry the
//! previous deployment's over to a new module the request says
//! `keepGrants: true` (`keyhole deploy --keep-grants`). This file decides,
//! before anything changes:
//!
//! - whether keeping is possible (a previous deployment, and no grants of
//!   the request's own: 400 otherwise), and allowed: a scoped token may
//!   keep only grants it could give itself, as for grants it states;
//! - what the deploy's audit entry adds (`kept grants of sha256:OLD for
//!   sha256:NEW`, or that they were not carried over);
//! - the `notice` of the answer when grants are dropped, saying how to
//!   keep them.

use keyhole_runtime::{DeploySpec, Deployment};
use keyhole_store::{Scope, SecretStore};

use super::auth::{within, within_scope};
use super::error::ApiError;
use crate::auth::{Permission, Principal};

/// What a deploy does with the previous deployment's grants.
pub(super) struct Redeploy {
    /// Keep the grants of this deployment (the one now stored).
    pub keep: Option<Deployment>,
    /// For the deploy's audit entry.
    pub detail: Option<String>,
    /// For the deploy's answer.
    pub notice: Option<String>,
}

/// The first 16 hex digits of a sha256, as messages show it.
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Decides what a deploy of `spec` (module sha256 `new_hash`) does with
/// the grants of `previous`, the deployment of the same name, if any.
pub(super) fn plan(
    who: &Principal,
    store: &SecretStore,
    spec: &DeploySpec,
    keep: bool,
    previous: Option<Deployment>,
    new_hash: &str,
) -> Result<Redeploy, ApiError> {
    let name = &spec.name;
    if keep {
        let Some(previous) = previous else {
            return Err(ApiError::bad_request(format!(
                "keepGrants: no listener named {name} is deployed, so there are no grants to keep; \
                 state the grants this deployment needs instead"
            )));
        };
        if spec.has_grants() {
            return Err(ApiError::bad_request(
                "keepGrants carries over every grant of the previous deployment: leave out \
                 grants, secrets, allowHttp and inject, or state them all without keepGrants",
            ));
        }
        // Kept grants are given anew: only as far as the caller could give
        // them itself.
        let p = Permission::ListenersDeploy;
        for env in &previous.spec.grants.environments {
            within(who, p, store, env, None)?;
        }
        for space in &previous.spec.grants.spaces {
            within_scope(who, p, store, &Scope::Space(space.clone()))?;
        }
        let detail = format!(
            "kept grants of sha256:{} for sha256:{}",
            short(&previous.grants_sha256),
            short(new_hash)
        );
        return Ok(Redeploy {
            keep: Some(previous),
            detail: Some(detail),
            notice: None,
        });
    }
    let dropped = previous.filter(|p| p.spec.has_grants() && !spec.has_grants());
    let Some(previous) = dropped else {
        return Ok(Redeploy {
            keep: None,
            detail: None,
            notice: None,
        });
    };
    let (old, new) = (short(&previous.module_hash), short(new_hash));
    // The same module redeployed without its grants loses them too (a
    // deploy states the whole deployment), but not for being other code.
    let whose = if previous.module_hash == new_hash {
        "this deploy states none, so the listener has none".to_owned()
    } else {
        format!("they were not carried over to module sha256:{new}, which has none")
    };
    let notice = format!(
        "the previous deployment of {name} (module sha256:{old}) had grants ({}); {whose}. \
         To keep them, deploy again with --keep-grants (API: \"keepGrants\": true), or state \
         them",
        previous.spec.grants_text()
    );
    Ok(Redeploy {
        keep: None,
        detail: Some(format!(
            "grants of sha256:{old} not carried over to sha256:{new}"
        )),
        notice: Some(notice),
    })
}
