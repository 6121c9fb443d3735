//! A secret's versions: its history (never values), with rollback,
//! undelete and destroy, for one secret addressed by its id
//! (`env:prod:NAME`, `space:team-a:NAME`), as the API addresses it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_store::{Scope, VersionState};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::{Done, at, done};
use crate::auth::Permission;
use crate::console::layout::{self, button_form, csrf, page};
use crate::console::params::{Params, Segments};
use crate::console::signin::Empty;
use crate::console::{ConsoleState, Posted, Visitor};
use crate::views::{Data, DestroyedView, SecretsView, VersionView, parse_secret_id};

/// `/secrets/ID/history`.
pub fn history_path(id: &str) -> String {
    format!("{}/history", at("/secrets", id))
}

fn api(id: &str, what: &str) -> String {
    format!("{}/{what}", at("/v1/secrets", id))
}

pub async fn history(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(id): Segments<String>,
    Params(q): Params<Done>,
) -> Response {
    // The API checks the id (a 400 in the user's terms if it is not one).
    let versions: Data<Vec<VersionView>> = match c.get(&v.who, &api(&id, "history")).await {
        Ok(h) => h,
        Err(f) => return f.into_response(),
    };
    let Some((scope, name)) = parse_secret_id(&id) else {
        return crate::console::call::Failure::internal("the API took an id it cannot have")
            .into_response();
    };
    let (back, place) = match &scope {
        Scope::Environment(e) => (at("/environments", e), format!("environment {e}")),
        Scope::Space(s) => (
            format!("{}/secrets", at("/spaces", s)),
            format!("space {s}"),
        ),
    };
    let write = v.may(Permission::SecretsWrite);
    let base = at("/secrets", &id);
    let body = html! {
        p.crumbs { a href=(back) { "Back to " (place) } }
        h1 { "Versions of " code { (name) } }
        p.hint { "Each write keeps the version it replaces. Values are never shown: roll back to bring an older value back as a new version." }
        table {
            caption.sr { "Versions of " (name) " in " (place) }
            thead { tr {
                th scope="col" { "Version" } th scope="col" { "State" } th scope="col" { "Created" }
                th scope="col" { "Updated" } th scope="col" { "By" } th scope="col" { "Actions" }
            } }
            tbody {
                @for ver in versions.data.iter().rev() {
                    tr {
                        td { (ver.version) }
                        td { (state_label(ver.state)) }
                        td { (ver.created_at) }
                        td { (ver.updated_at) }
                        td { (ver.by.as_deref().unwrap_or("—")) }
                        td {
                            @if write && ver.state == VersionState::Kept {
                                form.inline method="post" action=(format!("{base}/rollback")) {
                                    (csrf(&v))
                                    input type="hidden" name="version" value=(ver.version);
                                    button type="submit" class="secondary" { "Roll back to version " (ver.version) }
                                }
                            }
                            @if write && ver.state == VersionState::Deleted {
                                (button_form(&v, &format!("{base}/undelete"), "Undelete", "secondary"))
                            }
                            @if write && matches!(ver.state, VersionState::Kept | VersionState::Deleted) {
                                form.inline method="post" action=(format!("{base}/destroy")) {
                                    (csrf(&v))
                                    input type="hidden" name="version" value=(ver.version);
                                    button type="submit" class="danger" { "Destroy version " (ver.version) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if write && versions.data.iter().any(|ver| ver.state != VersionState::Destroyed) {
            h2 { "Destroy every version" }
            p.hint { "Deletes the secret and erases every kept value for good; the scope's data key is rotated. Rotate the master key afterwards so that no old copy of it opens what the disk may still hold." }
            form.inline method="post" action=(format!("{base}/destroy")) {
                (csrf(&v))
                input type="hidden" name="all" value="1";
                button type="submit" class="danger" { "Destroy every version of " (name) }
            }
        }
    };
    page(
        &v,
        &format!("Versions of {name}"),
        "Environments",
        q.notice(),
        body,
    )
}

fn state_label(s: VersionState) -> &'static str {
    match s {
        VersionState::Current => "Current",
        VersionState::Kept => "Kept",
        VersionState::Deleted => "Deleted (can be undeleted)",
        VersionState::Destroyed => "Destroyed",
    }
}

#[derive(Deserialize)]
pub struct VersionForm {
    version: u64,
}

pub async fn rollback(
    State(c): State<ConsoleState>,
    Segments(id): Segments<String>,
    p: Posted<VersionForm>,
) -> Response {
    let body = json!({ "version": p.form.version });
    match c
        .post::<SecretsView>(&p.visitor.who, &api(&id, "rollback"), &body)
        .await
    {
        Ok(_) => done(&history_path(&id), "rolled-back").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn undelete(
    State(c): State<ConsoleState>,
    Segments(id): Segments<String>,
    p: Posted<Empty>,
) -> Response {
    match c
        .post::<SecretsView>(&p.visitor.who, &api(&id, "undelete"), &json!({}))
        .await
    {
        Ok(_) => done(&history_path(&id), "undeleted").into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Deserialize)]
pub struct DestroyForm {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    all: Option<String>,
}

pub async fn destroy(
    State(c): State<ConsoleState>,
    Segments(id): Segments<String>,
    p: Posted<DestroyForm>,
) -> Response {
    // Only what the page's two forms send: destroying is for good, so a
    // form that is neither is refused, never read as "every version".
    let body = match (p.form.all.as_deref(), p.form.version) {
        (Some("1"), None) => json!({ "all": true }),
        (None, Some(v)) => json!({ "versions": [v] }),
        _ => {
            return layout::error_page(
                StatusCode::BAD_REQUEST,
                "the form is not one of this page's (it destroys one version, or every version). \
                 Reload the page and submit the form again.",
            );
        }
    };
    match c
        .post::<DestroyedView>(&p.visitor.who, &api(&id, "destroy"), &body)
        .await
    {
        Ok(_) => done(&history_path(&id), "destroyed").into_response(),
        Err(f) => f.into_response(),
    }
}
