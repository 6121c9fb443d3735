//! `keyhole token`: create, list, revoke and rotate API tokens on the data
//! directory itself (while `keyhole serve` holds it, use its API:
//! `/v1/tokens`).
//!
//! A token is printed once, by the verb that makes it, and never again:
//! `list` shows names, roles, scopes and times only. The verbs act as
//! `local:<os user>` (recorded as the creator of the tokens they make).

use std::io::Write;

use anyhow::Result;
use zeroize::Zeroizing;

use crate::auth::{self, NewToken, Principal, TokenError, TokenScope, Tokens};
use crate::cli::TokenCmd;
use crate::config::Globals;
use crate::views::{TokenInfo, rfc3339};

pub fn run(g: &Globals, cmd: TokenCmd) -> Result<()> {
    let store = g.open_store()?;
    let tokens = Tokens::open(&**store.backend())?;
    let me = Principal::local();
    match cmd {
        TokenCmd::Create {
            name,
            role,
            env,
            space,
            expires,
        } => {
            let scope =
                TokenScope::from_parts(env, space).ok_or(TokenError::SpaceWithoutEnvironment)?;
            if scope != TokenScope::All && !role.scopable() {
                return Err(TokenError::Unscopable(role).into());
            }
            auth::check_scope_exists(&store, &scope)?;
            let target = format!("token:{name} (role {role}, scope {scope})");
            let (token, secret) = g.trail(&store)?.record("token.create", &target, || {
                tokens.create(NewToken {
                    name,
                    role,
                    scope,
                    expires_in: expires,
                    created_by: me.actor(),
                })
            })??;
            let expiry = token.expires_at_ms.map_or_else(
                || "never expires".to_string(),
                |t| format!("expires {}", rfc3339(t)),
            );
            print_once(
                &format!(
                    "created token {} (role {}, scope {}, {expiry}); shown once, keyhole keeps only its sha256:",
                    token.name, token.role, token.scope
                ),
                &secret,
            )?;
        }
        TokenCmd::List { json } => list(&tokens, json)?,
        TokenCmd::Revoke { name } => {
            g.trail(&store)?
                .record("token.revoke", &format!("token:{name}"), || {
                    tokens.revoke(&name)
                })??;
            println!("revoked token {name}");
        }
        TokenCmd::Rotate { name } => {
            let (token, secret) =
                g.trail(&store)?
                    .record("token.rotate", &format!("token:{name}"), || {
                        tokens.rotate(&name)
                    })??;
            print_once(
                &format!(
                    "new secret for token {} (shown once; the old one no longer works):",
                    token.name
                ),
                &secret,
            )?;
        }
        TokenCmd::Reset => {
            let secret =
                g.trail(&store)?
                    .record("token.reset", super::admin::ADMIN_TARGET, || {
                        tokens.install_admin(&me.actor())
                    })??;
            print_once(
                "new admin API token (shown once; the old one no longer works):",
                &secret,
            )?;
        }
    }
    Ok(())
}

/// The one place a token is printed: a heading, then the token on a line
/// of its own.
pub fn print_once(heading: &str, secret: &Zeroizing<String>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{heading}\n{}", secret.as_str())?;
    Ok(())
}

fn list(tokens: &Tokens, json: bool) -> Result<()> {
    let infos: Vec<TokenInfo> = tokens
        .list()?
        .iter()
        .map(|t| TokenInfo::new(t, None))
        .collect();
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
