//! Record types, their encoding, and the associated data (AD) that binds
//! each ciphertext to its place. Where records live in the bucket is
//! `layout.rs`'s business.
//!
//! Records are postcard-encoded inside a versioned enum so the format can
//! grow without guessing. A record that fails to decode is reported as
//! [`StoreError::Corrupt`], never papered over. The formats are those of
//! release 0.1, so migrated records open unchanged. The one addition is a
//! second format of secret record, `V2`, for a secret bound to event topics
//! ([`SecretRecord::topics`]); a secret without topics is written as `V1`,
//! byte for byte as before, so older data and older readers are unaffected.
//!
//! The AD of every ciphertext is length-prefixed and domain-separated, so a
//! ciphertext moved to another name, scope, version or key slot (by a bug or
//! by someone editing the data) fails authentication instead of decrypting
//! into the wrong place. It names the scope by its *AD scope key*, `e:<id>`
//! or `s:<id>` ([`scope_key`]), which is independent of the storage layout.

use serde::{Deserialize, Serialize};

use crate::crypto::NONCE_LEN;
use crate::error::StoreError;
use crate::model::Scope;

/// Plaintext of the KEK check record.
pub(crate) const KEK_CHECK_MARKER: &[u8] = b"keyhole-store kek check v1";

#[derive(Serialize, Deserialize)]
enum Versioned<T> {
    V1(T),
}

pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_allocvec(&Versioned::V1(record)).expect("postcard encoding into a Vec")
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    match postcard::from_bytes::<Versioned<T>>(bytes) {
        Ok(Versioned::V1(r)) => Ok(r),
        Err(e) => Err(StoreError::corrupt(format!("{what}: {e}"))),
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct EnvRecord {
    pub created_at_ms: u64,
}

/// An environment or space record as stored: live, or marked as being
/// deleted. `Live` is variant 0, so its bytes are exactly release 0.1's
/// `Versioned::V1(record)`: existing records decode as live, unchanged.
#[derive(Serialize, Deserialize)]
pub(crate) enum ScopeState<T> {
    Live(T),
    /// A deletion has begun (`deletion/`): the scope is gone for every
    /// read, write, event and deploy, and a retry or the next open
    /// finishes (or, if unforced and no longer empty, cancels) it.
    Deleting {
        record: T,
        mark: DeleteMark,
    },
}

impl<T> ScopeState<T> {
    pub(crate) fn record(&self) -> &T {
        match self {
            ScopeState::Live(r) | ScopeState::Deleting { record: r, .. } => r,
        }
    }

    pub(crate) fn mark(&self) -> Option<DeleteMark> {
        match self {
            ScopeState::Live(_) => None,
            ScopeState::Deleting { mark, .. } => Some(*mark),
        }
    }
}

/// Why and since when a scope is being deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeleteMark {
    /// Take what it holds with it. An unforced deletion goes ahead only
    /// while the scope is empty.
    pub forced: bool,
    pub since_ms: u64,
}

pub(crate) fn encode_scope<T: Serialize>(state: &ScopeState<T>) -> Vec<u8> {
    postcard::to_allocvec(state).expect("postcard encoding into a Vec")
}

pub(crate) fn decode_scope<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &str,
) -> Result<ScopeState<T>, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SpaceRecord<'a> {
    pub environment: &'a str,
    pub created_at_ms: u64,
}

/// A DEK wrapped by one KEK version.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct DekRecord<'a> {
    pub kek_version: u64,
    pub nonce: [u8; NONCE_LEN],
    pub wrapped: &'a [u8],
}

/// The KEK check record: [`KEK_CHECK_MARKER`] sealed under one KEK version.
#[derive(Serialize, Deserialize)]
pub(crate) struct CheckRecord<'a> {
    pub nonce: [u8; NONCE_LEN],
    pub sealed: &'a [u8],
}

/// One secret: metadata in the clear, value sealed under a DEK version,
/// and the topic globs it is bound to (none: readable during every event).
/// The topics are in the clear too, but bound into the value's AD
/// ([`value_ad`]): a record whose binding was edited does not open.
#[derive(Clone)]
pub(crate) struct SecretRecord<'a> {
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub dek_version: u64,
    pub nonce: [u8; NONCE_LEN],
    pub sealed: &'a [u8],
    /// Sorted, without duplicates (`topic_binding::normalize`); empty for
    /// a secret readable on every topic.
    pub topics: Vec<String>,
}

/// The fields every secret record has, as `V1` encoded them.
#[derive(Serialize, Deserialize)]
struct SecretFields<'a> {
    version: u64,
    created_at_ms: u64,
    updated_at_ms: u64,
    dek_version: u64,
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
}

/// A secret record as written: variant 0 (`V1`) is release 0.1's
/// `Versioned::V1(record)`, so unbound secrets keep their old bytes.
/// `Deleted` is the tombstone a (soft) delete leaves.
#[derive(Serialize)]
enum SecretOut<'a> {
    V1(SecretFields<'a>),
    V2(SecretFields<'a>, &'a [String]),
    Deleted(&'a Tombstone),
}

/// The same, as read.
#[derive(Deserialize)]
enum SecretIn<'a> {
    #[serde(borrow)]
    V1(SecretFields<'a>),
    V2(#[serde(borrow)] SecretFields<'a>, Vec<String>),
    Deleted(Tombstone),
}

/// What a deleted secret's record keeps: no ciphertext (its last value is
/// kept in its history, `history.rs`), but its version, so that versions
/// keep growing when the name is written again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub version: u64,
    pub created_at_ms: u64,
    pub deleted_at_ms: u64,
    pub topics: Vec<String>,
}

/// What `secret/<scope>/<name>` holds.
pub(crate) enum Current<'a> {
    Live(SecretRecord<'a>),
    Deleted(Tombstone),
}

impl Current<'_> {
    /// The secret's current version, deleted or not.
    pub(crate) fn version(&self) -> u64 {
        match self {
            Current::Live(r) => r.version,
            Current::Deleted(t) => t.version,
        }
    }
}

