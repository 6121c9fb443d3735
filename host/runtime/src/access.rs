//! What a deployment may read through `get-secret`, decided once when it is
//! deployed or loaded, and the reasons a read is denied.
//!
//! Three rules narrow a listener's reads, each to a [`Denial`] that the
//! guest sees only as `access-denied` (the same as any other denial, so it
//! learns nothing about whether a name or scope exists) while the operator
//! reads the reason in the run record's notes and the audit entry:
//!
//! - **Declared secrets** (`deploy --secret`): names or globs the
//!   deployment may read; none declared means every name in its scopes.
//!   Checked before any lookup.
//! - **Grants bound to the module**: extra scopes (and the deployment's
//!   other grants, see `deploy.rs`) hold for the module sha256 they were
//!   given to. A deployment whose running module is another gets none of
//!   them; its declared secrets still restrict it (a restriction is never
//!   dropped). The stored grants are kept here only to say why.
//! - **Topic-bound secrets** are the store's (`keyhole_store`'s
//!   `resolve_on_topic`); this file only names the reason.
//! - **Injected secrets** (`deploy --inject`, `inject.rs`): the host puts
//!   them into the listener's requests, and never hands them over. Their
//!   names are withheld whatever the scope, declared or not, and whether or
//!   not the grants are bound (a restriction is never dropped).
//!
//! Cost on the event path: the patterns are compiled here, at deploy and
//! load, never per call; a deployment without declared patterns costs one
//! branch per `get-secret`.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::deploy::{Deployment, Grants};
use crate::error::RuntimeError;

/// Most declared secret patterns per deployment.
const MAX_SECRET_PATTERNS: usize = 64;

/// Why a read was denied: in the audit entry (`reason`) and the run
/// record's notes, never in what the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    /// An environment or space outside the own environment, not granted.
    ScopeNotGranted,
    /// A name the deployment did not declare (`--secret`).
    Undeclared,
    /// A scope granted, but to another module than the one running.
    GrantNotBound,
    /// A secret bound to topics the event's topic matches none of.
    TopicMismatch,
    /// A secret the host injects into the deployment's requests.
    Injected,
}

impl Denial {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Denial::ScopeNotGranted => "scope not granted",
            Denial::Undeclared => "name not declared by the deployment",
            Denial::GrantNotBound => "grant not bound to this module",
            Denial::TopicMismatch => "secret bound to other topics",
            Denial::Injected => {
                "secret injected into the listener's requests (deploy --inject), never handed to it"
            }
        }
    }
}

/// A deployment's read rules, ready for the event path.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// Scopes granted beyond the own environment, if bound to the running
    /// module; empty otherwise.
    pub(crate) grants: Grants,
    /// The names the deployment may read; `None`: every name.
    declared: Option<SecretPatterns>,
    /// The names the host injects for it (`--inject`), never read by it;
    /// empty (unallocated) without injections.
    injected: Box<[Box<str>]>,
    /// Grants stored for another module: never applied, kept for the
    /// operator's notes.
    pub(crate) unbound: Option<Unbound>,
}

/// Grants a deployment holds for a module other than the one it runs.
#[derive(Debug)]
pub(crate) struct Unbound {
    pub(crate) grants: Grants,
    /// The run record's note, made once.
    pub(crate) note: String,
}

impl Access {
    /// The rules of `record`: its grants apply only if they were given to
    /// the module it runs.
    pub(crate) fn of(record: &Deployment) -> Result<Self, RuntimeError> {
        let spec = &record.spec;
        let declared = SecretPatterns::new(&spec.secrets)?;
        let injected = spec
            .inject
            .iter()
            .map(|i| i.secret.as_str().into())
            .collect();
        if record.grants_bound() {
            return Ok(Access {
                grants: spec.grants.clone(),
                declared,
                injected,
                unbound: None,
            });
        }
        let note = format!(
            "grants not applied: they were given to module sha256:{}, this is sha256:{}",
            short(&record.grants_sha256),
            short(&record.module_hash)
        );
        Ok(Access {
            grants: Grants::default(),
            declared,
            injected,
            unbound: Some(Unbound {
                grants: spec.grants.clone(),
                note,
            }),
        })
    }

    /// Whether the deployment may read the name at all (before any lookup).
    pub(crate) fn check_name(&self, name: &str) -> Result<(), Denial> {
        if self.injected.iter().any(|n| &**n == name) {
            return Err(Denial::Injected);
        }
        match &self.declared {
            None => Ok(()),
            Some(p) if p.allows(name) => Ok(()),
            Some(_) => Err(Denial::Undeclared),
        }
    }

