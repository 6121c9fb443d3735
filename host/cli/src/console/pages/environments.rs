//! Environments: the list, creating one, and an environment's Developer
//! Settings (its secrets, spaces and listeners).

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Done, at, done, updated_by};
use crate::auth::Permission;
use crate::client::{query, segment};
use crate::console::layout::{button_form, csrf, page};
use crate::console::params::{Params, Segments};
use crate::console::{ConsoleState, Posted, Visitor};
use crate::requests::{CreateEnvironment, CreateSpace, SecretQuery, SetSecret, SpaceQuery};
use crate::views::{EnvironmentView, ListenerView, SecretsView, SpaceView};

pub async fn list(State(c): State<ConsoleState>, v: Visitor, Params(q): Params<Done>) -> Response {
    let envs: Vec<EnvironmentView> = match c.get(&v.who, "/v1/environments").await {
        Ok(e) => e,
        Err(f) => return f.into_response(),
    };
    let body = html! {
        h1 { "Environments" }
        @if envs.is_empty() {
            p { "No environments yet." }
        } @else {
            table {
                caption.sr { "Environments" }
                thead { tr { th scope="col" { "Environment" } th scope="col" { "Created" } } }
                tbody {
                    @for e in &envs {
                        tr {
                            td { a href=(at("/environments", &e.id)) { (e.id) } }
                            td { (e.created_at) }
                        }
                    }
                }
            }
        }
        @if v.may(Permission::EnvironmentsWrite) {
            h2 { "Create an environment" }
            form.row method="post" action="/environments" {
                (csrf(&v))
                label for="env-id" { "Name" }
                input id="env-id" name="id" required maxlength="128" autocomplete="off";
                button type="submit" { "Create environment" }
            }
        }
    };
    page(&v, "Environments", "Environments", q.notice(), body)
}

#[derive(Deserialize)]
pub struct NewId {
    id: String,
}

pub async fn create(State(c): State<ConsoleState>, p: Posted<NewId>) -> Response {
    let body = CreateEnvironment {
        id: p.form.id.trim().to_owned(),
    };
    match c
        .post::<EnvironmentView>(&p.visitor.who, "/v1/environments", &body)
        .await
    {
        Ok(e) => done(&at("/environments", &e.id), "env-created").into_response(),
        Err(f) => f.into_response(),
    }
}

