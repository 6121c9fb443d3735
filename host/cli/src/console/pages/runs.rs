//! Runs: a filterable list, newest first, and one run's record (outcome,
//! duration, the secret names it read, its scrubbed output, its HTTP
//! calls). Filters are the API's (`GET /v1/runs`), passed through.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::at;
use crate::client::query;
use crate::console::layout::page;
use crate::console::params::{Params, Segments};
use crate::console::{ConsoleState, Visitor};
use crate::requests::RunsParams;
use crate::views::{RunView, RunsPage};

pub async fn list(
    State(c): State<ConsoleState>,
    v: Visitor,
    Params(mut f): Params<RunsParams>,
) -> Response {
    // Empty form fields mean "any".
    for field in [
        &mut f.environment_id,
        &mut f.space_id,
        &mut f.listener,
        &mut f.outcome,
        &mut f.event_id,
        &mut f.since,
        &mut f.until,
        &mut f.limit,
        &mut f.before,
    ] {
        if field.as_deref().is_some_and(|t| t.trim().is_empty()) {
            *field = None;
        }
    }
    if f.limit.is_none() {
        f.limit = Some("50".into());
    }
    let path = format!("/v1/runs{}", query(&f).unwrap_or_default());
    let runs: RunsPage = match c.get(&v.who, &path).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    let next = runs.next.map(|n| {
        let q = RunsParams {
            before: Some(n.to_string()),
            ..f.clone()
        };
        format!("/runs{}", query(&q).unwrap_or_default())
    });
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" role="search" aria-label="Filter runs" {
            label for="f-listener" { "Listener" }
            input id="f-listener" name="listener" value=(text(&f.listener));
            label for="f-env" { "Environment" }
            input id="f-env" name="environmentId" value=(text(&f.environment_id));
            label for="f-space" { "Space" }
            input id="f-space" name="spaceId" value=(text(&f.space_id));
            label for="f-outcome" { "Outcome" }
            input id="f-outcome" name="outcome" value=(text(&f.outcome)) placeholder="ok, trap, deadline…";
            label for="f-event" { "Event id" }
            input id="f-event" name="eventId" value=(text(&f.event_id));
            button type="submit" { "Filter" }
        }
        @if runs.runs.is_empty() {
            p { "No runs match." }
        } @else {
            table {
                caption.sr { "Runs, newest first" }
                thead { tr {
                    th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "Listener" }
                    th scope="col" { "Topic" } th scope="col" { "Outcome" } th scope="col" { "Duration" }
                    th scope="col" { "Secrets read" }
                } }
                tbody {
                    @for r in &runs.runs {
                        tr {
                            td { a href=(at("/runs", &r.id.to_string())) { "#" (r.id) } }
                            td { (r.started_at) }
                            td { (r.listener) }
                            td { (r.topic) }
                            td { span class=(format!("tag {}", r.outcome.label())) { (r.outcome.label()) } }
                            td { (r.duration_us) " µs" }
                            td { (r.secrets_read.join(", ")) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next { p { a href=(n) { "Older runs" } } }
    };
    page(&v, "Runs", "Runs", None, body)
}

pub async fn detail(
    State(c): State<ConsoleState>,
    v: Visitor,
    Segments(id): Segments<String>,
) -> Response {
    let r: RunView = match c.get(&v.who, &at("/v1/runs", &id)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let outcome = serde_json::to_string(&r.outcome).unwrap_or_default();
    let body = html! {
        p.crumbs { a href="/runs" { "Runs" } " / #" (r.id) }
        h1 { "Run #" (r.id) }
        dl {
            dt { "Outcome" } dd { span class=(format!("tag {}", r.outcome.label())) { (r.outcome.label()) } " " code { (outcome) } }
            dt { "Listener" } dd { a href=(at("/listeners", &r.listener)) { (r.listener) } }
            dt { "Module sha256" } dd { code { (r.module_hash) } }
            dt { "Event" } dd { code { (r.event_id) } " on topic " code { (r.topic) } }
            dt { "Scope" } dd {
                "env " (r.environment_id.as_deref().unwrap_or("—"))
                @if let Some(s) = &r.space_id { ", space " (s) }
            }
            dt { "Started" } dd { (r.started_at) }
            dt { "Duration" } dd { (r.duration_us) " µs" }
            dt { "Secrets read" } dd { @if r.secrets_read.is_empty() { "none" } @else { (r.secrets_read.join(", ")) } }
        }
        @if !r.notes.is_empty() {
            h2 { "Notes" }
            ul { @for n in &r.notes { li { (n) } } }
        }
        h2 { "Output (scrubbed)" }
        h3 { "stdout" }
        pre tabindex="0" { (r.stdout) }
        h3 { "stderr" }
        pre tabindex="0" { (r.stderr) }
        @if r.output_dropped > 0 { p { (r.output_dropped) " bytes of output were dropped." } }
        @if !r.http.is_empty() {
            h2 { "HTTP calls" }
            table {
                caption.sr { "HTTP calls of run " (r.id) }
                thead { tr { th scope="col" { "Request" } th scope="col" { "Status" } th scope="col" { "Injected" } } }
                tbody {
                    @for h in &r.http {
                        tr {
                            td { (h.method) " " (h.host) (h.path) }
                            td { (h.status.map_or_else(|| h.error.clone().unwrap_or_default(), |s| s.to_string())) }
                            td { (h.injected.join(", ")) }
                        }
                    }
                }
            }
        }
    };
    page(&v, &format!("Run #{}", r.id), "Runs", None, body)
}
