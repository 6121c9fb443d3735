//! `keyhole secrets set | list | rm`.
//!
//! Values go in and never come out: `set` reads the value from stdin by
//! default (so it stays out of shell history and `ps`), `list` shows names,
//! provenance, versions and times only. The value is held in zeroizing
//! buffers from the moment it is read.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result};
use keyhole_store::{Provenance, Scope, SecretValue, StoreError};
use zeroize::Zeroizing;

use crate::cli::{ScopeArgs, SecretsCmd};
use crate::config::Globals;
use crate::errors::{CliError, Exit};
use crate::trail::secret_target;
use crate::views::{SecretView, rfc3339};

pub fn run(g: &Globals, cmd: SecretsCmd) -> Result<()> {
    match cmd {
        SecretsCmd::Set { name, scope, value } => set(g, &name, &scope, value),
        SecretsCmd::List { scope, json } => list(g, &scope, json),
        SecretsCmd::Rm { name, scope } => rm(g, &name, &scope),
    }
}

fn set(g: &Globals, name: &str, scope: &ScopeArgs, value: Option<String>) -> Result<()> {
    keyhole_store::validate_name(name)?;
    let store = g.open_store()?;
    store.check_scope(&scope.env, scope.space.as_deref())?;
    if let Some(reason) = store.sealed_reason() {
        // Say so before waiting for a value that could not be stored.
        return Err(StoreError::Sealed { reason }.into());
    }
    let mut value = match value {
        Some(v) => {
            eprintln!(
                "warning: --value leaves the secret in your shell history and the process list; \
                 prefer piping it on stdin"
            );
            Zeroizing::new(v)
        }
        None => read_stdin(name)?,
    };
    let target = scope.target();
    let value = SecretValue::new(std::mem::take(&mut *value));
    let meta = g
        .trail(&store)?
        .record("secret.set", &secret_target(&target, name), || {
            store.set_secret(&target, name, &value)
        })??;
    println!("set {name} in {} (version {})", meta.scope, meta.version);
    Ok(())
}

/// Reads the value from stdin, stripping one trailing newline.
fn read_stdin(name: &str) -> Result<Zeroizing<String>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("enter the value of {name}, then press Ctrl-D (input is not echoed back):");
    }
    let mut bytes = Zeroizing::new(Vec::new());
    stdin
        .read_to_end(&mut bytes)
        .context("reading the secret value from stdin")?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError::new(Exit::Usage, "invalid secret value: must be UTF-8 text"))?;
    if text.is_empty() {
        return Err(CliError::new(Exit::Usage, "invalid secret value: must not be empty")
            .hint(format!(
                "pipe the value in, e.g. `printf %s \"$VALUE\" | keyhole secrets set {name} --env ENV`"
            ))
            .into());
    }
    Ok(Zeroizing::new(text.to_string()))
}

fn list(g: &Globals, scope: &ScopeArgs, json: bool) -> Result<()> {
    let store = g.open_store()?;
    let effective = store.list_effective(&scope.env, scope.space.as_deref())?;
    if json {
        let views: Vec<SecretView> = effective
            .iter()
            .map(|e| SecretView::new(&e.meta, &scope.env, e.provenance))
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    let place = match &scope.space {
        Some(s) => format!("environment {} / space {s}", scope.env),
        None => format!("environment {}", scope.env),
    };
    if effective.is_empty() {
        println!("no secrets in {place}");
        return Ok(());
    }
    println!("secrets in {place} (values are never shown):");
    println!("{:<32} {:<24} {:>7}  UPDATED", "NAME", "FROM", "VERSION");
    for e in &effective {
        let from = match (&e.provenance, &e.meta.scope) {
            (Provenance::SpaceOverride, Scope::Space(s)) => format!("space override ({s})"),
            (_, scope) => format!("environment ({})", scope.id()),
        };
        println!(
            "{:<32} {:<24} {:>7}  {}",
            e.meta.name,
            from,
            e.meta.version,
            rfc3339(e.meta.updated_at_ms)
        );
    }
    Ok(())
}

fn rm(g: &Globals, name: &str, scope: &ScopeArgs) -> Result<()> {
    keyhole_store::validate_name(name)?;
    let store = g.open_store()?;
    store.check_scope(&scope.env, scope.space.as_deref())?;
    let target = scope.target();
    let trail = g.trail(&store)?;
    if !trail.record("secret.delete", &secret_target(&target, name), || {
        store.delete_secret(&target, name)
    })?? {
        return Err(StoreError::NotFound {
            scope: target,
            name: name.to_string(),
        }
        .into());
    }
    println!("removed {name} from {target}");
    Ok(())
}
