//! `keyhole secrets set | list | rm`.
//!
//! Values go in and never come out: `set` asks for the value without echo
//! at a terminal, or reads it from stdin (so it stays out of shell history
//! and `ps`); `list` shows names, provenance, versions, times and topic
//! bindings only. The value is held in zeroizing buffers from the moment
//! it is read until its request is sent.
//!
//! `set --topics GLOB` binds the secret to event topics (repeated, never a
//! comma list: globs such as `user.{created,deleted}` hold commas, and so
//! may topics). Without `--topics` a secret keeps the binding it had, so
//! replacing a value never widens who may read it; `--topics '*'` removes
//! the binding.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result};
use keyhole_store::Provenance;
use zeroize::Zeroizing;

use crate::cli::{ScopeArgs, SecretsCmd};
use crate::client::{Client, query, segment};
use crate::errors::{CliError, Exit};
use crate::requests::{SecretQuery, SetSecret};
use crate::views::{Data, SecretView, SecretsView, secret_id};

pub fn run(c: &Client, cmd: SecretsCmd) -> Result<()> {
    match cmd {
        SecretsCmd::Set {
            name,
            scope,
            value,
            topics,
            expect_version,
            keep_versions,
        } => set(
            c,
            &name,
            &scope,
            value,
            topics,
            expect_version,
            keep_versions,
        ),
        SecretsCmd::Config { versions } => super::history::config(c, versions),
        SecretsCmd::List { scope, json } => list(c, &scope, json),
        SecretsCmd::Show { name, scope, json } => show(c, &name, &scope, json),
        SecretsCmd::Rm { name, scope } => rm(c, &name, &scope),
        SecretsCmd::History { name, scope, json } => {
            super::history::history(c, &name, &scope, json)
        }
        SecretsCmd::Rollback {
            name,
            scope,
            version,
            expect_version,
        } => super::history::rollback(c, &name, &scope, version, expect_version),
        SecretsCmd::Undelete { name, scope } => super::history::undelete(c, &name, &scope),
        SecretsCmd::Destroy {
            name,
            scope,
            version,
            all,
        } => super::history::destroy(c, &name, &scope, version, all),
    }
}

fn list_path(scope: &ScopeArgs) -> Result<String> {
    Ok(format!(
        "/v1/secrets{}",
        query(&SecretQuery {
            environment_id: Some(scope.env.clone()),
            space_id: scope.space.clone(),
            actor_id: None,
        })?
    ))
}

fn set(
    c: &Client,
    name: &str,
    scope: &ScopeArgs,
    value: Option<String>,
    topics: Vec<String>,
    expect_version: Option<u64>,
    keep_versions: Option<u64>,
) -> Result<()> {
    // Everything that can be checked is, before asking for a value that
    // could not be stored: the name, the scope (and the right to it), and
    // that the store is unsealed.
    keyhole_store::validate_name(name)?;
    c.get::<SecretsView>(&list_path(scope)?)?;
    c.require_unsealed()?;
    let value = match value {
        Some(v) => {
            eprintln!(
                "warning: --value leaves the secret in your shell history and the process list; \
                 prefer piping it on stdin"
            );
            Zeroizing::new(v)
        }
        None => read_value(name)?,
    };
    let written: SecretsView = c.post(
        "/v1/secrets",
        &SetSecret {
            name: name.to_owned(),
            value,
            environment_id: Some(scope.env.clone()),
            space_id: scope.space.clone(),
            actor_id: None,
            topics: (!topics.is_empty()).then_some(topics),
            expected_version: expect_version,
            keep_versions,
        },
    )?;
    let target = scope.target();
    let revision = written.revision;
    let written = written
        .data
        .iter()
        .find(|s| s.name == name && s.space_id == scope.space);
    let version = written.map_or(0, |s| s.version);
    println!("set {name} in {target} (version {version})");
    if let Some(s) = written.filter(|s| s.topics != ["*"]) {
        println!(
            "listeners read it only during events on topics {}",
            s.topics.join(", ")
        );
    }
    if let Some(r) = revision {
        println!("store revision {r} (`emit --min-revision {r}` runs after it on any host)");
    }
    Ok(())
}

/// The value: asked for without echo at a terminal, else read from stdin
/// (one trailing newline stripped).
fn read_value(name: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("value of {name} (input is hidden): "))
                .context("reading the secret value from the terminal")?,
        )
    } else {
        // At most a value's size (and a line end), into a buffer that
        // never grows: a growing one would leave copies of the value in
        // memory it freed, unzeroized; and `< /dev/zero` must end.
        let limit = keyhole_store::MAX_VALUE_LEN + 2;
        let mut bytes = Zeroizing::new(Vec::with_capacity(limit + 1));
        stdin
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .context("reading the secret value from stdin")?;
        if bytes.len() > limit {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "invalid secret value: longer than {} bytes",
                    keyhole_store::MAX_VALUE_LEN
                ),
            )
            .into());
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::new(Exit::Usage, "invalid secret value: must be UTF-8 text"))?;
        Zeroizing::new(text.to_owned())
    };
    if text.is_empty() {
        return Err(CliError::new(Exit::Usage, "invalid secret value: must not be empty")
            .hint(format!(
                "pipe the value in, e.g. `printf %s \"$VALUE\" | keyhole secrets set {name} --env ENV`"
            ))
            .into());
    }
    Ok(text)
}

fn list(c: &Client, scope: &ScopeArgs, json: bool) -> Result<()> {
    let effective: SecretsView = c.get(&list_path(scope)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&effective.data)?);
        return Ok(());
    }
    let place = match &scope.space {
        Some(s) => format!("environment {} / space {s}", scope.env),
        None => format!("environment {}", scope.env),
    };
    if effective.data.is_empty() {
        println!("no secrets in {place}");
        return Ok(());
    }
    println!("secrets in {place} (values are never shown):");
    println!(
        "{:<32} {:<24} {:>7}  {:<24}  TOPICS",
        "NAME", "FROM", "VERSION", "UPDATED"
    );
    for s in &effective.data {
        let from = match (&s.provenance, &s.space_id) {
            (Provenance::SpaceOverride, Some(space)) => format!("space override ({space})"),
            _ => format!("environment ({})", s.environment_id),
        };
        println!(
            "{:<32} {:<24} {:>7}  {:<24}  {}",
            s.name,
            from,
            s.version,
            s.updated_at,
            s.topics.join(", ")
        );
    }
    Ok(())
}

fn show(c: &Client, name: &str, scope: &ScopeArgs, json: bool) -> Result<()> {
    keyhole_store::validate_name(name)?;
    let path = format!("/v1/secrets/{}", segment(&secret_id(&scope.target(), name)));
    let one: Data<SecretView> = c.get(&path)?;
    let s = one.data;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "{} in {} (its value is never shown)",
        s.name,
        scope.target()
    );
    println!("  id:       {}", s.id);
    println!("  version:  {}", s.version);
    println!("  created:  {}", s.created_at);
    println!("  updated:  {}", s.updated_at);
    Ok(())
}

fn rm(c: &Client, name: &str, scope: &ScopeArgs) -> Result<()> {
    keyhole_store::validate_name(name)?;
    let target = scope.target();
    let path = format!("/v1/secrets/{}", segment(&secret_id(&target, name)));
    c.delete::<SecretsView>(&path)?;
    println!(
        "removed {name} from {target} (its last value is kept: `keyhole secrets undelete` brings it back, `keyhole secrets destroy --all` erases it)"
    );
    Ok(())
}
