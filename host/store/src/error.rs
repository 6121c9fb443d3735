//! The store's one error type.
//!
//! Errors travel far: into CLI output, logs, run records and (through the
//! runtime) into guests as WIT `secret-error` strings. So every message is a
//! single line that names the rule or record involved and **never** carries a
//! secret value. User-supplied names and ids are shown only as a truncated,
//! escaped preview, so a hostile 10 MiB "name" cannot flood a log line.

use std::fmt;
use std::path::PathBuf;

use keyhole_kv::KvError;

use crate::model::Scope;

/// Longest preview of a user-supplied name or id inside an error message.
const PREVIEW_CHARS: usize = 40;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid secret name {}: {rule}", Preview(.name))]
    InvalidName { name: String, rule: &'static str },
    #[error("invalid id {}: {rule}", Preview(.id))]
    InvalidId { id: String, rule: &'static str },
    #[error("invalid secret value: {rule}")]
    InvalidValue { rule: &'static str },
    /// A topic glob a secret was to be bound to breaks a rule.
    #[error("invalid topic glob {}: {rule}", Preview(.topic))]
    InvalidTopics { topic: String, rule: String },
    #[error("unknown environment {}", Preview(.0))]
    UnknownEnvironment(String),
    #[error("unknown space {}", Preview(.0))]
    UnknownSpace(String),
    #[error("space {} does not belong to environment {}", Preview(.space), Preview(.environment))]
    SpaceNotInEnvironment { space: String, environment: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Space ids are one namespace across environments. Carries the owning
    /// environment; whether a caller may be told it is the caller's call.
    #[error("space {} already exists in environment {}", Preview(.space), Preview(.environment))]
    SpaceExists { space: String, environment: String },
    /// A deletion of the scope has begun and not finished (or cancelled):
    /// deleting it again finishes it.
    #[error("{} is being deleted; delete it again to finish", ScopeName(.0))]
    BeingDeleted(Scope),
    #[error("no secret {} in {scope}", Preview(.name))]
    NotFound { scope: Scope, name: String },
    /// A check-and-set write expected another current version (0: that
    /// the secret does not exist yet); nothing was written.
    #[error("secret {} in {scope} is at version {found}, not {expected}", Preview(.name))]
    VersionMismatch {
        scope: Scope,
        name: String,
        expected: u64,
        found: u64,
    },
    /// The version asked for is neither current nor kept in the history
    /// (never written, pruned, or destroyed).
    #[error("secret {} in {scope} has no version {version} kept{}", Preview(.name), if *.destroyed { " (it was destroyed)" } else { "" })]
    VersionGone {
        scope: Scope,
        name: String,
        version: u64,
        destroyed: bool,
    },
    /// The operation needs the secret in another state: undeleting a live
    /// secret, destroying the live current version.
    #[error("secret {} in {scope} {why}", Preview(.name))]
    WrongState {
        scope: Scope,
        name: String,
        why: &'static str,
    },
    /// The secret is bound to topics the reading event's topic matches
    /// none of (or the read is for no event at all). For a listener this
    /// is an access denial, like a scope it was not granted.
    #[error("secret {} in {scope} is bound to other topics", Preview(.name))]
    TopicBound { scope: Scope, name: String },
    #[error("sealed: {reason}")]
    Sealed { reason: String },
    #[error("corrupt store record: {what}")]
    Corrupt { what: String },
    #[error("integrity check failed: {what}")]
    Integrity { what: String },
    #[error("data directory {} is in use by another keyhole process", .path.display())]
    Locked { path: PathBuf },
    #[error("key file {}: {reason}", .path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Other writers kept changing what this operation depends on (a key
    /// rotation racing another, say); nothing half-done was left behind.
    #[error("{0} kept changing during the operation; try again")]
    Contended(String),
    #[error("{0}")]
    Backend(KvError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<KvError> for StoreError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Locked { path } => StoreError::Locked { path },
            KvError::Io(io) => StoreError::Io(io),
            other => StoreError::Backend(other),
        }
    }
}

impl StoreError {
    /// True for failures of the store itself rather than of the request:
    /// the caller should report "unavailable", not "not found" or "invalid".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Sealed { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Integrity { .. }
                | StoreError::Contended(_)
                | StoreError::Backend(_)
                | StoreError::Io(_)
        )
    }

    /// "No such scope", in the words of the scope's kind.
    pub(crate) fn unknown(scope: &Scope) -> Self {
        match scope {
            Scope::Environment(id) => StoreError::UnknownEnvironment(id.clone()),
            Scope::Space(id) => StoreError::UnknownSpace(id.clone()),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }

    pub(crate) fn integrity(what: impl Into<String>) -> Self {
        StoreError::Integrity { what: what.into() }
    }
}

/// Renders a user-supplied string as a quoted, escaped, truncated preview.
pub(crate) struct Preview<'a>(pub &'a str);

impl fmt::Display for Preview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, c) in self.0.chars().enumerate() {
            if i == PREVIEW_CHARS {
                f.write_str("…")?;
                break;
            }
            write!(f, "{}", c.escape_debug())?;
        }
        f.write_str("\"")
    }
}

/// `environment "prod"` or `space "team-a"`.
pub(crate) struct ScopeName<'a>(pub &'a Scope);

impl fmt::Display for ScopeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Scope::Environment(id) => write!(f, "environment {}", Preview(id)),
            Scope::Space(id) => write!(f, "space {}", Preview(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_truncates_and_escapes() {
        let long = "a".repeat(10_000);
        let msg = StoreError::InvalidName {
            name: long,
            rule: "r",
        }
        .to_string();
        assert!(msg.len() < 80, "{msg}");
        assert!(msg.contains('…'));
        let msg = StoreError::UnknownSpace("x\ny".into()).to_string();
        assert_eq!(msg, "unknown space \"x\\ny\"");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn unavailable_classification() {
        assert!(StoreError::Sealed { reason: "x".into() }.is_unavailable());
        assert!(StoreError::corrupt("x").is_unavailable());
        assert!(StoreError::integrity("x").is_unavailable());
        assert!(!StoreError::UnknownSpace("x".into()).is_unavailable());
        assert!(
            !StoreError::InvalidValue {
                rule: "must not be empty"
            }
            .is_unavailable()
        );
    }
}
