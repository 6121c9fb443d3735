//! `keyhole deploy`, `listeners list | rm` and `emit` (`emit --batch`:
//! `batch.rs`).
//!
//! A guest that fails is reported by `emit` but is not an error of `emit`
//! itself: the exit code is non-zero only when the event could not be
//! dispatched.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{DeployArgs, EmitArgs, ListenersCmd};
use crate::client::{Call, Client, multipart, segment};
use crate::errors::{CliError, Exit};
use crate::requests::{EmitBody, GrantsBody, LimitsBody, ListenerSpec};
use crate::views::{DeployedView, EmitView, ListenerView};

use super::text::{duration_text, one_line, outcome_text};

pub fn deploy(c: &Client, args: DeployArgs) -> Result<()> {
    let module = read_module(&args.file)?;
    let spec = ListenerSpec {
        name: args.name,
        environment_id: args.scope.env,
        space_id: args.scope.space,
        topics: args.topics,
        grants: GrantsBody {
            environments: args.grant_env,
            spaces: args.grant_space,
        },
        limits: LimitsBody {
            timeout_ms: Some(u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX)),
            memory_bytes: Some(args.memory),
            ..LimitsBody::default()
        },
        allow_http: args.allow_http,
        settings: args.settings.into_iter().collect(),
        secrets: args.secrets,
        keep_grants: args.keep_grants,
        inject: args.inject,
    };
    let spec_json = serde_json::to_vec(&spec)?;
    // Compiling a large component takes seconds: say so at a terminal.
    let progress = spinner(format!(
        "deploying {}: uploading and compiling {} ({})",
        spec.name,
        args.file.display(),
        bytesize::ByteSize(module.len() as u64)
    ));
    let deployed: Result<DeployedView> = c.call(Call {
        method: axum::http::Method::POST,
        path: "/v1/listeners".into(),
        body: multipart(&[
            ("spec", "application/json", &spec_json),
            ("module", "application/wasm", &module),
        ]),
    });
    progress.finish_and_clear();
    let deployed = deployed.with_context(|| format!("deploying {}", args.file.display()))?;
    let d = &deployed.listener;
    println!(
        "deployed {} (module sha256:{}) to {} on topics {}",
        d.name,
        short_hash(&d.module_hash),
        scope_text(&d.environment_id, d.space_id.as_deref()),
        d.topics.join(", ")
    );
    for i in &d.inject {
        println!(
            "  injects {} into {} of requests to {} (the listener cannot read it)",
            i.secret, i.header, i.origin
        );
    }
    match &deployed.previous_module_hash {
        Some(old) if *old == d.module_hash => println!("  (same module as before)"),
        Some(old) => println!("  replaced module sha256:{}", short_hash(old)),
        None => {}
    }
    if spec.keep_grants {
        println!("kept the previous deployment's grants for this module");
    }
    if let Some(notice) = &deployed.notice {
        println!("notice: {notice}");
    }
    Ok(())
}

/// A spinner on stderr while a long request runs; hidden when stderr is
/// not a terminal, so pipes and logs stay clean.
fn spinner(message: String) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
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
    use std::io::Read;
    let reading = || format!("reading {}", path.display());
    let failed = |e: std::io::Error| -> anyhow::Error {
        match e.kind() {
            ErrorKind::NotFound => {
                CliError::new(Exit::NotFound, format!("{}: {e}", reading())).into()
            }
            ErrorKind::IsADirectory => {
                CliError::new(Exit::Usage, format!("{}: {e}", reading())).into()
            }
            // The rest stay I/O errors: `errors.rs::io_report` tells a path
            // no file can have (the caller's input) from a failure.
            _ => anyhow::Error::new(e).context(reading()),
        }
    };
    // No more than a module may be (`/dev/zero` would otherwise be read
    // until memory runs out).
    let limit = keyhole_runtime::deploy::MAX_MODULE_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() > limit {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} is larger than the most a listener's component may be ({})",
                path.display(),
                bytesize::ByteSize(limit as u64)
            ),
        )
        .into());
    }
    Ok(bytes)
}

fn short_hash(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

pub(super) fn scope_text(env: &str, space: Option<&str>) -> String {
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

pub fn listeners(c: &Client, cmd: ListenersCmd) -> Result<()> {
    match cmd {
        ListenersCmd::List { json } => {
            let views: Vec<ListenerView> = c.get("/v1/listeners")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if views.is_empty() {
                println!(
                    "no listeners (deploy one with `keyhole deploy FILE.wasm --name N --env E`)"
                );
            }
            for v in views.iter().filter(|_| !json) {
                print_listener(v);
            }
        }
        ListenersCmd::Show { name, json } => {
            let v: ListenerView = c.get(&format!("/v1/listeners/{}", segment(&name)))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_listener(&v);
            }
        }
        ListenersCmd::Rm { name } => {
            c.delete::<()>(&format!("/v1/listeners/{}", segment(&name)))?;
            println!("removed listener {name}");
        }
    }
    Ok(())
}

fn print_listener(v: &ListenerView) {
    let l = &v.limits;
    let settings: Vec<String> = v.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
        humantime::format_duration(Duration::from_millis(l.timeout_ms)),
        bytesize::ByteSize(l.memory_bytes),
        l.max_http_requests,
        bytesize::ByteSize(l.max_http_response_bytes)
    );
    println!("  secrets:    {}", v.secrets.join(", "));
    println!("  allow-http: {}", list_or_dash(&v.allow_http));
    let inject: Vec<String> = v
        .inject
        .iter()
        .map(|i| format!("{}@{}/{}: {}", i.secret, i.origin, i.header, i.template))
        .collect();
    println!("  inject:     {}", list_or_dash(&inject));
    println!("  settings:   {}", list_or_dash(&settings));
    println!("  module:     sha256:{}", v.module_hash);
    if v.grants_sha256 != v.module_hash {
        println!(
            "  grants:     given to module sha256:{}, not this one: not applied",
            v.grants_sha256
        );
    }
    println!("  deployed:   {}", v.deployed_at);
}

pub fn emit(c: &Client, mut args: EmitArgs) -> Result<()> {
    if let Some(file) = args.batch.take() {
        return super::batch::emit_batch(c, args, &file);
    }
    let payload: serde_json::Value = serde_json::from_str(&args.payload).map_err(|e| {
        CliError::new(
            Exit::Usage,
            format!("invalid event: payload is not valid JSON: {e}"),
        )
        .hint("give --payload a JSON document, e.g. --payload '{\"action\":\"notify\"}'")
    })?;
    let body = EmitBody {
        topic: args.topic,
        environment_id: args.scope.env,
        space_id: args.scope.space,
        payload,
        min_revision: args.min_revision,
        id: None,
    };
    let scope = scope_text(&body.environment_id, body.space_id.as_deref());
    let topic = body.topic.clone();
    let answer: EmitView = c.post("/v1/events", &body)?;
    if answer.queued {
        let again = if answer.duplicate {
            " (already queued: nothing new)"
        } else {
            ""
        };
        println!(
            "event {} on {topic} ({scope}): queued for the cluster{again}; see `keyhole runs --event {}`",
            answer.event_id, answer.event_id
        );
        return Ok(());
    }
    let runs = &answer.runs;
    println!(
        "event {} on {topic} ({scope}): {} run{}",
        answer.event_id,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    if runs.is_empty() {
        println!("  no listener matched (see `keyhole listeners list`)");
    }
    for r in runs {
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
