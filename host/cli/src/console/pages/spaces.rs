//! A space: its left navigation (Secrets, Listeners, Runs) and its
//! Secrets page, where every effective secret is marked inherited or
//! overridden, an inherited one can be overridden and an override reverted.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Done, at, done, updated_by};
use crate::auth::{Permission, Reach};
use crate::client::{query, segment};
use crate::console::layout::{button_form, csrf, page};
use crate::console::params::{Params, Segments};
use crate::console::{ConsoleState, Posted, Visitor};
use crate::requests::{SecretQuery, SetSecret};
use crate::views::{ListenerView, SecretsView, SpaceView};
use keyhole_store::Provenance;

/// The space's frame: breadcrumbs and the left navigation.
fn frame(v: &Visitor, space: &SpaceView, current: &str, body: Markup) -> Markup {
    let base = at("/spaces", &space.id);
    let runs = format!(
        "/runs{}",
        query(&[("spaceId", &space.id)]).unwrap_or_default()
    );
    let items = [
        (
            "Secrets",
            format!("{base}/secrets"),
            v.may(Permission::SecretsRead),
        ),
        (
            "Listeners",
            format!("{base}/listeners"),
            v.may(Permission::ListenersRead),
        ),
        ("Runs", runs, v.may(Permission::RunsRead)),
    ];
    html! {
        p.crumbs {
            a href="/environments" { "Environments" } " / "
            a href=(at("/environments", &space.environment_id)) { (space.environment_id) } " / "
            (space.id)
        }
        div.with-side {
            nav.side aria-label="Space" {
                h2 { "Space " (space.id) }
                ul {
                    @for (label, href, shown) in &items {
                        @if *shown {
                            li {
                                @if *label == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                }
            }
            div.content { (body) }
        }
    }
}

async fn space_of(c: &ConsoleState, v: &Visitor, id: &str) -> Result<SpaceView, Response> {
    c.get(&v.who, &at("/v1/spaces", id))
        .await
        .map_err(IntoResponse::into_response)
}

async fn secrets_of(
    c: &ConsoleState,
    v: &Visitor,
    q: SecretQuery,
) -> Result<SecretsView, Response> {
    let path = format!("/v1/secrets{}", query(&q).unwrap_or_default());
    c.get(&v.who, &path)
        .await
        .map_err(IntoResponse::into_response)
}

pub async fn secrets(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(id): Segments<String>,
    Params(q): Params<Done>,
) -> Response {
    let space = match space_of(&c, &v, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let effective = match secrets_of(
        &c,
        &v,
        SecretQuery {
            space_id: Some(space.id.clone()),
            ..SecretQuery::default()
        },
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    // A token of this space alone may not read its environment's
    // secrets: the inherited column is then empty, not the page a 403
    // (and each visit no `denied` audit entry).
    let sees_environment = v.who.scope.reaches(&space.environment_id, None) != Reach::No;
    let inherited: HashMap<String, u64> = if sees_environment {
        match secrets_of(
            &c,
            &v,
            SecretQuery {
                environment_id: Some(space.environment_id.clone()),
                ..SecretQuery::default()
            },
        )
        .await
        {
            Ok(s) => s.data.into_iter().map(|s| (s.name, s.version)).collect(),
            Err(r) => return r,
        }
    } else {
        HashMap::new()
    };
    let by = updated_by(&c, &v).await;
    let base = at("/spaces", &space.id);
    let write = v.may(Permission::SecretsWrite);
    let body = html! {
        h1 { "Secrets" }
        p.hint { "A space inherits every secret of environment " strong { (space.environment_id) } " and may override any of them. Values are write-only: they are never shown again." }
        @if effective.data.is_empty() {
            p { "No secrets in this space or its environment." }
        } @else {
            table {
                caption.sr { "Effective secrets of space " (space.id) }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Source" } th scope="col" { "Version" }
                    th scope="col" { "Environment version" } th scope="col" { "Updated" } th scope="col" { "Updated by" }
                    th scope="col" { "Actions" }
                } }
                tbody {
                    @for s in &effective.data {
                        @let overridden = s.provenance == Provenance::SpaceOverride;
                        @let target = if overridden { format!("space:{}/{}", space.id, s.name) } else { format!("env:{}/{}", space.environment_id, s.name) };
                        tr {
                            td { code { (s.name) } }
                            td {
                                @if overridden { span.tag.over { "Overridden" } } @else { span.tag.inh { "Inherited" } }
                            }
                            td { (s.version) }
                            td { (inherited.get(&s.name).map_or("—".to_owned(), u64::to_string)) }
                            td { (s.updated_at) }
                            td { (by.get(&target).map_or("—", String::as_str)) }
                            td {
                                a href=(super::versions::history_path(&s.id)) { "History" span.sr { " of " (s.name) } }
                                " "
                                @if write && overridden && inherited.contains_key(&s.name) {
                                    (button_form(&v, &format!("{base}/secrets/{}/revert", segment(&s.name)), &format!("Revert {} to inherited", s.name), "secondary"))
                                } @else if write && overridden {
                                    (button_form(&v, &format!("{base}/secrets/{}/revert", segment(&s.name)), &format!("Delete {}", s.name), "danger"))
                                } @else if write {
                                    form.inline method="post" action=(format!("{base}/secrets")) {
                                        (csrf(&v))
                                        input type="hidden" name="name" value=(s.name);
                                        label for=(format!("override-{}", s.name)) { "Override value for " (s.name) }
                                        input id=(format!("override-{}", s.name)) name="value" type="password" required autocomplete="new-password";
                                        button type="submit" { "Override" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if write {
            h2 { "Set a secret in this space" }
            p.hint { "A name the environment also has overrides it here; any other name is this space's own." }
            form.stack method="post" action=(format!("{base}/secrets")) {
                (csrf(&v))
                label for="secret-name" { "Name" }
                input id="secret-name" name="name" required maxlength="256" autocomplete="off";
                label for="secret-value" { "Value" }
                input id="secret-value" name="value" type="password" required autocomplete="new-password";
                button type="submit" { "Save in space" }
            }
        }
    };
    page(
        &v,
        &format!("Secrets: space {}", space.id),
        "Environments",
        q.notice(),
        frame(&v, &space, "Secrets", body),
    )
}

#[derive(Deserialize)]
pub struct OverrideForm {
    name: String,
    value: Zeroizing<String>,
}

pub async fn override_secret(
    State(c): State<ConsoleState>,
    Segments(id): Segments<String>,
    p: Posted<OverrideForm>,
) -> Response {
    let body = SetSecret {
        name: p.form.name.trim().to_owned(),
        value: p.form.value,
        environment_id: None,
        space_id: Some(id.clone()),
        actor_id: None,
        topics: None,
        expected_version: None,
        keep_versions: None,
    };
    match c
        .post::<SecretsView>(&p.visitor.who, "/v1/secrets", &body)
        .await
    {
        Ok(_) => done(&format!("{}/secrets", at("/spaces", &id)), "override-saved").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn revert(
    State(c): State<ConsoleState>,
    Segments((id, name)): Segments<(String, String)>,
    p: Posted<crate::console::signin::Empty>,
) -> Response {
    let path = at("/v1/secrets", &format!("space:{id}:{name}"));
    match c.act(&p.visitor.who, Method::DELETE, &path).await {
        Ok(()) => done(&format!("{}/secrets", at("/spaces", &id)), "reverted").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn listeners(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(id): Segments<String>,
) -> Response {
    let space = match space_of(&c, &v, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let listeners: Vec<ListenerView> =
        match c.get::<Vec<ListenerView>>(&v.who, "/v1/listeners").await {
            Ok(l) => l
                .into_iter()
                .filter(|l| l.space_id.as_deref() == Some(space.id.as_str()))
                .collect(),
            Err(f) => return f.into_response(),
        };
    let body = html! {
        h1 { "Listeners" }
        @if listeners.is_empty() {
            p { "No listeners deployed to this space. " a href="/listeners" { "Deploy one" } "." }
        } @else {
            ul {
                @for l in &listeners {
                    li { a href=(at("/listeners", &l.name)) { (l.name) } " — topics " (l.topics.join(", ")) }
                }
            }
        }
    };
    page(
        &v,
        &format!("Listeners: space {}", space.id),
        "Environments",
        None,
        frame(&v, &space, "Listeners", body),
    )
}
