//! `keyhole runs [filters]` and `keyhole runs show ID`: run records, from
//! `GET /v1/runs` (a page at a time, newest first) and `GET /v1/runs/{id}`.
//!
//! `--limit` may ask for more than one page holds: the verb follows the
//! cursor until it has them. Without `--json` a table ends by saying how to
//! see older runs, when there are any.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::cli::{RunsArgs, RunsCmd};
use crate::client::{Client, query};
use crate::errors::{CliError, Exit};
use crate::requests::RunsParams;
use crate::views::{RunView, RunsPage};

use super::text::{duration_text, one_line, outcome_text, printable};

/// The API's largest page.
const PAGE: usize = 1_000;

pub fn runs(c: &Client, args: RunsArgs) -> Result<()> {
    if let Some(RunsCmd::Show { id, json }) = &args.show {
        return show(c, *id, *json);
    }
    let mut params = RunsParams {
        environment_id: args.env.clone(),
        space_id: args.space.clone(),
        listener: args.listener.clone(),
        outcome: args.outcome.clone(),
        event_id: args.event.clone(),
        since: args.since.as_deref().map(when).transpose()?,
        until: args.until.as_deref().map(when).transpose()?,
        before: args.before.map(|b| b.to_string()),
        limit: None,
    };
    let mut runs: Vec<RunView> = Vec::new();
    let mut next = None;
    while runs.len() < args.limit {
        params.limit = Some((args.limit - runs.len()).min(PAGE).to_string());
        let page: RunsPage = c.get(&format!("/v1/runs{}", query(&params)?))?;
        runs.extend(page.runs);
        next = page.next;
        match next {
            Some(cursor) => params.before = Some(cursor.to_string()),
            None => break,
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&runs)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs recorded");
        return Ok(());
    }
    println!(
        "{:>8} {:<24} {:<20} {:<24} {:<12} {:>9}  DETAIL",
        "RUN", "STARTED", "LISTENER", "TOPIC", "OUTCOME", "DURATION"
    );
    for r in &runs {
        let row = format!(
            "{:>8} {:<24} {:<20} {:<24} {:<12} {:>9}  {}",
            r.id,
            r.started_at,
            r.listener,
            one_line(&r.topic, 24),
            r.outcome.label(),
            duration_text(r.duration_us),
            run_detail(r)
        );
        println!("{}", printable(&row));
    }
    if let Some(cursor) = next {
        println!("(older runs: add --before {cursor})");
    }
    Ok(())
}

/// `--since` / `--until`: a duration ago, or a time the API understands
/// (RFC 3339 in UTC, or milliseconds since the epoch).
fn when(text: &str) -> Result<String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        return Ok(now.saturating_sub(ago).as_millis().to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) || humantime::parse_rfc3339_weak(text).is_ok() {
        return Ok(text.to_owned());
    }
    Err(CliError::new(
        Exit::Usage,
        format!("invalid time {text:?}: give a duration ago (10m, 2h, 7d) or a time such as 2026-12-01T10:00:00Z"),
    )
    .into())
}

fn show(c: &Client, id: u64, json: bool) -> Result<()> {
    let r: RunView = c.get(&format!("/v1/runs/{id}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let scope = match (&r.environment_id, &r.space_id) {
        (Some(e), Some(s)) => format!("env {e} / space {s}"),
        (Some(e), None) => format!("env {e}"),
        (None, _) => "-".into(),
    };
    // Every line holds text the event's sender or the listener chose:
    // each is printed with its control characters escaped.
    let mut lines = vec![
        format!("run {}", r.id),
        format!(
            "  listener:   {} (module sha256:{})",
            r.listener, r.module_hash
        ),
        format!("  event:      {} on {} ({scope})", r.event_id, r.topic),
        format!(
            "  started:    {}, took {}",
            r.started_at,
            duration_text(r.duration_us)
        ),
        format!(
            "  outcome:    {}: {}",
            r.outcome.label(),
            outcome_text(&r.outcome)
        ),
    ];
    let read = if r.secrets_read.is_empty() {
        "-".to_owned()
    } else {
        r.secrets_read.join(", ")
    };
    lines.push(format!(
        "  secrets:    {read} (names only; values never leave the run)"
    ));
    for note in &r.notes {
        lines.push(format!("  note:       {note}"));
    }
    for call in &r.http {
        let status = call.status.map_or_else(|| "-".into(), |s| s.to_string());
        let error = call
            .error
            .as_deref()
            .map_or(String::new(), |e| format!(" ({e})"));
        let injected = if call.injected.is_empty() {
            String::new()
        } else {
            format!(" [injected: {}]", call.injected.join(", "))
        };
        lines.push(format!(
            "  http:       {} {}{} -> {status}{error}{injected}",
            call.method, call.host, call.path
        ));
    }
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if !text.is_empty() {
            lines.push(format!("  {name}:"));
            // The output's own lines stay lines.
            lines.extend(text.lines().map(|line| format!("    {line}")));
        }
    }
    for line in &lines {
        println!("{}", printable(line));
    }
    if r.output_dropped > 0 {
        println!(
            "  ({} bytes of output over the cap were dropped)",
            r.output_dropped
        );
    }
    Ok(())
}

/// A run's outcome text, the secrets it read and its HTTP calls, on one
/// line.
fn run_detail(r: &RunView) -> String {
    let mut detail = one_line(&outcome_text(&r.outcome), 100);
    if !r.secrets_read.is_empty() {
        detail.push_str(&format!(" [read: {}]", r.secrets_read.join(", ")));
    }
    if !r.http.is_empty() {
        let calls: Vec<String> = r
            .http
            .iter()
            .map(|c| {
                let status = c.status.map_or_else(|| "-".into(), |s| s.to_string());
                let injected = if c.injected.is_empty() {
                    String::new()
                } else {
                    format!(" (injected {})", c.injected.join(", "))
                };
                format!("{} {}{} -> {status}{injected}", c.method, c.host, c.path)
            })
            .collect();
        detail.push_str(&format!(" [http: {}]", calls.join("; ")));
    }
    detail
}
