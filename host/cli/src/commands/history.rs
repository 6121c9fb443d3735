//! `keyhole secrets history | rollback | undelete | destroy`: a secret's
//! versions. Requests to `/v1/secrets/{id}/...` (`api/history.rs`); no
//! answer holds a value.

use anyhow::Result;

use crate::cli::ScopeArgs;
use crate::client::{Client, segment};
use crate::requests::{Destroy, Rollback, SecretsConfig};
use crate::views::{Data, DestroyedView, SecretsView, VersionView, secret_id};

fn path(name: &str, scope: &ScopeArgs, what: &str) -> Result<String> {
    keyhole_store::validate_name(name)?;
    Ok(format!(
        "/v1/secrets/{}/{what}",
        segment(&secret_id(&scope.target(), name))
    ))
}

pub fn history(c: &Client, name: &str, scope: &ScopeArgs, json: bool) -> Result<()> {
    let versions: Data<Vec<VersionView>> = c.get(&path(name, scope, "history")?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&versions.data)?);
        return Ok(());
    }
    println!(
        "versions of {name} in {} (values are never shown):",
        scope.target()
    );
    println!(
        "{:>7}  {:<10} {:<24}  {:<24}  BY",
        "VERSION", "STATE", "CREATED", "UPDATED"
    );
    for v in &versions.data {
        let state = serde_json::to_value(v.state)?;
        println!(
            "{:>7}  {:<10} {:<24}  {:<24}  {}",
            v.version,
            state.as_str().unwrap_or_default(),
            v.created_at,
            v.updated_at,
            v.by.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// The version `name` has in `written` (the scope's effective secrets).
fn version_in(written: &SecretsView, name: &str, scope: &ScopeArgs) -> u64 {
    written
        .data
        .iter()
        .find(|s| s.name == name && s.space_id == scope.space)
        .map_or(0, |s| s.version)
}

pub fn rollback(
    c: &Client,
    name: &str,
    scope: &ScopeArgs,
    version: u64,
    expect_version: Option<u64>,
) -> Result<()> {
    let written: SecretsView = c.post(
        &path(name, scope, "rollback")?,
        &Rollback {
            version,
            expected_version: expect_version,
        },
    )?;
    println!(
        "rolled {name} in {} back to the value of version {version} (now version {})",
        scope.target(),
        version_in(&written, name, scope)
    );
    Ok(())
}

pub fn undelete(c: &Client, name: &str, scope: &ScopeArgs) -> Result<()> {
    let written: SecretsView = c.post(&path(name, scope, "undelete")?, &serde_json::json!({}))?;
    println!(
        "undeleted {name} in {} (version {})",
        scope.target(),
        version_in(&written, name, scope)
    );
    Ok(())
}

pub fn destroy(
    c: &Client,
    name: &str,
    scope: &ScopeArgs,
    versions: Vec<u64>,
    all: bool,
) -> Result<()> {
    let done: DestroyedView = c.post(&path(name, scope, "destroy")?, &Destroy { versions, all })?;
    let list = done
        .destroyed
        .iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "destroyed {} of {name} in {}: {}",
        if done.destroyed.len() == 1 {
            "version"
        } else {
            "versions"
        },
        scope.target(),
        if list.is_empty() {
            "none left to destroy".into()
        } else {
            list
        }
    );
    println!(
        "the scope's data key was rotated; run `keyhole keys rotate` too so that no copy of the \
         old master key opens what the disk may still hold"
    );
    Ok(())
}

pub fn config(c: &Client, versions: Option<u64>) -> Result<()> {
    let now: SecretsConfig = match versions {
        Some(n) => c.post("/v1/secrets/config", &SecretsConfig { versions_kept: n })?,
        None => c.get("/v1/secrets/config")?,
    };
    println!(
        "each secret keeps {} versions, the current one included (unless it says otherwise: `secrets set --keep-versions N`)",
        now.versions_kept
    );
    Ok(())
}
