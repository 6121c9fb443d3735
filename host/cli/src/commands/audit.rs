//! `keyhole audit tail | verify`: reading and checking the audit log.
//!
//! Requests to `GET /v1/audit` and `/v1/audit/verify` (both need the store
//! unsealed: the audit key comes from it). `tail` prints oldest first, so
//! `--follow` reads like a log; a page is the newest `--limit` entries that
//! match.

use std::time::Duration;

use anyhow::Result;
use keyhole_audit::{AuditRecord, Entry};

use super::text::printable;
use crate::cli::{AuditCmd, AuditTailArgs};
use crate::client::{Client, query};
use crate::errors::{CliError, Exit};
use crate::requests::AuditParams;
use crate::views::{AuditPage, VerifyView, rfc3339};

/// How often `--follow` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Entries per request (the API's largest page).
const PAGE: usize = 10_000;
/// Entries per request while following.
const FOLLOW_PAGE: usize = 1_000;

pub fn run(c: &Client, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Tail(args) => tail(c, &args),
        AuditCmd::Verify => verify(c),
    }
}

fn params(args: &AuditTailArgs) -> AuditParams {
    let since = args.since.map(|d| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(d).as_millis() as u64
    });
    AuditParams {
        secret: args.secret.clone(),
        deployment: args.deployment.clone(),
        actor: args.actor.clone(),
        outcome: args.outcome.clone(),
        since,
        limit: Some(args.limit),
        host: args.host.clone(),
        ..AuditParams::default()
    }
}

fn page(c: &Client, p: &AuditParams) -> Result<AuditPage> {
    c.get(&format!("/v1/audit{}", query(p)?))
}

/// The newest `limit` entries that match, newest first, a page at a time.
fn newest(c: &Client, p: &AuditParams, limit: usize) -> Result<Vec<AuditRecord>> {
    let mut entries = Vec::new();
    let mut p = AuditParams {
        before: None,
        after: None,
        ..p.clone()
    };
    while entries.len() < limit {
        p.limit = Some((limit - entries.len()).min(PAGE));
        let page = page(c, &p)?;
        entries.extend(page.entries);
        match page.next {
            Some(cursor) => p.before = Some(cursor),
            None => break,
        }
    }
    Ok(entries)
}

fn tail(c: &Client, args: &AuditTailArgs) -> Result<()> {
    // In this process, the CLI holds the data directory's lock: no daemon
    // could start and no other verb run, so nothing would ever follow.
    if args.follow && matches!(c, Client::Local(_)) {
        return Err(CliError::new(
            Exit::Usage,
            "--follow needs a running daemon: without one, this command would hold the data directory and no entry could be written while it waits",
        )
        .hint("start `keyhole serve` (or name one with --server), then follow its log")
        .into());
    }
    let mut p = params(args);
    // Following goes on from the newest entry there is, matching or not
    // (the filters may match none of the last ones), read *before* the
    // first page: an entry written in between is in that page or after
    // it, never skipped.
    let newest_before = if args.follow {
        let newest = page(
            c,
            &AuditParams {
                limit: Some(1),
                ..AuditParams::default()
            },
        )?;
        newest.entries.first().map_or(0, |r| r.seq)
    } else {
        0
    };
    let mut first = newest(c, &p, args.limit)?;
    first.reverse();
    if first.is_empty() && !args.follow && !args.json {
        println!("no audit entries");
    }
    print(&first, args.json)?;
    if !args.follow {
        return Ok(());
    }
    // Pages after it, oldest first, with the same filters.
    let mut last = newest_before.max(first.last().map_or(0, |r| r.seq));
    p.since = None;
    p.limit = Some(FOLLOW_PAGE);
    loop {
        p.after = Some(last);
        let next = page(c, &p)?;
        print(&next.entries, args.json)?;
        match next.next {
            // A full page: read on at once.
            Some(cursor) => last = cursor,
            None => {
                // The filters may hide entries: move past every entry seen.
                let seen = next.entries.last().map_or(last, |r| r.seq);
                last = last.max(seen);
                std::thread::sleep(FOLLOW_POLL);
            }
        }
    }
}

fn print(records: &[AuditRecord], json: bool) -> Result<()> {
    for r in records {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            // Names, ids and topics in entries are others' text.
            println!("{}", printable(&line(r)));
        }
    }
    Ok(())
}

/// One entry as a line of text.
fn line(r: &AuditRecord) -> String {
    let when = rfc3339(r.entry.time_ms());
    match &r.entry {
        Entry::SecretRead {
            event_id,
            deployment,
            name,
            requested,
            resolved,
            injected,
            outcome,
            reason,
            ..
        } => {
            let asked = requested.as_ref().map_or(String::new(), |q| {
                let parts: Vec<String> = [("env", &q.environment), ("space", &q.space)]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}:{v}")))
                    .collect();
                format!(" asked {}", parts.join(" "))
            });
            let from = resolved.as_ref().map_or(String::new(), |s| {
                format!(" from {} ({} v{})", s.scope, s.provenance, s.version)
            });
            let why = reason.as_ref().map_or(String::new(), |r| format!(" ({r})"));
            let into = injected.as_ref().map_or(String::new(), |i| {
                format!(" injected into {} {}", i.origin, i.header)
            });
            format!(
                "{when} #{:<6} read   {deployment} {name} {}{why}{asked}{from}{into} event {event_id}",
                r.seq,
                outcome.as_str()
            )
        }
        Entry::Admin {
            actor,
            action,
            target,
            outcome,
            detail,
            ..
        } => {
            let detail = detail.as_ref().map_or(String::new(), |d| format!(" ({d})"));
            format!(
                "{when} #{:<6} admin  {actor} {action} {target} {outcome}{detail}",
                r.seq
            )
        }
        Entry::Retention { first_kept, .. } => format!(
            "{when} #{:<6} retention: entries before #{first_kept} deleted",
            r.seq
        ),
    }
}

fn verify(c: &Client) -> Result<()> {
    let report: VerifyView = c.get("/v1/audit/verify")?;
    println!("{}", verify_line("audit log", "segments", &report));
    for host in &report.hosts {
        let what = format!("cluster copy of {}", host.host.as_deref().unwrap_or("?"));
        println!("{}", verify_line(&what, "chunks", host));
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::new(Exit::Failure, "the audit log does not verify (see above)").into())
    }
}

/// One line saying whether a chain verified.
fn verify_line(what: &str, pieces: &str, r: &VerifyView) -> String {
    match &r.problem {
        None => format!(
            "{what} verified: {} entries in {} {pieces}, chain and head intact",
            r.entries, r.segments
        ),
        Some(problem) => format!(
            "{what} does not verify: {problem} ({} entries before it verified)",
            r.entries
        ),
    }
}