pub(crate) fn encode_tombstone(t: &Tombstone) -> Vec<u8> {
    postcard::to_allocvec(&SecretOut::Deleted(t)).expect("postcard encoding into a Vec")
}

/// A record under `secret/`: a live value or a tombstone.
pub(crate) fn decode_current(bytes: &[u8]) -> Result<Current<'_>, StoreError> {
    if let Ok(SecretIn::Deleted(t)) = postcard::from_bytes::<SecretIn<'_>>(bytes) {
        return Ok(Current::Deleted(t));
    }
    decode_secret(bytes).map(Current::Live)
}

pub(crate) fn encode_secret(rec: &SecretRecord<'_>) -> Vec<u8> {
    let fields = SecretFields {
        version: rec.version,
        created_at_ms: rec.created_at_ms,
        updated_at_ms: rec.updated_at_ms,
        dek_version: rec.dek_version,
        nonce: rec.nonce,
        sealed: rec.sealed,
    };
    let out = if rec.topics.is_empty() {
        SecretOut::V1(fields)
    } else {
        SecretOut::V2(fields, &rec.topics)
    };
    postcard::to_allocvec(&out).expect("postcard encoding into a Vec")
}

pub(crate) fn decode_secret(bytes: &[u8]) -> Result<SecretRecord<'_>, StoreError> {
    let (f, topics) = match postcard::from_bytes::<SecretIn<'_>>(bytes) {
        Ok(SecretIn::V1(f)) => (f, Vec::new()),
        // A V2 record always has topics; one without is not what we wrote.
        Ok(SecretIn::V2(f, topics)) if !topics.is_empty() => (f, topics),
        Ok(SecretIn::V2(..)) => return Err(StoreError::corrupt("secret record: empty topics")),
        Ok(SecretIn::Deleted(_)) => {
            return Err(StoreError::corrupt(
                "secret record: a tombstone where a value belongs",
            ));
        }
        Err(e) => return Err(StoreError::corrupt(format!("secret record: {e}"))),
    };
    Ok(SecretRecord {
        version: f.version,
        created_at_ms: f.created_at_ms,
        updated_at_ms: f.updated_at_ms,
        dek_version: f.dek_version,
        nonce: f.nonce,
        sealed: f.sealed,
        topics,
    })
}

/// `e:<id>` or `s:<id>`: how AD names a scope.
pub(crate) fn scope_key(scope: &Scope) -> Vec<u8> {
    let (tag, id) = match scope {
        Scope::Environment(id) => (b"e:", id),
        Scope::Space(id) => (b"s:", id),
    };
    let mut k = Vec::with_capacity(2 + id.len());
    k.extend_from_slice(tag);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Parses a scope key back into a scope.
pub(crate) fn parse_scope_key(key: &[u8]) -> Option<Scope> {
    let id = std::str::from_utf8(key.get(2..)?).ok()?.to_owned();
    match key.get(..2)? {
        b"e:" => Some(Scope::Environment(id)),
        b"s:" => Some(Scope::Space(id)),
        _ => None,
    }
}

pub(crate) fn u64_value(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt(format!("{what}: expected 8 bytes")))
}

fn ad(domain: &[u8], parts: &[&[u8]], numbers: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(domain);
    out.push(0);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    for n in numbers {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// AD of a secret value: (scope, name, secret version, DEK version), and
/// for a topic-bound secret its topics. Without topics it is release 0.1's
/// AD, so existing values open unchanged; with them it is another domain,
/// so adding, removing or changing a binding makes the value fail to open.
pub(crate) fn value_ad(
    scope_key: &[u8],
    name: &str,
    version: u64,
    dek_version: u64,
    topics: &[String],
) -> Vec<u8> {
    if topics.is_empty() {
        return ad(
            b"keyhole-store/value/v1",
            &[scope_key, name.as_bytes()],
            &[version, dek_version],
        );
    }
    let mut parts: Vec<&[u8]> = vec![scope_key, name.as_bytes()];
    parts.extend(topics.iter().map(|t| t.as_bytes()));
    ad(
        b"keyhole-store/value/v2",
        &parts,
        &[version, dek_version, topics.len() as u64],
    )
}

/// Where a sealed value lives, which its AD names: the current record
/// (`secret/`), or a kept older version (`version/`, `history.rs`). A
/// kept version cannot be moved into the current slot (rolling a secret
/// back behind the store's back) without failing to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    History,
}

/// [`value_ad`] for a value in `slot`.
pub(crate) fn slot_ad(
    slot: Slot,
    scope_key: &[u8],
    name: &str,
    version: u64,
    dek_version: u64,
    topics: &[String],
) -> Vec<u8> {
    match slot {
        Slot::Current => value_ad(scope_key, name, version, dek_version, topics),
        Slot::History => {
            let kept = [b"history/", scope_key].concat();
            value_ad(&kept, name, version, dek_version, topics)
        }
    }
}

/// AD of a wrapped DEK: (scope, DEK version, KEK version).
pub(crate) fn dek_ad(scope_key: &[u8], dek_version: u64, kek_version: u64) -> Vec<u8> {
    ad(
        b"keyhole-store/dek/v1",
        &[scope_key],
        &[dek_version, kek_version],
    )
}

/// AD of the KEK check record: the KEK version.
pub(crate) fn check_ad(kek_version: u64) -> Vec<u8> {
    ad(b"keyhole-store/kek-check/v1", &[], &[kek_version])
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
