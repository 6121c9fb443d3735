//! keyhole's storage seam: the one small key-value interface that every piece
//! of persistent state (secrets, data keys, environments, spaces,
//! deployments, tokens) goes through, so that the store, the runtime and the
//! CLI never name a storage engine.
//!
//! The embedded default (`keyhole-kv-embedded`, inside the data
//! directory) is one implementation; a NATS JetStream KV backend is meant to
//! be another. The shape follows what JetStream KV offers, so that backend
//! fits without changes here:
//!
//! * **Buckets** of opaque keys ([`Backend::bucket`]). Bucket names are
//!   `[A-Za-z0-9_-]{1,64}`, valid as JetStream bucket names too.
//! * **Revisions**: every write (put, create, update, delete) is given a
//!   [`Revision`] that grows within a bucket, like a stream sequence. A
//!   revision orders changes across keys; it is not a per-key counter.
//! * **Compare-and-set** instead of transactions: [`Bucket::create`] fails
//!   if the key exists, [`Bucket::update`] and [`Bucket::delete`] only if the
//!   key is still at the revision the caller read, answering [`Cas::Conflict`]
//!   otherwise. There are no multi-key transactions; callers that keep
//!   several keys consistent (key rotation) coordinate through revisions.
//! * **Watches** ([`Bucket::watch`]): an ordered feed of every change after a
//!   revision, which is how a process keeps its caches true when another
//!   process (another host) writes. A watcher that falls too far behind is
//!   told so ([`Change::Lagged`]) and must assume anything changed. A
//!   watch of a backend that lost its connection stalls silently until it
//!   reconnects; [`Bucket::health`] says so, and caches fed by watches are
//!   not served from meanwhile.
//! * **A durability point** ([`Bucket::flush`]): a write is durable once
//!   `flush` returns; callers flush before acknowledging a write.
//! * **Erasure** ([`Bucket::erase_history`]): a backend that keeps earlier
//!   revisions of a key (JetStream KV's history) overwrites them on demand,
//!   so that a destroyed secret or a retired data key leaves no readable
//!   copy behind in the backend's files.
//!
//! **Synchronous, on purpose.** Every caller of the store is synchronous
//! today (guest `get-secret` calls are host functions on the guest's own
//! thread or fiber; the HTTP API runs store calls on the blocking pool), and
//! the hot read path must stay a memory read: callers cache what they read
//! (the store keeps records as stored, still sealed) and invalidate from the
//! watch, so a cache hit touches no backend and allocates nothing; only a
//! miss reaches [`Bucket::get`]. A network backend drives its own client on
//! its own threads and may serve `get` from a watched local mirror; a miss
//! that must go to the network simply blocks its caller, which is a blocking
//! thread by the rule above.
//!
//! [`conformance`] (feature `conformance`) is the behaviour every backend
//! must show, as a test suite each backend runs against itself;
//! [`breakable`] (feature `testing`) a real bucket whose writes a test can
//! break, for callers' tests of a failing store.

#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
pub mod breakable;
#[cfg(feature = "conformance")]
pub mod conformance;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The position of a change in a bucket's history. Grows with every write
/// to the bucket; `0` means "before any change".
pub type Revision = u64;

/// Records outside any bucket, as `(key, value)` in key order.
pub type LegacyRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// A stored value and the revision that wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub revision: Revision,
}

impl std::fmt::Debug for Entry {
    // Values are sealed records or metadata, but never print stored bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("bytes", &self.value.len())
            .field("revision", &self.revision)
            .finish()
    }
}

/// The outcome of a conditional write.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    /// Written at this revision.
    Written(Revision),
    /// The key was not in the expected state (present for `create`, absent
    /// or at another revision for `update`/`delete`); nothing was written.
    Conflict,
}

impl Cas {
    /// The revision written, if any.
    pub fn written(self) -> Option<Revision> {
        match self {
            Cas::Written(r) => Some(r),
            Cas::Conflict => None,
        }
    }
}

/// One change, as a watch delivers it.
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        revision: Revision,
    },
    Delete {
        key: Vec<u8>,
        revision: Revision,
    },
    /// Changes up to `revision` were missed (the watcher fell too far
    /// behind): everything derived from the bucket may be stale.
    Lagged {
        revision: Revision,
    },
}

impl Change {
    pub fn revision(&self) -> Revision {
        match self {
            Change::Put { revision, .. }
            | Change::Delete { revision, .. }
            | Change::Lagged { revision } => *revision,
        }
    }

    /// The key changed, or `None` for [`Change::Lagged`].
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Change::Put { key, .. } | Change::Delete { key, .. } => Some(key),
            Change::Lagged { .. } => None,
        }
    }
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Put {
                key,
                value,
                revision,
            } => write!(
                f,
                "Put({}, {} bytes, r{revision})",
                String::from_utf8_lossy(key),
                value.len()
            ),
            Change::Delete { key, revision } => {
                write!(f, "Delete({}, r{revision})", String::from_utf8_lossy(key))
            }
            Change::Lagged { revision } => write!(f, "Lagged(r{revision})"),
        }
    }
}

/// Everything a backend can fail with. Messages name the bucket or path
/// involved, never a stored value.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Another process holds the backend's data.
    #[error("data directory {} is in use by another keyhole process", .path.display())]
    Locked { path: PathBuf },
    /// A bucket name breaks the naming rule.
    #[error("invalid bucket name {name:?}: use 1-64 of A-Z a-z 0-9 _ -")]
    InvalidBucket { name: String },
    /// Stored bytes are not in the backend's format.
    #[error("corrupt storage record in bucket {bucket}: {what}")]
    Corrupt { bucket: String, what: String },
    #[error("storage i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine's own failure, as text.
    #[error("storage error: {0}")]
    Backend(String),
}

