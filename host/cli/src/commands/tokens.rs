//! `keyhole token`: create, list, revoke and rotate API tokens (requests to
//! `/v1/tokens`), and `reset` (on the data directory itself: the way back
//! in when no admin token is left).
//!
//! A token is printed once, by the verb that makes it, and never again:
//! `list` shows names, roles, scopes and times only.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use zeroize::Zeroizing;

use crate::auth::{Principal, Tokens};
use crate::cli::TokenCmd;
use crate::client::{Client, segment};
use crate::config::Globals;
use crate::requests::CreateToken;
use crate::views::{CreatedToken, TokenInfo};

pub fn run(c: &Client, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create {
            name,
            role,
            env,
            space,
            expires,
        } => {
            let created: CreatedToken = c.post(
                "/v1/tokens",
                &CreateToken {
                    name,
                    role: role.name().to_owned(),
                    environment_id: env,
                    space_id: space,
                    expires_in: expires.map(|d| humantime::format_duration(d).to_string()),
                },
            )?;
            let t = &created.info;
            let expiry = t
                .expires_at
                .as_ref()
                .map_or_else(|| "never expires".to_string(), |at| format!("expires {at}"));
            print_once(
                &format!(
                    "created token {} (role {}, scope {}, {expiry}); shown once, keyhole keeps only its sha256:",
                    t.name, t.role, t.scope
                ),
                &created.token,
            )?;
        }
        TokenCmd::List { json } => list(c, json)?,
        TokenCmd::Revoke { name } => {
            c.delete::<()>(&format!("/v1/tokens/{}", segment(&name)))?;
            println!("revoked token {name}");
        }
        TokenCmd::Rotate { name } => {
            let rotated: CreatedToken =
                c.post_empty(&format!("/v1/tokens/{}/rotate", segment(&name)))?;
            print_once(
                &format!(
                    "new secret for token {} (shown once; the old one no longer works):",
                    rotated.info.name
                ),
                &rotated.token,
            )?;
        }
        TokenCmd::Reset => unreachable!("`token reset` works on the data directory: see `reset`"),
    }
    Ok(())
}

/// `keyhole token reset`: a new `admin` token, made on the data directory
/// itself (there may be no token left to ask the API with). The token file
/// follows, so the CLI keeps working with a daemon.
pub fn reset(g: &Globals) -> Result<()> {
    let store = g.open_store()?;
    let tokens = Tokens::open(&**store.backend())?;
    let me = Principal::local();
    let secret = g
        .trail(&store)?
        .record("token.reset", super::admin::ADMIN_TARGET, || {
            tokens.install_admin(&me.actor())
        })??;
    // The old token is dead now: the new one is printed even when the
    // token file cannot take it, and that failure reported after.
    let file = g
        .token_file
        .as_deref()
        .map(|path| (path, crate::config::write_token_file(path, &secret)));
    if let Some((path, Ok(()))) = &file {
        println!("token file: {} (replaced)", path.display());
    }
    print_once(
        "new admin API token (shown once; the old one no longer works):",
        &secret,
    )?;
    token_file_failure(file)
}

/// After a token was printed: the error of the token file that could not
/// take it, if any, saying the token is above and how to go on.
pub fn token_file_failure(file: Option<(&Path, Result<()>)>) -> Result<()> {
    match file {
        Some((path, Err(e))) => Err(e.context(format!(
            "the admin token is printed above, but the token file {} was not written: \
             give the CLI the token (KEYHOLE_TOKEN) or fix the path",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The one place a token is printed: a heading, then the token on a line
/// of its own.
pub fn print_once(heading: &str, secret: &Zeroizing<String>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{heading}\n{}", secret.as_str())?;
    Ok(())
}

fn list(c: &Client, json: bool) -> Result<()> {
    let infos: Vec<TokenInfo> = c.get("/v1/tokens")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    if infos.is_empty() {
        println!("no tokens (create one with `keyhole token create NAME --role ROLE`)");
        return Ok(());
    }
    println!(
        "{:<24} {:<15} {:<32} {:<25} {:<25} LAST USED",
        "NAME", "ROLE", "SCOPE", "CREATED", "EXPIRES"
    );
    for t in infos {
        let expires = match (&t.expires_at, t.expired) {
            (None, _) => "never".to_string(),
            (Some(at), true) => format!("{at} (expired)"),
            (Some(at), false) => at.clone(),
        };
        println!(
            "{:<24} {:<15} {:<32} {:<25} {:<25} {}",
            t.name,
            t.role,
            t.scope,
            t.created_at,
            expires,
            t.last_used_at.as_deref().unwrap_or("never")
        );
    }
    Ok(())
}
