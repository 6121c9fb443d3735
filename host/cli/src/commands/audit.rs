//! `keyhole audit tail | verify`: reading and checking the audit log.
//!
//! Both need the store unsealed: the audit key comes from it. `tail`
//! prints oldest first, so `--follow` reads like a log; a page is the newest
//! `--limit` entries that match.

use std::time::Duration;

use anyhow::Result;
use keyhole_audit::{AuditLog, AuditQuery, AuditRecord, Entry};

use crate::cli::{AuditCmd, AuditTailArgs};
use crate::config::Globals;
use crate::errors::{CliError, Exit};
use crate::views::rfc3339;

/// How often `--follow` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

pub fn run(g: &Globals, cmd: AuditCmd) -> Result<()> {
    let store = g.open_unsealed_store()?;
    let keep = keyhole_runtime::RuntimeConfig::default().max_audit_entries;
    let audit = keyhole_runtime::audit::open(&store, &g.data, keep)?
        .ok_or_else(|| anyhow::anyhow!("the audit log needs the master key"))?;
    match cmd {
        AuditCmd::Tail(args) => tail(&audit, &args),
        AuditCmd::Verify => verify(&audit),
    }
}

fn query(args: &AuditTailArgs) -> AuditQuery {
    let since_ms = args.since.map(|d| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(d).as_millis() as u64
    });
    AuditQuery {
        secret: args.secret.clone(),
        deployment: args.deployment.clone(),
        actor: args.actor.clone(),
        outcome: args.outcome.clone(),
        since_ms,
        before: None,
        after: None,
        limit: args.limit,
    }
}

fn tail(audit: &AuditLog, args: &AuditTailArgs) -> Result<()> {
    let mut q = query(args);
    let mut page = audit.query(&q)?;
    page.reverse();
    let mut last = page.last().map_or(0, |r| r.seq);
    if page.is_empty() && !args.follow && !args.json {
        println!("no audit entries");
    }
    print(&page, args.json)?;
    if !args.follow {
        return Ok(());
    }
    // Follow from the newest entry there is, matching or not: every new
    // entry moves the cursor on, and the matching ones are shown.
    let newest = audit.query(&AuditQuery {
        limit: 1,
        ..AuditQuery::default()
    })?;
    last = last.max(newest.first().map_or(0, |r| r.seq));
    q.since_ms = None;
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let new = audit.query(&AuditQuery {
            after: Some(last),
            limit: 10_000,
            ..AuditQuery::default()
        })?;
        let Some(newest) = new.last() else { continue };
        last = newest.seq;
        let shown: Vec<AuditRecord> = new
            .into_iter()
            .filter(|r| q.matches(r.seq, &r.entry))
            .collect();
        print(&shown, args.json)?;
    }
}

fn print(records: &[AuditRecord], json: bool) -> Result<()> {
    for r in records {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!("{}", line(r));
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
            outcome,
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
            format!(
                "{when} #{:<6} read   {deployment} {name} {}{asked}{from} event {event_id}",
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

fn verify(audit: &AuditLog) -> Result<()> {
    let report = audit.verify()?;
    match &report.problem {
        None => {
            println!(
                "audit log verified: {} entries in {} segments, chain and head intact",
                report.entries, report.segments
            );
            Ok(())
        }
        Some(problem) => Err(CliError::new(
            Exit::Failure,
            format!(
                "audit log does not verify: {problem} ({} entries before it verified)",
                report.entries
            ),
        )
        .into()),
    }
}
