//! Where the store's records live: one bucket, [`BUCKET`], with a key
//! prefix per kind of record.
//!
//! | key | record |
//! | --- | --- |
//! | `env/<id>` | an environment |
//! | `space/<id>` | a space (names its environment) |
//! | `secret/<scope>/<name>` | a sealed secret value, or a deleted one's tombstone |
//! | `version/<scope>/<name>/<version>` | an older version of a secret, kept sealed (`history.rs`) |
//! | `keep/<scope>/<name>` | how many versions of that secret are kept, when not the store's setting |
//! | `history-keep` | how many versions of each secret are kept (absent: 10) |
//! | `dek/<scope>/<version>` | a data key, wrapped under a master key version |
//! | `dek-current/<scope>` | which DEK version new values are sealed under |
//! | `kek-check/<version>` | a marker sealed under one master key version |
//! | `kek-current` | which master key version new DEKs are wrapped under |
//! | `audit-root` | the audit log's root key, wrapped under the master key |
//!
//! `<scope>` is `env=<id>` or `space=<id>` and versions are 16 hex digits,
//! so keys sort by version and every key is a valid JetStream KV key.
//! Ids, names and versions never contain `/`, so a prefix scan over
//! `secret/<scope>/` returns exactly one scope's records.
//!
//! One bucket, rather than one per kind, because its revisions then order
//! every change to the store: a cache that has applied revision R has seen
//! all of them, whatever they touched.

use smallvec::SmallVec;

use crate::model::Scope;

/// The store's bucket.
pub(crate) const BUCKET: &str = "store";

pub(crate) const ENV_PREFIX: &[u8] = b"env/";
pub(crate) const SPACE_PREFIX: &[u8] = b"space/";
pub(crate) const SECRET_PREFIX: &[u8] = b"secret/";
pub(crate) const VERSION_PREFIX: &[u8] = b"version/";
pub(crate) const DEK_PREFIX: &[u8] = b"dek/";
pub(crate) const KEK_CHECK_PREFIX: &[u8] = b"kek-check/";
pub(crate) const KEK_CURRENT: &[u8] = b"kek-current";
/// The audit log's root key, wrapped under the KEK.
pub(crate) const AUDIT_ROOT: &[u8] = b"audit-root";

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn scope_segment(scope: &Scope) -> (&'static [u8], &[u8]) {
    match scope {
        Scope::Environment(id) => (b"env=", id.as_bytes()),
        Scope::Space(id) => (b"space=", id.as_bytes()),
    }
}

fn hex_version(version: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((version >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Parses the 16-hex-digit version at the end of a key.
pub(crate) fn version_suffix(key: &[u8]) -> Option<u64> {
    let hex = key.get(key.len().checked_sub(16)?..)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

pub(crate) fn env(id: &str) -> Vec<u8> {
    key(&[ENV_PREFIX, id.as_bytes()])
}

pub(crate) fn space(id: &str) -> Vec<u8> {
    key(&[SPACE_PREFIX, id.as_bytes()])
}

/// `secret/<scope>/`: prefix of one scope's secrets.
pub(crate) fn secrets_of(scope: &Scope) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[SECRET_PREFIX, tag, id, b"/"])
}

/// `version/<scope>/`: prefix of one scope's kept older versions.
pub(crate) fn versions_of(scope: &Scope) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[VERSION_PREFIX, tag, id, b"/"])
}

/// `version/<scope>/<name>/`: prefix of one secret's kept older versions.
pub(crate) fn versions_of_secret(scope: &Scope, name: &str) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[VERSION_PREFIX, tag, id, b"/", name.as_bytes(), b"/"])
}

/// `keep/<scope>/`: prefix of one scope's per-secret history sizes.
pub(crate) fn keeps_of(scope: &Scope) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[b"keep/", tag, id, b"/"])
}

pub(crate) fn keep(scope: &Scope, name: &str) -> Vec<u8> {
    [keeps_of(scope), name.as_bytes().to_vec()].concat()
}

pub(crate) fn kept_version(scope: &Scope, name: &str, version: u64) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[
        VERSION_PREFIX,
        tag,
        id,
        b"/",
        name.as_bytes(),
        b"/",
        &hex_version(version),
    ])
}

/// The name in a `version/<scope>/<name>/<version>` key, given the scope's
/// prefix ([`versions_of`]).
pub(crate) fn kept_name<'k>(key: &'k [u8], scope_prefix: &[u8]) -> Option<&'k [u8]> {
    let rest = key.strip_prefix(scope_prefix)?;
    rest.get(..rest.len().checked_sub(17)?)
}

pub(crate) fn secret(scope: &Scope, name: &str) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[SECRET_PREFIX, tag, id, b"/", name.as_bytes()])
}

/// [`secret`] on the stack for the usual key: the read path only looks it
/// up, and copies it to the heap only to cache a record it fetched.
pub(crate) fn secret_inline(scope: &Scope, name: &str) -> SmallVec<[u8; 128]> {
    let (tag, id) = scope_segment(scope);
    let mut k = SmallVec::new();
    for part in [SECRET_PREFIX, tag, id, b"/", name.as_bytes()] {
        k.extend_from_slice(part);
    }
    k
}

/// `dek/<scope>/`: prefix of one scope's DEKs.
pub(crate) fn deks_of(scope: &Scope) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[DEK_PREFIX, tag, id, b"/"])
}

pub(crate) fn dek(scope: &Scope, version: u64) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[DEK_PREFIX, tag, id, b"/", &hex_version(version)])
}

pub(crate) fn dek_current(scope: &Scope) -> Vec<u8> {
    let (tag, id) = scope_segment(scope);
    key(&[b"dek-current/", tag, id])
}

pub(crate) fn kek_check(version: u64) -> Vec<u8> {
    key(&[KEK_CHECK_PREFIX, &hex_version(version)])
}

/// The scope a `dek/<scope>/<version>` key belongs to.
pub(crate) fn dek_scope(key: &[u8]) -> Option<Scope> {
    let rest = key.strip_prefix(DEK_PREFIX)?;
    let segment = &rest[..rest.iter().rposition(|&b| b == b'/')?];
    let text = std::str::from_utf8(segment).ok()?;
    match text.split_once('=')? {
        ("env", id) => Some(Scope::Environment(id.to_owned())),
        ("space", id) => Some(Scope::Space(id.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous_and_valid_for_jetstream() {
        let e = Scope::Environment("ab".into());
        let s = Scope::Space("ab".into());
        assert_ne!(secret(&e, "X"), secret(&s, "X"));
        assert!(secret(&e, "X").starts_with(&secrets_of(&e)));
        let other = Scope::Environment("a".into());
        assert!(!secret(&e, "X").starts_with(&secrets_of(&other)));
        assert_eq!(version_suffix(&dek(&s, 42)), Some(42));
        assert_eq!(version_suffix(&kek_check(u64::MAX)), Some(u64::MAX));
        assert!(dek(&e, 2) > dek(&e, 1) && dek(&e, 16) > dek(&e, 15));
        assert_eq!(dek_scope(&dek(&s, 7)), Some(s.clone()));
        let valid = |k: &[u8]| {
            k.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(b))
        };
        for k in [
            env("prod"),
            space("team-a"),
            secret(&s, "SLACK.TOKEN_x-1"),
            dek(&e, 3),
            dek_current(&s),
            kek_check(1),
            KEK_CURRENT.to_vec(),
            AUDIT_ROOT.to_vec(),
        ] {
            assert!(valid(&k), "{}", String::from_utf8_lossy(&k));
        }
    }
}
