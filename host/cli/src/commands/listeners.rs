//! `keyhole deploy`, `listeners list | rm`, `emit` and `runs`: the verbs that
//! need the runtime as well as the store.
//!
//! `emit` runs listeners in this process (the data directory is locked by
//! whoever has it open, so this works only while no daemon runs). A guest
//! that fails is reported but is not an error of `emit` itself: the exit
//! code is non-zero only when the host could not dispatch the event.

use anyhow::{Context, Result};
use keyhole_runtime::{DeploySpec, Event, Grants, Limits};

use crate::cli::{DeployArgs, EmitArgs, ListenersCmd, RunsArgs};
use crate::config::Globals;
use crate::errors::{CliError, Exit};
use crate::views::{ListenerView, RunView, duration_text, one_line, outcome_text, rfc3339};

pub fn deploy(g: &Globals, args: DeployArgs) -> Result<()> {
    let module = read_module(&args.file)?;
    let spec = DeploySpec {
        name: args.name,
        environment: args.scope.env,
        space: args.scope.space,
        topics: args.topics,
        grants: Grants {
            environments: args.grant_env,
            spaces: args.grant_space,
        },
        limits: Limits {
            timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: args.memory,
            ..Limits::default()
        },
        allow_http: args.allow_http,
        settings: args.settings,
    };
    let runtime = g.open_runtime()?;
    let name = spec.name.clone();
    let d = Globals::runtime_trail(&runtime)
        .record("listener.deploy", &format!("listener:{name}"), || {
            runtime.deploy(spec, &module)
        })?
        .with_context(|| format!("deploying {}", args.file.display()))?;
    runtime.flush()?;
    println!(
        "deployed {name} (module sha256:{}) to {} on topics {}",
        &d.module_hash[..16],
        scope_text(&d.spec.environment, d.spec.space.as_deref()),
        d.spec.topics.join(", ")
    );
    Ok(())
}

/// The module file's bytes. A missing file is "not found"; a directory (or
/// anything else that is not a file) is invalid input, said plainly.
fn read_module(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::ErrorKind;
    if path.is_dir() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} is a directory; give the path of the listener's component file (.wasm)",
                path.display()
            ),
        )
        .into());
    }
    std::fs::read(path).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::IsADirectory => Exit::Usage,
            _ => Exit::Failure,
        };
        CliError::new(code, format!("reading {}: {e}", path.display())).into()
    })
}

fn scope_text(env: &str, space: Option<&str>) -> String {
    match space {
        Some(s) => format!("env {env} / space {s}"),
        None => format!("env {env}"),
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

pub fn listeners(g: &Globals, cmd: ListenersCmd) -> Result<()> {
    let runtime = g.open_runtime()?;
    match cmd {
        ListenersCmd::List { json } => {
            let views: Vec<ListenerView> = runtime
                .deployments()
                .iter()
                .map(ListenerView::from)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!(
                    "no listeners (deploy one with `keyhole deploy FILE.wasm --name N --env E`)"
                );
            }
            for v in views.iter().filter(|_| !json) {
                let l = &v.limits;
                let settings: Vec<String> =
                    v.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{}", v.name);
                println!(
                    "  scope:      {}",
                    scope_text(&v.environment_id, v.space_id.as_deref())
                );
                println!("  topics:     {}", v.topics.join(", "));
                println!(
                    "  grants:     environments: {}; spaces: {}",
                    list_or_dash(&v.grants.environments),
                    list_or_dash(&v.grants.spaces)
                );
                println!(
                    "  limits:     timeout {}, memory {}, {} HTTP requests, {} per response",
                    humantime::format_duration(std::time::Duration::from_millis(l.timeout_ms)),
                    bytesize::ByteSize(l.memory_bytes),
                    l.max_http_requests,
                    bytesize::ByteSize(l.max_http_response_bytes)
                );
                println!("  allow-http: {}", list_or_dash(&v.allow_http));
                println!("  settings:   {}", list_or_dash(&settings));
                println!("  module:     sha256:{}", v.module_hash);
                println!("  deployed:   {}", v.deployed_at);
            }
        }
        ListenersCmd::Rm { name } => {
            Globals::runtime_trail(&runtime).record(
                "listener.undeploy",
                &format!("listener:{name}"),
                || runtime.undeploy(&name),
            )??;
            println!("removed listener {name}");
        }
    }
    Ok(())
}

pub fn emit(g: &Globals, args: EmitArgs) -> Result<()> {
    let runtime = g.open_runtime()?;
    let event = Event::new(&args.topic, &args.scope.env, args.scope.space.as_deref())
        .with_payload(args.payload);
    let runs = runtime.emit_blocking(&event)?;
    runtime.flush()?;
    println!(
        "event {} on {} ({}): {} run{}",
        event.id,
        event.topic,
        scope_text(&event.environment, event.space.as_deref()),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    if runs.is_empty() {
        println!("  no listener matched (see `keyhole listeners list`)");
    }
    for r in &runs {
        println!(
            "  {:<20} {:<12} {:>9}  {}",
            r.listener,
            r.outcome.label(),
            duration_text(r.duration_us),
            one_line(&outcome_text(&r.outcome), 200)
        );
    }
    Ok(())
}

pub fn runs(g: &Globals, args: RunsArgs) -> Result<()> {
    let runtime = g.open_runtime()?;
    let runs = runtime.runs(args.listener.as_deref(), args.limit)?;
    if args.json {
        let views: Vec<RunView> = runs.into_iter().map(RunView::from).collect();
        println!("{}", serde_json::to_string(&views)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs recorded");
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:<24} {:<12} {:>9}  DETAIL",
        "STARTED", "LISTENER", "TOPIC", "OUTCOME", "DURATION"
    );
    for r in &runs {
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
                    format!("{} {}{} -> {status}", c.method, c.host, c.path)
                })
                .collect();
            detail.push_str(&format!(" [http: {}]", calls.join("; ")));
        }
        println!(
            "{:<24} {:<20} {:<24} {:<12} {:>9}  {}",
            rfc3339(r.started_at_ms),
            r.listener,
            one_line(&r.topic, 24),
            r.outcome.label(),
            duration_text(r.duration_us),
            detail
        );
    }
    Ok(())
}
