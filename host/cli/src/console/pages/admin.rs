//! The operator's pages: the audit log (filterable, with the chain's
//! verification) and API tokens (create, shown once; revoke).

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use keyhole_audit::Entry;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Done, at, done};
use crate::auth::Role;
use crate::client::query;
use crate::console::layout::{button_form, csrf, page};
use crate::console::params::{Params, Segments};
use crate::console::{ConsoleState, Posted, Visitor};
use crate::requests::{AuditParams, CreateToken};
use crate::views::{AuditPage, CreatedToken, TokenInfo, VerifyView, rfc3339};

/// The audit page's filters, as typed (empty means any).
#[derive(Deserialize, Default)]
pub struct AuditFilters {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    deployment: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    outcome: String,
    /// Cluster mode: whose chain (empty: this host's).
    #[serde(default)]
    host: String,
    #[serde(default)]
    before: Option<u64>,
}

fn some(t: &str) -> Option<String> {
    Some(t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn entry_row(seq: u64, e: &Entry) -> Markup {
    html! {
        tr {
            td { (seq) }
            td { (rfc3339(e.time_ms())) }
            @match e {
                Entry::SecretRead { deployment, name, outcome, topic, event_id, reason, injected, .. } => {
                    td { "secret read" @if injected.is_some() { " (injected)" } }
                    td { "listener " (deployment) }
                    td { code { (name) } " for event " code { (event_id) } " on " (topic) }
                    td { (outcome.as_str()) }
                    td { (reason.as_deref().unwrap_or("")) }
                }
                Entry::Admin { actor, action, target, outcome, detail, .. } => {
                    td { (action) }
                    td { (actor) }
                    td { (target) }
                    td { (outcome) }
                    td { (detail.as_deref().unwrap_or("")) }
                }
                Entry::Retention { first_kept, .. } => {
                    td { "retention" } td { "keyhole" } td { "entries before " (first_kept) " deleted" } td { "ok" } td {}
                }
            }
        }
    }
}

pub async fn audit(
    State(c): State<ConsoleState>,
    v: Visitor,
    Params(f): Params<AuditFilters>,
) -> Response {
    let params = AuditParams {
        secret: some(&f.secret),
        deployment: some(&f.deployment),
        actor: some(&f.actor),
        outcome: some(&f.outcome),
        host: some(&f.host),
        before: f.before,
        limit: Some(100),
        ..AuditParams::default()
    };
    let path = format!("/v1/audit{}", query(&params).unwrap_or_default());
    let entries: AuditPage = match c.get(&v.who, &path).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let verify: Result<VerifyView, _> = c.get(&v.who, "/v1/audit/verify").await;
    let next = entries.next.map(|n| {
        let q = AuditParams {
            before: Some(n),
            ..params.clone()
        };
        format!("/audit{}", query(&q).unwrap_or_default())
    });
    let body = html! {
        h1 { "Audit log" }
        @match &verify {
            Ok(r) if r.ok => p.notice role="status" {
                "The chain verifies: " (r.entries) " entries in " (r.segments) " segments, none altered or missing."
                @if !r.hosts.is_empty() {
                    " So does every host's chain in the cluster's copy (" (r.hosts.len()) " hosts)."
                }
            },
            Ok(r) => div.error role="alert" {
                @if let Some(problem) = &r.problem { p { "The chain does not verify: " (problem) } }
                @for h in r.hosts.iter().filter(|h| !h.ok) {
                    p {
                        "The cluster's copy of " (h.host.as_deref().unwrap_or("?")) "'s chain does not verify: "
                        (h.problem.as_deref().unwrap_or("unknown problem"))
                    }
                }
            },
            Err(e) => p.error role="alert" { "The chain could not be checked: " (e.api.message) },
        }
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
            label for="a-actor" { "Actor" }
            input id="a-actor" name="actor" value=(f.actor) placeholder="token:NAME";
            label for="a-secret" { "Secret name" }
            input id="a-secret" name="secret" value=(f.secret);
            label for="a-dep" { "Listener" }
            input id="a-dep" name="deployment" value=(f.deployment);
            label for="a-outcome" { "Outcome" }
            input id="a-outcome" name="outcome" value=(f.outcome) placeholder="ok, denied, failed…";
            @if let Ok(r) = &verify && !r.hosts.is_empty() {
                label for="a-host" { "Host" }
                select id="a-host" name="host" {
                    @for h in &r.hosts {
                        @let name = h.host.as_deref().unwrap_or_default();
                        option value=(name) selected[entries.host.as_deref() == Some(name)] { (name) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if entries.entries.is_empty() {
            p { "No entries match." }
        } @else {
            table {
                caption.sr { "Audit entries, newest first" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Action" }
                    th scope="col" { "Who" } th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "Detail" }
                } }
                tbody { @for r in &entries.entries { (entry_row(r.seq, &r.entry)) } }
            }
        }
        @if let Some(n) = next { p { a href=(n) { "Older entries" } } }
    };
    page(&v, "Audit log", "Audit", None, body)
}

fn token_table(v: &Visitor, tokens: &[TokenInfo]) -> Markup {
    html! {
        table {
            caption.sr { "API tokens" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Scope" }
                th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "Actions" }
            } }
            tbody {
                @for t in tokens {
                    tr {
                        td { (t.name) }
                        td { (t.role) }
                        td { (t.scope) }
                        td { (t.created_at) " by " (t.created_by) }
                        td { (t.expires_at.as_deref().unwrap_or("never")) @if t.expired { " (expired)" } }
                        td { (t.last_used_at.as_deref().unwrap_or("never")) }
                        td { (button_form(v, &format!("{}/revoke", at("/tokens", &t.name)), &format!("Revoke {}", t.name), "danger")) }
                    }
                }
            }
        }
    }
}

fn create_form(v: &Visitor) -> Markup {
    html! {
        h2 { "Create a token" }
        form.stack method="post" action="/tokens" {
            (csrf(v))
            label for="t-name" { "Name" }
            input id="t-name" name="name" required maxlength="64" autocomplete="off";
            label for="t-role" { "Role" }
            select id="t-role" name="role" {
                @for r in Role::ALL { option value=(r.name()) { (r.name()) } }
            }
            label for="t-env" { "Environment (optional: limits the token to it)" }
            input id="t-env" name="environment" autocomplete="off";
            label for="t-space" { "Space (optional)" }
            input id="t-space" name="space" autocomplete="off";
            label for="t-expires" { "Expires in (optional, e.g. 30d)" }
            input id="t-expires" name="expires_in" autocomplete="off";
            button type="submit" { "Create token" }
        }
    }
}

async fn tokens_page(
    c: &ConsoleState,
    v: &Visitor,
    notice: Option<&str>,
    created: Option<CreatedToken>,
) -> Response {
    // A token just made is shown even if the list cannot be read: its
    // value is shown only this once.
    let (tokens, unlisted) = match c.get::<Vec<TokenInfo>>(&v.who, "/v1/tokens").await {
        Ok(t) => (t, None),
        Err(e) if created.is_some() => (Vec::new(), Some(e)),
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { "API tokens" }
        @if let Some(t) = &created {
            section.created aria-labelledby="created-h" {
                h2 id="created-h" { "Token " (t.info.name) " created" }
                p { "Copy it now: it is shown only this once." }
                label for="new-token" { "The new token" }
                input id="new-token" readonly value=(t.token.as_str()) size="60";
            }
        }
        @if let Some(e) = &unlisted {
            p role="alert" { "The list of tokens could not be read: " (e.api.message) }
        } @else {
            (token_table(v, &tokens))
        }
        (create_form(v))
    };
    page(v, "API tokens", "Tokens", notice, body)
}

pub async fn tokens(
    State(c): State<ConsoleState>,
    v: Visitor,
    Params(q): Params<Done>,
) -> Response {
    tokens_page(&c, &v, q.notice(), None).await
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    role: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    space: String,
    #[serde(default)]
    expires_in: String,
}

pub async fn create_token(State(c): State<ConsoleState>, p: Posted<NewToken>) -> Response {
    let f = &p.form;
    let body = CreateToken {
        name: f.name.trim().to_owned(),
        role: f.role.clone(),
        environment_id: some(&f.environment),
        space_id: some(&f.space),
        expires_in: some(&f.expires_in),
    };
    match c
        .post::<CreatedToken>(&p.visitor.who, "/v1/tokens", &body)
        .await
    {
        Ok(t) => tokens_page(&c, &p.visitor, None, Some(t)).await,
        Err(e) => e.into_response(),
    }
}

pub async fn revoke_token(
    State(c): State<ConsoleState>,
    Segments(name): Segments<String>,
    p: Posted<crate::console::signin::Empty>,
) -> Response {
    match c
        .act(&p.visitor.who, Method::DELETE, &at("/v1/tokens", &name))
        .await
    {
        Ok(()) => done("/tokens", "revoked").into_response(),
        Err(e) => e.into_response(),
    }
}
