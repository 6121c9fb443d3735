//! Listeners: the list with the deploy form (a `.wasm` upload), one
//! listener's deployment (module hash, limits, grants), removing it, and
//! sending it a test event.

use std::collections::BTreeMap;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::environments::topics;
use super::{Done, at, done};
use crate::auth::Permission;
use crate::client::{Call, multipart, query};
use crate::console::layout::{button_form, csrf, error_page, page};
use crate::console::params::{Params, Segments};
use crate::console::{ConsoleState, Posted, Visitor, refused_form};
use crate::requests::{EmitBody, GrantsBody, LimitsBody, ListenerSpec};
use crate::views::{DeployedView, EmitView, ListenerView};

/// Comma-separated text as a list (empty items dropped).
fn list_of(text: &str) -> Vec<String> {
    topics(text).unwrap_or_default()
}

pub async fn list(State(c): State<ConsoleState>, v: Visitor, Params(q): Params<Done>) -> Response {
    let listeners: Vec<ListenerView> = match c.get(&v.who, "/v1/listeners").await {
        Ok(l) => l,
        Err(f) => return f.into_response(),
    };
    let body = html! {
        h1 { "Listeners" }
        @if listeners.is_empty() {
            p { "No listeners deployed." }
        } @else {
            table {
                caption.sr { "Listeners" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Scope" } th scope="col" { "Topics" }
                    th scope="col" { "Module sha256" } th scope="col" { "Deployed" }
                } }
                tbody {
                    @for l in &listeners {
                        tr {
                            td { a href=(at("/listeners", &l.name)) { (l.name) } }
                            td { "env " (l.environment_id) @if let Some(s) = &l.space_id { ", space " (s) } }
                            td { (l.topics.join(", ")) }
                            td { code { (&l.module_hash[..l.module_hash.len().min(12)]) "…" } }
                            td { (l.deployed_at) }
                        }
                    }
                }
            }
        }
        @if v.may(Permission::ListenersDeploy) {
            h2 { "Deploy a listener" }
            form.stack method="post" action="/listeners" enctype="multipart/form-data" {
                (csrf(&v))
                label for="l-module" { "Component (.wasm)" }
                input id="l-module" name="module" type="file" accept=".wasm,application/wasm" required;
                label for="l-name" { "Name" }
                input id="l-name" name="name" required maxlength="128" autocomplete="off";
                label for="l-env" { "Environment" }
                input id="l-env" name="environment" required autocomplete="off";
                label for="l-space" { "Space (optional)" }
                input id="l-space" name="space" autocomplete="off";
                label for="l-topics" { "Topics (comma-separated globs; empty: every topic)" }
                input id="l-topics" name="topics" autocomplete="off";
                label for="l-timeout" { "Timeout (milliseconds, optional)" }
                input id="l-timeout" name="timeout_ms" inputmode="numeric" autocomplete="off";
                label for="l-memory" { "Memory limit (MiB, optional)" }
                input id="l-memory" name="memory_mib" inputmode="numeric" autocomplete="off";
                label for="l-grant-env" { "Grant environments (comma-separated)" }
                input id="l-grant-env" name="grant_env" autocomplete="off";
                label for="l-grant-space" { "Grant spaces (comma-separated)" }
                input id="l-grant-space" name="grant_space" autocomplete="off";
                label for="l-secrets" { "Secret names it may read (comma-separated globs; empty: every name)" }
                input id="l-secrets" name="secrets" autocomplete="off";
                label for="l-http" { "HTTP allow-list (comma-separated origins)" }
                input id="l-http" name="allow_http" autocomplete="off";
                label for="l-settings" { "Settings (one KEY=VALUE per line; not for secrets)" }
                textarea id="l-settings" name="settings" rows="3" {}
                label.check for="l-keep" {
                    input id="l-keep" type="checkbox" name="keep_grants" value="1";
                    " Replacing a listener: keep the grants and injected secrets of the deployment it replaces"
                }
                button type="submit" { "Deploy" }
            }
        }
    };
    page(&v, "Listeners", "Listeners", q.notice(), body)
}

