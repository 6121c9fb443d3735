//! Who is calling, and what they may do: named, scoped API tokens.
//!
//! - `roles.rs`: permissions and the roles that bundle them (the one table).
//! - `records.rs`: tokens as stored (bucket `api`, only a sha256 of each),
//!   creating, listing, rotating and revoking them, and the release 0.1
//!   admin hash carried over as the token named `admin`.
//! - `view.rs`: the daemon's in-memory copy of the tokens, kept true by the
//!   bucket's watch, so a revocation applies to the next request; presented
//!   tokens are compared with every stored hash in constant time.
//!
//! A [`Principal`] is the caller of one operation: a token, or the local
//! user running a CLI verb on the data directory itself (who holds the
//! files, and so is treated as admin). Its [`Principal::actor`] is the name
//! audit entries record.
//!
//! Tokens are `kh_` and 64 hex digits so that secret scanners recognise a
//! leaked one. They exist in clear only in `Zeroizing` buffers on the way to
//! the one place they are printed (the output of `token create` and
//! `POST /v1/tokens`); no `Debug`, error or log line holds one or its hash.

mod records;
mod roles;
mod view;

use std::fmt;

pub use records::{NewToken, Token, Tokens, redact_tokens};
pub use roles::{Permission, Role, UnknownRole, role_names};
pub use view::{Binding, TokenView};

/// Where a token may act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenScope {
    /// Everywhere.
    All,
    /// One environment and its spaces.
    Environment(String),
    /// One space (and reading its merged view, environment secrets included).
    Space { environment: String, space: String },
}

/// Whether a scope reaches a target (an environment, or a space in one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Yes,
    No,
    /// Yes if the target space belongs to the token's environment; the
    /// caller must look that up (and answer "no" for a missing space too,
    /// so the answer says nothing about spaces outside the scope).
    IfSpaceInEnvironment,
}

impl TokenScope {
    /// From the `--env` / `--space` pair; a space needs its environment.
    pub fn from_parts(environment: Option<String>, space: Option<String>) -> Option<Self> {
        match (environment, space) {
            (None, None) => Some(TokenScope::All),
            (Some(e), None) => Some(TokenScope::Environment(e)),
            (Some(environment), Some(space)) => Some(TokenScope::Space { environment, space }),
            (None, Some(_)) => None,
        }
    }

    pub fn environment(&self) -> Option<&str> {
        match self {
            TokenScope::All => None,
            TokenScope::Environment(e) | TokenScope::Space { environment: e, .. } => Some(e),
        }
    }

    pub fn space(&self) -> Option<&str> {
        match self {
            TokenScope::Space { space, .. } => Some(space),
            _ => None,
        }
    }

    /// Whether this scope reaches `environment` (and `space` in it).
    pub fn reaches(&self, environment: &str, space: Option<&str>) -> Reach {
        match self {
            TokenScope::All => Reach::Yes,
            TokenScope::Environment(e) if e != environment => Reach::No,
            TokenScope::Environment(_) if space.is_none() => Reach::Yes,
            TokenScope::Environment(_) => Reach::IfSpaceInEnvironment,
            TokenScope::Space {
                environment: e,
                space: s,
            } => {
                if e == environment && space == Some(s.as_str()) {
                    Reach::Yes
                } else {
                    Reach::No
                }
            }
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenScope::All => f.write_str("all"),
            TokenScope::Environment(e) => write!(f, "env:{e}"),
            TokenScope::Space { environment, space } => {
                write!(f, "env:{environment}/space:{space}")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    Token(String),
    Local(String),
}

/// The caller of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    who: Who,
    pub role: Role,
    pub scope: TokenScope,
}

impl Principal {
    pub fn token(name: &str, role: Role, scope: TokenScope) -> Self {
        Principal {
            who: Who::Token(name.to_string()),
            role,
            scope,
        }
    }

    /// The user running a CLI verb on the data directory itself (no daemon).
    pub fn local() -> Self {
        Principal {
            who: Who::Local(local_user()),
            role: Role::Admin,
            scope: TokenScope::All,
        }
    }

    /// Who did it, for audit entries: `token:NAME` or `local:USER`.
    pub fn actor(&self) -> String {
        match &self.who {
            Who::Token(name) => format!("token:{name}"),
            Who::Local(user) => format!("local:{user}"),
        }
    }

    /// `token `ci` (role deployer, scope env:prod)`, for denials.
    pub fn describe(&self) -> String {
        let who = match &self.who {
            Who::Token(name) => format!("token `{name}`"),
            Who::Local(user) => format!("local user `{user}`"),
        };
        match &self.scope {
            TokenScope::All => format!("{who} (role {})", self.role),
            scope => format!("{who} (role {}, scope {scope})", self.role),
        }
    }
}

/// The OS user: `USER`, else `LOGNAME`, else the numeric uid.
fn local_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_string();
        }
    }
    format!("uid{}", rustix::process::getuid().as_raw())
}

