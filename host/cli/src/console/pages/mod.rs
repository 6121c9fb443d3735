//! The console's pages, one file per area. Each handler reads through the
//! API as the visitor (`super::call`) and renders with `super::layout`;
//! each form posts to a handler that calls the API, then redirects back
//! with a fixed notice (`Done`), or shows the API's refusal.

mod admin;
mod environments;
mod listeners;
mod runs;
mod spaces;
mod versions;

use std::collections::HashMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Console, ConsoleState, Visitor};
use crate::auth::Permission;
use crate::client::segment;

/// The pages' routes; a deploy upload may be `upload_limit` bytes.
pub fn routes(upload_limit: usize) -> Router<ConsoleState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/environments",
            get(environments::list).post(environments::create),
        )
        .route("/environments/{env}", get(environments::settings))
        .route(
            "/environments/{env}/secrets",
            post(environments::set_secret),
        )
        .route(
            "/environments/{env}/secrets/{name}/delete",
            post(environments::delete_secret),
        )
        .route(
            "/environments/{env}/spaces",
            post(environments::create_space),
        )
        .route("/spaces/{space}", get(spaces::secrets))
        .route(
            "/spaces/{space}/secrets",
            get(spaces::secrets).post(spaces::override_secret),
        )
        .route(
            "/spaces/{space}/secrets/{name}/revert",
            post(spaces::revert),
        )
        .route("/spaces/{space}/listeners", get(spaces::listeners))
        .route("/secrets/{id}/history", get(versions::history))
        .route("/secrets/{id}/rollback", post(versions::rollback))
        .route("/secrets/{id}/undelete", post(versions::undelete))
        .route("/secrets/{id}/destroy", post(versions::destroy))
        .route(
            "/listeners",
            get(listeners::list)
                .post(listeners::deploy)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/listeners/{name}", get(listeners::detail))
        .route("/listeners/{name}/delete", post(listeners::remove))
        .route("/listeners/{name}/test", post(listeners::test_event))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::detail))
        .route("/audit", get(admin::audit))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{name}/revoke", post(admin::revoke_token))
}

/// `/`: the first area the visitor's role may see.
async fn home(v: Visitor) -> Redirect {
    let first = crate::console::layout::AREAS
        .iter()
        .find(|(_, _, p)| v.may(*p))
        .map_or("/environments", |(_, path, _)| path);
    Redirect::to(first)
}

/// `?done=KEY` after an action: the notice to show. Fixed texts only, so
/// nothing a visitor typed is echoed back from the URL.
#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    done: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<&'static str> {
        Some(match self.done.as_deref()? {
            "env-created" => "Environment created.",
            "space-created" => "Space created.",
            "secret-saved" => "Secret saved. Its value is stored encrypted and is not shown again.",
            "secret-deleted" => {
                "Secret deleted. Its last value is kept below: undelete it, or destroy it for good."
            }
            "rolled-back" => "Rolled back: a new version holds the older value.",
            "undeleted" => "Secret undeleted: its last version is current again.",
            "destroyed" => {
                "Destroyed for good. Rotate the master key too, so that no old copy of it opens what the disk may still hold."
            }
            "override-saved" => {
                "Override saved. Its value is stored encrypted and is not shown again."
            }
            "reverted" => "Override removed: the space now uses the environment's value.",
            "deployed" => "Listener deployed.",
            "deployed-grants-dropped" => {
                "Listener deployed, without the grants and injected secrets of the deployment it replaced: deploy again with \"keep the grants\" checked to keep them."
            }
            "removed" => "Listener removed.",
            "revoked" => "Token revoked.",
            _ => return None,
        })
    }
}

/// `path?done=key`.
fn done(path: &str, key: &str) -> Redirect {
    Redirect::to(&format!("{path}?done={key}"))
}

/// `/environments/ENV` etc., with the segment encoded.
fn at(prefix: &str, id: &str) -> String {
    format!("{prefix}/{}", segment(id))
}

/// Who made each secret's current version (audit target `env:E/NAME` or
/// `space:S/NAME`: a set, rollback or undelete the log says was applied),
/// from the newest admin entries, for a visitor who may read the audit
/// log; empty otherwise.
async fn updated_by(c: &Console, v: &Visitor) -> HashMap<String, String> {
    let mut by = HashMap::new();
    if !v.may(Permission::AuditRead) {
        return by;
    }
    // Every outcome: a `failed` entry cancels the `ok` one before it.
    let Ok(mut page) = c
        .get::<crate::views::AuditPage>(&v.who, "/v1/audit?limit=2000")
        .await
    else {
        return by;
    };
    page.entries.reverse();
    for change in crate::api::applied(&page.entries).into_iter().rev() {
        if ["secret.set", "secret.rollback", "secret.undelete"].contains(&change.action.as_str()) {
            by.entry(change.target).or_insert(change.actor);
        }
    }
    by
}