/// The deploy form's fields, as text.
#[derive(Default)]
struct DeployForm {
    csrf: String,
    fields: BTreeMap<String, String>,
    module: Vec<u8>,
}

async fn read_form(mut m: Multipart) -> Result<DeployForm, String> {
    let mut f = DeployForm::default();
    // Bounded: the form has 13 fields.
    for _ in 0..32 {
        let Some(field) = m.next_field().await.map_err(|e| e.body_text())? else {
            return Ok(f);
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "module" {
            f.module = field.bytes().await.map_err(|e| e.body_text())?.to_vec();
        } else {
            let text = field.text().await.map_err(|e| e.body_text())?;
            if name == crate::console::csrf::FIELD {
                f.csrf = text;
            } else {
                f.fields.insert(name, text);
            }
        }
    }
    Err("the form has too many fields".into())
}

fn number(f: &DeployForm, name: &str, what: &str) -> Result<Option<u64>, String> {
    match f
        .fields
        .get(name)
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| format!("{what} must be a whole number, not {t:?}")),
    }
}

fn spec_of(f: &DeployForm) -> Result<ListenerSpec, String> {
    let text = |n: &str| {
        f.fields
            .get(n)
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    let mut settings = BTreeMap::new();
    for line in text("settings")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("a setting must be KEY=VALUE, not {line:?}"))?;
        settings.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let memory = number(f, "memory_mib", "the memory limit")?.map(|m| m.saturating_mul(1 << 20));
    Ok(ListenerSpec {
        name: text("name"),
        environment_id: text("environment"),
        space_id: Some(text("space")).filter(|s| !s.is_empty()),
        topics: topics(&text("topics")).unwrap_or_else(|| vec!["*".into()]),
        grants: GrantsBody {
            environments: list_of(&text("grant_env")),
            spaces: list_of(&text("grant_space")),
        },
        limits: LimitsBody {
            timeout_ms: number(f, "timeout_ms", "the timeout")?,
            memory_bytes: memory,
            ..LimitsBody::default()
        },
        allow_http: list_of(&text("allow_http")),
        settings,
        secrets: list_of(&text("secrets")),
        keep_grants: text("keep_grants") == "1",
        inject: Vec::new(),
    })
}