/// A storage backend: a set of named buckets.
pub trait Backend: Send + Sync + 'static {
    /// The bucket `name`, created empty on first use. Cheap to call again;
    /// every handle to one bucket sees the same data and revisions.
    fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>, KvError>;

    /// Records written by an older keyhole outside any bucket (the embedded
    /// layout of release 0.1), as `(key, value)` in key order; `None` if
    /// there is no such data. Other backends never have any.
    fn legacy(&self, name: &str) -> Result<Option<LegacyRecords>, KvError>;

    /// Deletes the legacy data `name` once it has been migrated.
    fn drop_legacy(&self, name: &str) -> Result<(), KvError>;
}

/// Whether a bucket's watches can be trusted now ([`Bucket::health`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// The backend is connected, so its watches deliver changes as they
    /// happen. While it is not, a cache fed by a watch may be stale and
    /// must not be served from.
    pub live: bool,
    /// How many times the backend has lost its connection. A cache filled
    /// before this grew may have missed changes that its watch will only
    /// deliver late: empty it.
    pub breaks: u64,
}

impl Health {
    /// A backend that is never cut off (the embedded one).
    pub const ALWAYS: Health = Health {
        live: true,
        breaks: 0,
    };
}

/// One bucket of keys. See the crate docs for the semantics.
pub trait Bucket: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// The value under `key` and the revision that wrote it.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, KvError>;

    /// Writes `value` whatever is there.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, KvError>;

    /// Writes `value` only if `key` is absent.
    fn create(&self, key: &[u8], value: &[u8]) -> Result<Cas, KvError>;

    /// Writes `value` only if `key` is at revision `expected`.
    fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Cas, KvError>;

    /// Deletes `key` only if it is at revision `expected`.
    fn delete(&self, key: &[u8], expected: Revision) -> Result<Cas, KvError>;

    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, KvError>;

    /// The newest revision of this bucket that this process has seen (its
    /// own writes, and others' once watched). Cheap: callers compare it
    /// with what their caches have applied on every read.
    fn revision(&self) -> Revision;

    /// The newest revision any writer has written to this bucket, so a
    /// revision someone hands in can be told apart from one no write has
    /// reached yet. By default [`Bucket::revision`], right for a backend
    /// only this process writes (the embedded one holds the data
    /// directory's lock); a shared backend asks its server.
    fn written(&self) -> Result<Revision, KvError> {
        Ok(self.revision())
    }

    /// A feed of every change with a revision after `from`, in order.
    fn watch(&self, from: Revision) -> Result<Box<dyn Watch>, KvError>;

    /// Whether this bucket's watches are live now. Cheap (callers check it
    /// on every cached read); backends that are never cut off keep the
    /// default.
    fn health(&self) -> Health {
        Health::ALWAYS
    }

    /// Makes every write acknowledged so far durable.
    fn flush(&self) -> Result<(), KvError>;

    /// Overwrites, in the backend's own storage, every earlier revision of
    /// `key` that it keeps, leaving only the newest write (a value, or a
    /// delete). Call it after replacing or deleting something that must be
    /// gone for good. Bytes a backend frees but does not overwrite are not
    /// history: the embedded backend's are reclaimed by its offline
    /// compaction (`keyhole compact`).
    fn erase_history(&self, key: &[u8]) -> Result<(), KvError>;
}

/// An ordered feed of a bucket's changes.
pub trait Watch: Send + 'static {
    /// The next change, if one is waiting.
    fn try_next(&mut self) -> Result<Option<Change>, KvError>;

    /// The next change, waiting at most `timeout` for one.
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, KvError>;
}

/// Checks a bucket name: 1-64 of `[A-Za-z0-9_-]`.
pub fn validate_bucket_name(name: &str) -> Result<(), KvError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KvError::InvalidBucket {
            name: name.chars().take(65).collect(),
        })
    }
}

/// Moves the legacy data `legacy` into `bucket`, renaming each key with
/// `rekey`, then deletes the legacy data. Returns how many records moved.
/// A key `rekey` cannot place (`Err(why)`) stops the migration before
/// anything is written: legacy data is never dropped unread.
///
/// Crash-safe by order: records are `put` (so a repeated run writes the
/// same keys again), flushed, and only then is the legacy data dropped. A
/// caller must run this before anything else writes to `bucket`.
pub fn migrate_legacy(
    backend: &dyn Backend,
    legacy: &str,
    bucket: &dyn Bucket,
    mut rekey: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<usize, KvError> {
    let Some(records) = backend.legacy(legacy)? else {
        return Ok(0);
    };
    let mut moved = Vec::with_capacity(records.len());
    for (key, value) in &records {
        let new_key = rekey(key).map_err(|what| KvError::Corrupt {
            bucket: legacy.to_owned(),
            what,
        })?;
        moved.push((new_key, value));
    }
    for (key, value) in &moved {
        bucket.put(key, value)?;
    }
    bucket.flush()?;
    backend.drop_legacy(legacy)?;
    bucket.flush()?;
    Ok(moved.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["store", "a", "deploy-ments_2", &"x".repeat(64)] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in ["", "a.b", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(validate_bucket_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_values() {
        let e = Entry {
            value: b"sealed-bytes".to_vec(),
            revision: 3,
        };
        assert!(!format!("{e:?}").contains("sealed"));
        let c = Change::Put {
            key: b"k".to_vec(),
            value: b"sealed-bytes".to_vec(),
            revision: 4,
        };
        assert!(!format!("{c:?}").contains("sealed"));
        assert_eq!(c.revision(), 4);
        assert_eq!(c.key(), Some(&b"k"[..]));
    }
}
