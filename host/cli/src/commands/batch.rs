//! `keyhole emit TOPIC --env ENV --batch FILE`: one event per line of a
//! file of payloads, all on one topic in one scope, sent through
//! `POST /v1/events/batch` in batches the API takes (at most
//! [`MAX_BATCH_EVENTS`] events and [`BATCH_BODY_LIMIT`] bytes each).
//!
//! Every line is read and checked (as JSON, and by the daemon's event
//! rules: topic, payload size) before the first batch is sent, so a file
//! with a bad line sends nothing. A batch the API refuses stops the
//! rest; the events of the batches before it were accepted (run, or
//! queued in cluster mode), and the output says how many. As with `emit`, a guest that fails is an outcome, not an error.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use axum::http::Method;

use crate::api::{BATCH_BODY_LIMIT, MAX_BATCH_EVENTS};
use crate::cli::EmitArgs;
use crate::client::{Body, Call, Client};
use crate::errors::{CliError, Exit};
use crate::requests::EmitBody;
use crate::views::{EmitBatchView, EmitView};

use super::text::{one_line, outcome_text};

pub fn emit_batch(c: &Client, args: EmitArgs, file: &Path) -> Result<()> {
    let text = read(file)?;
    let mut events: Vec<Vec<u8>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let payload: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            CliError::new(
                Exit::Usage,
                format!(
                    "{}, line {}: the payload is not valid JSON ({e}); nothing was sent",
                    file.display(),
                    i + 1
                ),
            )
            .hint("give --batch one JSON document per line, e.g. {\"action\":\"notify\"}")
        })?;
        // The daemon's own rules (topic, payload size): a line it would
        // refuse must stop the file here, before any batch is sent.
        let event =
            keyhole_runtime::Event::new(&args.topic, &args.scope.env, args.scope.space.as_deref())
                .with_payload(payload.to_string());
        if let Err(e) = event.check_shape() {
            return Err(CliError::new(
                Exit::Usage,
                format!("{}, line {}: {e}; nothing was sent", file.display(), i + 1),
            )
            .into());
        }
        let body = EmitBody {
            topic: args.topic.clone(),
            environment_id: args.scope.env.clone(),
            space_id: args.scope.space.clone(),
            payload,
            min_revision: args.min_revision,
            id: None,
        };
        events.push(serde_json::to_vec(&body).context("encoding an event")?);
    }
    if events.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} holds no events: one JSON payload per line",
                file.display()
            ),
        )
        .into());
    }
    let mut tally = Tally::default();
    for batch in batches(&events) {
        let sent = tally.events;
        let answer: EmitBatchView = c
            .call(Call::new(
                Method::POST,
                "/v1/events/batch",
                Body::Ndjson(batch),
            ))
            .inspect_err(|_| {
                if sent > 0 {
                    eprintln!(
                        "{sent} events of the file were accepted before this batch \
                         (run, or queued in cluster mode)"
                    );
                }
            })?;
        for event in &answer.events {
            tally.add(event);
        }
    }
    tally.print(&args.topic, &args.scope.env, args.scope.space.as_deref());
    Ok(())
}

/// The file's text, or standard input's for `-`.
fn read(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading events from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| {
        CliError::new(Exit::Usage, format!("cannot read {}: {e}", file.display())).into()
    })
}

/// The events as NDJSON request bodies, each within the API's limits.
fn batches(events: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut body, mut n) = (Vec::new(), 0);
    for event in events {
        if n == MAX_BATCH_EVENTS || (n > 0 && body.len() + event.len() + 1 > BATCH_BODY_LIMIT) {
            out.push(std::mem::take(&mut body));
            n = 0;
        }
        body.extend_from_slice(event);
        body.push(b'\n');
        n += 1;
    }
    out.push(body);
    out
}

/// What the batches' answers add up to.
#[derive(Default)]
struct Tally {
    events: usize,
    queued: usize,
    runs: usize,
    outcomes: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Counts `event`, and prints it if it was queued or a run of it did
    /// not end `ok`: a batch of thousands prints what needs a look.
    fn add(&mut self, event: &EmitView) {
        self.events += 1;
        if event.queued {
            self.queued += 1;
            return;
        }
        self.runs += event.runs.len();
        for r in &event.runs {
            let label = r.outcome.label();
            *self.outcomes.entry(label).or_default() += 1;
            if label != "ok" {
                println!(
                    "event {}: {} {}: {}",
                    event.event_id,
                    r.listener,
                    label,
                    one_line(&outcome_text(&r.outcome), 200)
                );
            }
        }
    }

    fn print(&self, topic: &str, env: &str, space: Option<&str>) {
        let scope = super::listeners::scope_text(env, space);
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        if self.queued > 0 {
            println!(
                "{} on {topic} ({scope}): queued for the cluster; see `keyhole runs --since 10m`",
                plural(self.queued, "event")
            );
        }
        let ran = self.events - self.queued;
        if ran > 0 {
            let outcomes: Vec<String> = self
                .outcomes
                .iter()
                .map(|(label, n)| format!("{label} {n}"))
                .collect();
            let outcomes = if outcomes.is_empty() {
                "no listener matched (see `keyhole listeners list`)".to_owned()
            } else {
                outcomes.join(", ")
            };
            println!(
                "{} on {topic} ({scope}): {}: {outcomes}",
                plural(ran, "event"),
                plural(self.runs, "run")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_the_apis_limits() {
        let small = vec![b"{}".to_vec(); 2_500];
        let out = batches(&small);
        let lines: Vec<usize> = out
            .iter()
            .map(|b| b.split(|&c| c == b'\n').count() - 1)
            .collect();
        assert_eq!(lines, vec![1_000, 1_000, 500]);

        let big = vec![vec![b'x'; BATCH_BODY_LIMIT / 3]; 5];
        let out = batches(&big);
        assert_eq!(out.len(), 3, "two per batch fit, three do not");
        assert!(out.iter().all(|b| b.len() <= BATCH_BODY_LIMIT));
    }
}