pub async fn deploy(
    State(c): State<ConsoleState>,
    v: Visitor,
    headers: HeaderMap,
    m: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Err(why) = crate::console::csrf::same_origin(&headers, c.tls) {
        return refused_form(why);
    }
    // Not multipart, or no boundary: the upload form always is and has one.
    let m = match m {
        Ok(m) => m,
        Err(e) => {
            let why = format!("The upload was not this page's form: {}", e.body_text());
            return error_page(e.status(), &why);
        }
    };
    let f = match read_form(m).await {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("The upload failed: {e}")),
    };
    if !v.csrf.matches(Some(&f.csrf)) {
        return refused_form("its form token is missing or stale");
    }
    let spec = match spec_of(&f) {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let Ok(spec_json) = serde_json::to_vec(&spec) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "encoding the deployment");
    };
    let call = Call::new(
        Method::POST,
        "/v1/listeners",
        multipart(&[
            ("spec", "application/json", &spec_json),
            ("module", "application/wasm", &f.module),
        ]),
    );
    match c.call::<DeployedView>(&v.who, call).await {
        // The grants of the deployment it replaced were not carried over:
        // said on the page, as the API's answer says it.
        Ok(d) if d.notice.is_some() => done(
            &at("/listeners", &d.listener.name),
            "deployed-grants-dropped",
        )
        .into_response(),
        Ok(d) => done(&at("/listeners", &d.listener.name), "deployed").into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn detail(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(name): Segments<String>,
    Params(q): Params<Done>,
) -> Response {
    let l: ListenerView = match c.get(&v.who, &at("/v1/listeners", &name)).await {
        Ok(l) => l,
        Err(f) => return f.into_response(),
    };
    let base = at("/listeners", &l.name);
    let runs = format!(
        "/runs{}",
        query(&[("listener", &l.name)]).unwrap_or_default()
    );
    let first_topic = l
        .topics
        .iter()
        .find(|t| !t.contains('*'))
        .cloned()
        .unwrap_or_else(|| "test".into());
    let body = html! {
        p.crumbs { a href="/listeners" { "Listeners" } " / " (l.name) }
        h1 { "Listener " (l.name) }
        dl {
            dt { "Environment" } dd { a href=(at("/environments", &l.environment_id)) { (l.environment_id) } }
            dt { "Space" } dd { (l.space_id.as_deref().unwrap_or("—")) }
            dt { "Topics" } dd { (l.topics.join(", ")) }
            dt { "Module sha256" } dd { code { (l.module_hash) } }
            dt { "Deployed" } dd { (l.deployed_at) }
            dt { "Timeout" } dd { (l.limits.timeout_ms) " ms" }
            dt { "Memory limit" } dd { (bytesize::ByteSize(l.limits.memory_bytes)) }
            dt { "HTTP requests per run" } dd { (l.limits.max_http_requests) }
            dt { "Grants" } dd {
                "environments: " (if l.grants.environments.is_empty() { "—".to_owned() } else { l.grants.environments.join(", ") })
                "; spaces: " (if l.grants.spaces.is_empty() { "—".to_owned() } else { l.grants.spaces.join(", ") })
            }
            dt { "Secrets it may read" } dd { (l.secrets.join(", ")) }
            dt { "HTTP allow-list" } dd { (if l.allow_http.is_empty() { "none".to_owned() } else { l.allow_http.join(", ") }) }
            dt { "Injected secrets" } dd {
                @if l.inject.is_empty() { "none" }
                @for i in &l.inject { code { (i.secret) } " into " (i.header) " for " (i.origin) br; }
            }
            dt { "Settings" } dd {
                @if l.settings.is_empty() { "none" }
                @for (k, val) in &l.settings { code { (k) "=" (val) } br; }
            }
        }
        p { a href=(runs) { "Runs of this listener" } }
        @if v.may(Permission::EventsEmit) {
            h2 { "Send a test event" }
            form.stack method="post" action=(format!("{base}/test")) {
                (csrf(&v))
                label for="t-topic" { "Topic" }
                input id="t-topic" name="topic" required value=(first_topic) autocomplete="off";
                label for="t-payload" { "Payload (JSON)" }
                textarea id="t-payload" name="payload" rows="4" { "{}" }
                button type="submit" { "Send test event" }
            }
        }
        @if v.may(Permission::ListenersDeploy) {
            h2 { "Remove" }
            (button_form(&v, &format!("{base}/delete"), &format!("Remove listener {}", l.name), "danger"))
        }
    };
    page(
        &v,
        &format!("Listener {}", l.name),
        "Listeners",
        q.notice(),
        body,
    )
}

pub async fn remove(
    State(c): State<ConsoleState>,
    Segments(name): Segments<String>,
    p: Posted<crate::console::signin::Empty>,
) -> Response {
    match c
        .act(&p.visitor.who, Method::DELETE, &at("/v1/listeners", &name))
        .await
    {
        Ok(()) => done("/listeners", "removed").into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Deserialize)]
pub struct TestEvent {
    topic: String,
    #[serde(default)]
    payload: String,
}

pub async fn test_event(
    State(c): State<ConsoleState>,
    Segments(name): Segments<String>,
    p: Posted<TestEvent>,
) -> Response {
    let l: ListenerView = match c.get(&p.visitor.who, &at("/v1/listeners", &name)).await {
        Ok(l) => l,
        Err(f) => return f.into_response(),
    };
    let text = p.form.payload.trim();
    let payload = if text.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("The payload is not valid JSON: {e}"),
                );
            }
        }
    };
    let body = EmitBody {
        topic: p.form.topic.trim().to_owned(),
        environment_id: l.environment_id,
        space_id: l.space_id,
        payload,
        min_revision: None,
        id: None,
    };
    match c
        .post::<EmitView>(&p.visitor.who, "/v1/events", &body)
        .await
    {
        Ok(e) => {
            let q = query(&[("eventId", &e.event_id)]).unwrap_or_default();
            axum::response::Redirect::to(&format!("/runs{q}")).into_response()
        }
        Err(f) => f.into_response(),
    }
}
