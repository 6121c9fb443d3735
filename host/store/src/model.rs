//! The store's vocabulary: scopes, secret values and the metadata views.
//!
//! Values are write-only outside the runtime, so the types enforce it:
//! [`SecretValue`] has no `Serialize`, prints as `[redacted]` and zeroizes
//! its buffer on drop, while every listing type ([`SecretMeta`],
//! [`EffectiveMeta`]) is `Serialize` and simply has no field that could hold
//! a value.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Who owns a secret: an environment, or one space inside an environment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Environment(String),
    Space(String),
}

impl Scope {
    /// The id of the environment or space.
    pub fn id(&self) -> &str {
        match self {
            Scope::Environment(id) | Scope::Space(id) => id,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Environment(id) => write!(f, "env:{id}"),
            Scope::Space(id) => write!(f, "space:{id}"),
        }
    }
}

/// `env:NAME` or `space:NAME`, as [`Scope`]'s `Display` writes it. The id
/// is not validated here (the store checks ids where it uses them).
impl std::str::FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("env", id)) if !id.is_empty() => Ok(Scope::Environment(id.to_owned())),
            Some(("space", id)) if !id.is_empty() => Ok(Scope::Space(id.to_owned())),
            _ => Err(ParseScopeError),
        }
    }
}

/// A scope that is neither `env:NAME` nor `space:NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected env:NAME or space:NAME")]
pub struct ParseScopeError;

/// A secret value. Zeroized on drop; never printed, never serialized.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }

    /// The plaintext. Callers must not log or persist it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything about a stored secret except its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretMeta {
    pub scope: Scope,
    pub name: String,
    /// Starts at 1 and grows by one on every write of the name.
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The topic globs the secret is bound to: listeners read it only
    /// during events whose topic matches one. Empty: every topic.
    pub topics: Vec<String>,
}

/// One version of a secret, as its history lists it: never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub created_at_ms: u64,
    /// When this version was written (for a destroyed one, when it was
    /// destroyed).
    pub updated_at_ms: u64,
    pub state: VersionState,
}

/// Where a version of a secret stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionState {
    /// The value reads return.
    Current,
    /// An older version, kept sealed: `rollback` can bring its value back.
    Kept,
    /// The secret's last version before it was deleted: `undelete` brings
    /// it back.
    Deleted,
    /// Erased for good (`destroy`): only its number and times remain.
    Destroyed,
}

/// Where an effective secret comes from.
///
/// `SpaceOverride` means the space's own scope holds the name, whether or
/// not the environment defines it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provenance {
    Environment,
    SpaceOverride,
}

/// One entry of the merged environment + space view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EffectiveMeta {
    pub meta: SecretMeta,
    pub provenance: Provenance,
}

/// The outcome of [`resolve`](crate::SecretStore::resolve).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub value: SecretValue,
    pub scope: Scope,
    pub provenance: Provenance,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceInfo {
    pub id: String,
    pub environment: String,
    pub created_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvironmentInfo {
    pub id: String,
    pub created_at_ms: u64,
}

/// Which key a rotation replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationTarget {
    /// The master key (key-encryption key).
    Kek,
    /// The data-encryption key of one scope.
    Dek(Scope),
}

/// What a rotation did, for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub target: RotationTarget,
    /// Version that was current before; `None` if the scope had no DEK yet.
    pub previous_version: Option<u64>,
    pub new_version: u64,
    /// DEKs rewrapped (KEK rotation) or values re-encrypted (DEK rotation).
    pub records_rewritten: usize,
    /// Key versions removed at the end of the rotation.
    pub retired_versions: Vec<u64>,
    /// For a KEK rotation: the key file that now holds the new master key
    /// (and no longer the retired versions, so a backup of the file taken
    /// before no longer opens the store).
    pub key_file: Option<std::path::PathBuf>,
    /// A KEK rotation's first half ([`crate::SecretStore::prepare_kek`]):
    /// `new_version` is in the key file and claimed, but not current yet.
    pub prepared_only: bool,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_never_prints() {
        let v = SecretValue::new("PLANTED-PLAINTEXT-4f1c9e".into());
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(format!("{:#?}", v.clone()), "[redacted]");
        assert_eq!(v.expose(), "PLANTED-PLAINTEXT-4f1c9e");
    }

    #[test]
    fn scope_display() {
        assert_eq!(Scope::Environment("prod".into()).to_string(), "env:prod");
        assert_eq!(Scope::Space("team-a".into()).to_string(), "space:team-a");
    }

    #[test]
    fn scopes_parse_what_they_display() {
        for scope in [
            Scope::Environment("prod".into()),
            Scope::Space("team-a".into()),
        ] {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        for bad in ["prod", "env:", "space:", "vault:x", ""] {
            assert_eq!(bad.parse::<Scope>(), Err(ParseScopeError), "{bad:?}");
        }
        // Only the first colon separates: the rest is the id.
        assert_eq!(
            "env:a:b".parse::<Scope>(),
            Ok(Scope::Environment("a:b".into()))
        );
    }
}