/// An environment's Developer Settings.
pub async fn settings(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(env): Segments<String>,
    Params(q): Params<Done>,
) -> Response {
    let e: EnvironmentView = match c.get(&v.who, &at("/v1/environments", &env)).await {
        Ok(e) => e,
        Err(f) => return f.into_response(),
    };
    let secrets: Option<SecretsView> = if v.may(Permission::SecretsRead) {
        let q = SecretQuery {
            environment_id: Some(env.clone()),
            ..SecretQuery::default()
        };
        let path = format!("/v1/secrets{}", query(&q).unwrap_or_default());
        match c.get(&v.who, &path).await {
            Ok(s) => Some(s),
            Err(f) => return f.into_response(),
        }
    } else {
        None
    };
    let spaces_path = format!(
        "/v1/spaces{}",
        query(&SpaceQuery {
            environment_id: Some(env.clone())
        })
        .unwrap_or_default()
    );
    let spaces: Vec<SpaceView> = c.get(&v.who, &spaces_path).await.unwrap_or_default();
    let listeners: Vec<ListenerView> = if v.may(Permission::ListenersRead) {
        c.get::<Vec<ListenerView>>(&v.who, "/v1/listeners")
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.environment_id == env)
            .collect()
    } else {
        Vec::new()
    };
    let by = updated_by(&c, &v).await;
    let base = at("/environments", &e.id);
    let body = html! {
        p.crumbs { a href="/environments" { "Environments" } " / " (e.id) }
        h1 { "Developer Settings: " (e.id) }
        section aria-labelledby="secrets-h" {
            h2 id="secrets-h" { "Secrets" }
            p.hint { "Shared with every space in this environment; a space may override any of them. Values are write-only: they are never shown again." }
            @match &secrets {
                None => p { "Your token may not list secrets." },
                Some(s) if s.data.is_empty() => p { "No secrets yet." },
                Some(s) => table {
                    caption.sr { "Secrets of " (e.id) }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Updated" }
                        th scope="col" { "Updated by" } th scope="col" { "Topics" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for s in &s.data {
                            tr {
                                td { code { (s.name) } }
                                td { (s.version) }
                                td { (s.updated_at) }
                                td { (by.get(&format!("env:{}/{}", e.id, s.name)).map_or("—", String::as_str)) }
                                td { (s.topics.join(", ")) }
                                td {
                                    a href=(super::versions::history_path(&s.id)) { "History" span.sr { " of " (s.name) } }
                                    " "
                                    @if v.may(Permission::SecretsWrite) {
                                        (button_form(&v, &format!("{base}/secrets/{}/delete", segment(&s.name)), &format!("Delete {}", s.name), "danger"))
                                    }
                                }
                            }
                        }
                    }
                },
            }
            @if v.may(Permission::SecretsWrite) {
                h3 { "Set a secret" }
                p.hint { "Setting an existing name replaces its value." }
                form.stack method="post" action=(format!("{base}/secrets")) {
                    (csrf(&v))
                    label for="secret-name" { "Name" }
                    input id="secret-name" name="name" required maxlength="256" autocomplete="off";
                    label for="secret-value" { "Value" }
                    input id="secret-value" name="value" type="password" required autocomplete="new-password";
                    label for="secret-topics" { "Topics (optional, comma-separated globs; empty keeps the current binding)" }
                    input id="secret-topics" name="topics" autocomplete="off";
                    button type="submit" { "Save secret" }
                }
            }
        }
        section aria-labelledby="spaces-h" {
            h2 id="spaces-h" { "Spaces" }
            @if spaces.is_empty() {
                p { "No spaces yet." }
            } @else {
                ul {
                    @for s in &spaces {
                        li { a href=(format!("{}/secrets", at("/spaces", &s.id))) { (s.id) } }
                    }
                }
            }
            @if v.may(Permission::ScopesWrite) {
                form.row method="post" action=(format!("{base}/spaces")) {
                    (csrf(&v))
                    label for="space-id" { "New space" }
                    input id="space-id" name="id" required maxlength="128" autocomplete="off";
                    button type="submit" { "Create space" }
                }
            }
        }
        section aria-labelledby="listeners-h" {
            h2 id="listeners-h" { "Listeners" }
            @if listeners.is_empty() {
                p { "No listeners in this environment." }
            } @else {
                ul {
                    @for l in &listeners {
                        li { a href=(at("/listeners", &l.name)) { (l.name) } " — topics " (l.topics.join(", ")) }
                    }
                }
            }
        }
    };
    page(
        &v,
        &format!("Developer Settings: {}", e.id),
        "Environments",
        q.notice(),
        body,
    )
}

#[derive(Deserialize)]
pub struct SecretForm {
    name: String,
    value: Zeroizing<String>,
    #[serde(default)]
    topics: String,
}

/// Topic globs typed as a comma-separated list: `None` when empty (the
/// binding stays).
pub fn topics(text: &str) -> Option<Vec<String>> {
    let t: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    (!t.is_empty()).then_some(t)
}

pub async fn set_secret(
    State(c): State<ConsoleState>,
    Segments(env): Segments<String>,
    p: Posted<SecretForm>,
) -> Response {
    let body = SetSecret {
        name: p.form.name.trim().to_owned(),
        value: p.form.value,
        environment_id: Some(env.clone()),
        space_id: None,
        actor_id: None,
        topics: topics(&p.form.topics),
        expected_version: None,
        keep_versions: None,
    };
    match c
        .post::<SecretsView>(&p.visitor.who, "/v1/secrets", &body)
        .await
    {
        Ok(_) => done(&at("/environments", &env), "secret-saved").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn delete_secret(
    State(c): State<ConsoleState>,
    Segments((env, name)): Segments<(String, String)>,
    p: Posted<crate::console::signin::Empty>,
) -> Response {
    let id = format!("env:{env}:{name}");
    let path = at("/v1/secrets", &id);
    match c.act(&p.visitor.who, Method::DELETE, &path).await {
        Ok(()) => done(&super::versions::history_path(&id), "secret-deleted").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn create_space(
    State(c): State<ConsoleState>,
    Segments(env): Segments<String>,
    p: Posted<NewId>,
) -> Response {
    let body = CreateSpace {
        id: p.form.id.trim().to_owned(),
        environment_id: env,
    };
    match c
        .post::<SpaceView>(&p.visitor.who, "/v1/spaces", &body)
        .await
    {
        Ok(s) => done(
            &format!("{}/secrets", at("/spaces", &s.id)),
            "space-created",
        )
        .into_response(),
        Err(f) => f.into_response(),
    }
}