/// Errors unless the environment (and space in it) a token is to be
/// limited to exist.
pub fn check_scope_exists(
    store: &keyhole_store::SecretStore,
    scope: &TokenScope,
) -> Result<(), keyhole_store::StoreError> {
    match scope {
        TokenScope::All => Ok(()),
        TokenScope::Environment(e) => store.check_scope(e, None),
        TokenScope::Space { environment, space } => store.check_scope(environment, Some(space)),
    }
}

/// Largest token name.
pub const MAX_NAME_LEN: usize = 64;

/// Token names: 1-64 of `A-Za-z0-9_-`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Everything creating, changing or reading tokens can fail with. Messages
/// carry token names, never a token or its hash.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is not echoed: a pasted token must not end up in an error.
    #[error("invalid token name: use 1-64 of A-Z a-z 0-9 _ -")]
    InvalidName,
    #[error("role {0} cannot be limited to a scope: it acts on the whole installation")]
    Unscopable(Role),
    #[error("a space scope needs its environment too (--env ENV --space SPACE)")]
    SpaceWithoutEnvironment,
    #[error("invalid expiry: {0}")]
    InvalidExpiry(String),
    #[error("a token named {0} already exists")]
    Exists(String),
    #[error("no token named {0}")]
    NotFound(String),
    #[error("token {0} kept changing while being updated; try again")]
    Contended(String),
    #[error("corrupt token record: {0}")]
    Corrupt(String),
    #[error("token storage: {0}")]
    Storage(#[from] keyhole_kv::KvError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_reach_their_own_targets_only() {
        let env = TokenScope::Environment("prod".into());
        assert_eq!(env.reaches("prod", None), Reach::Yes);
        assert_eq!(env.reaches("staging", None), Reach::No);
        assert_eq!(env.reaches("staging", Some("team-a")), Reach::No);
        assert_eq!(
            env.reaches("prod", Some("team-a")),
            Reach::IfSpaceInEnvironment
        );
        let space = TokenScope::from_parts(Some("prod".into()), Some("team-a".into())).unwrap();
        assert_eq!(space.reaches("prod", Some("team-a")), Reach::Yes);
        assert_eq!(space.reaches("prod", None), Reach::No);
        assert_eq!(space.reaches("prod", Some("team-b")), Reach::No);
        assert_eq!(space.reaches("staging", Some("team-a")), Reach::No);
        assert_eq!(TokenScope::All.reaches("any", Some("x")), Reach::Yes);
        assert_eq!(TokenScope::from_parts(None, Some("x".into())), None);
        assert_eq!(space.to_string(), "env:prod/space:team-a");
    }

    #[test]
    fn actors_and_names() {
        let p = Principal::token("ci", Role::Deployer, TokenScope::Environment("prod".into()));
        assert_eq!(p.actor(), "token:ci");
        assert_eq!(p.describe(), "token `ci` (role deployer, scope env:prod)");
        let local = Principal::local();
        assert!(local.actor().starts_with("local:"), "{}", local.actor());
        assert!(local.actor().len() > "local:".len());
        assert_eq!(local.role, Role::Admin);
        for ok in ["admin", "ci-deploy_2", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a.b", "é", &"x".repeat(65), "kh_/x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