    /// Whether an explicit read of `environment` (and `space`) is allowed
    /// beyond the own environment, `own`.
    pub(crate) fn check_scope(
        &self,
        own: &str,
        environment: &str,
        space: Option<&str>,
    ) -> Result<(), Denial> {
        let granted = |g: &Grants| {
            g.environments.iter().any(|e| e == environment)
                || space.is_some_and(|s| g.spaces.iter().any(|g| g == s))
        };
        if environment == own || granted(&self.grants) {
            return Ok(());
        }
        match &self.unbound {
            Some(u) if granted(&u.grants) => Err(Denial::GrantNotBound),
            _ => Err(Denial::ScopeNotGranted),
        }
    }
}

/// The first 16 hex digits of a sha256, as messages show it.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Compiled `--secret` patterns.
#[derive(Debug)]
struct SecretPatterns {
    /// One of the patterns is `*`: every name.
    all: bool,
    set: GlobSet,
}

impl SecretPatterns {
    /// `None` when there are no patterns (every name may be read).
    fn new(patterns: &[String]) -> Result<Option<Self>, RuntimeError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            set.add(glob(p)?);
        }
        let set = set
            .build()
            .map_err(|e| RuntimeError::InvalidSpec(format!("secret patterns: {e}")))?;
        Ok(Some(SecretPatterns {
            all: patterns.iter().any(|p| p == "*"),
            set,
        }))
    }

    fn allows(&self, name: &str) -> bool {
        self.all || self.set.is_match(name)
    }
}

/// Glob syntax besides the characters of names.
const GLOB_CHARS: &[u8] = b"*?[]{},!^";

/// Checks one `--secret` pattern, in the user's terms, and compiles it.
fn glob(pattern: &str) -> Result<Glob, RuntimeError> {
    let bad = |rule: &str| {
        let shown: String = pattern.chars().take(64).collect();
        RuntimeError::InvalidSpec(format!("secret pattern {shown:?}: {rule}"))
    };
    if pattern.is_empty() || pattern.len() > keyhole_store::MAX_NAME_LEN {
        return Err(bad("must be 1-256 characters"));
    }
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    if !pattern
        .bytes()
        .all(|b| name_byte(b) || GLOB_CHARS.contains(&b))
    {
        return Err(bad(
            "a secret name or glob may contain only A-Z a-z 0-9 _ . - and the glob characters * ? [ ] { } , !",
        ));
    }
    if !pattern.bytes().any(|b| GLOB_CHARS.contains(&b)) {
        // A plain name: it must be one a secret can have.
        keyhole_store::validate_name(pattern).map_err(|e| bad(&e.to_string()))?;
    } else if pattern
        .as_bytes()
        .first()
        .is_some_and(|&b| name_byte(b) && !(b.is_ascii_alphabetic() || b == b'_'))
    {
        return Err(bad(
            "matches no secret name: names start with a letter or '_'",
        ));
    }
    Glob::new(pattern).map_err(|e| bad(&e.kind().to_string()))
}

/// Checks a spec's `--secret` patterns (at most [`MAX_SECRET_PATTERNS`]).
pub(crate) fn check_patterns(patterns: &[String]) -> Result<(), RuntimeError> {
    if patterns.len() > MAX_SECRET_PATTERNS {
        return Err(RuntimeError::InvalidSpec(format!(
            "at most {MAX_SECRET_PATTERNS} secret patterns"
        )));
    }
    SecretPatterns::new(patterns).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(ps: &[&str]) -> SecretPatterns {
        let owned: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
        SecretPatterns::new(&owned).unwrap().unwrap()
    }

    #[test]
    fn names_and_globs_match_names() {
        let p = patterns(&["SLACK_*", "DB_URL", "api.{key,secret}", "K?"]);
        for yes in ["SLACK_TOKEN", "SLACK_", "DB_URL", "api.key", "K1"] {
            assert!(p.allows(yes), "{yes}");
        }
        for no in ["DB_URL2", "slack_token", "XSLACK_TOKEN", "api.other", "K12"] {
            assert!(!p.allows(no), "{no}");
        }
        assert!(patterns(&["A", "*"]).allows("anything"));
        assert!(SecretPatterns::new(&[]).unwrap().is_none());
    }

    #[test]
    fn bad_patterns_say_why_in_the_users_terms() {
        for (p, says) in [
            ("", "1-256 characters"),
            ("SLACK TOKEN", "may contain only"),
            ("a/b", "may contain only"),
            ("9LIVES", "must start with a letter"),
            ("9*", "matches no secret name"),
            ("SLACK_[", "unclosed character class"),
        ] {
            let e = check_patterns(&[p.to_string()]).unwrap_err().to_string();
            assert!(e.contains(says), "{p:?}: {e}");
            assert!(e.starts_with("invalid deployment: secret pattern"), "{e}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("S{i}")).collect();
        assert!(check_patterns(&many).is_err());
    }
}
