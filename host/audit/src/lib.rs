//! keyhole's audit log: one append-only, tamper-evident entry for every
//! admin action and every `get-secret` call, with who did it. Never a value,
//! never a token.
//!
//! - **Where**: JSON lines in segment files under `DATA/audit/`, written by
//!   a background thread (`keyhole-seglog`): the `get-secret` path only
//!   appends an entry to a buffer under a lock.
//! - **Tamper-evident** (`chain.rs`): entries are chained and authenticated
//!   with a key derived from a root key the store keeps under the master
//!   key; the chain's head is recorded in a bucket of the storage seam;
//!   [`AuditLog::verify`] (`verify.rs`) names the first entry that does not
//!   hold.
//! - **Fails closed**: while the log cannot write, [`AuditLog::secret_read`]
//!   and [`AuditLog::admin`] refuse with [`Unavailable`], and callers must
//!   then refuse what they were about to do (reveal a value, apply a
//!   change). Entries already accepted are never dropped: the writer retries
//!   them, in order, and the log recovers by itself when the disk does.
//! - **Durability**: [`AuditLog::admin`] returns once its entry is on disk,
//!   so an admin write's entry is durable before the write is applied. A
//!   `get-secret` entry is accepted before the value is handed out, and the
//!   run log waits for the audit log to have written every entry accepted
//!   before a run's record ([`AuditLog::appended`] and
//!   [`AuditLog::wait_written`]), so a crash never leaves a recorded run
//!   whose reads are missing here.
//! - **Retention**: beyond `keep` entries the oldest segments are deleted,
//!   and the deletion is itself an entry.

#![forbid(unsafe_code)]

mod chain;
mod entry;
mod mirror;
mod query;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyhole_kv::Bucket;
use keyhole_seglog::{Config, Hooks, SegLog};

pub use chain::AuditKey;
pub use entry::{
    Admin, Entry, Injected, InjectedInto, ReadOutcome, Requested, RequestedScope, Resolved,
    ResolvedScope, SecretRead,
};
pub use mirror::{Mirror, valid_host};
pub use query::{AuditQuery, AuditRecord};
pub use verify::{Problem, VerifyReport};

use chain::{Head, MAC_LEN};

/// How long an admin entry may take to reach the disk before the action is
/// refused.
const ADMIN_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of the chain's head in the heads bucket.
const HEAD_KEY: &[u8] = b"head";

/// The log refused an entry: the caller must not go ahead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit log unavailable ({0})")]
pub struct Unavailable(pub String);

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit log storage error: {0}")]
    Storage(#[from] keyhole_kv::KvError),
    #[error("corrupt audit entry {seq}: {what} (run `keyhole audit verify`)")]
    Corrupt { seq: u64, what: String },
}

/// The audit log of one data directory.
pub struct AuditLog {
    log: SegLog,
    dir: PathBuf,
    key: Arc<AuditKey>,
    heads: Arc<dyn Bucket>,
    mirror: Option<Mirror>,
}

/// What verifying one host's chain in the cluster's copy found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostReport {
    pub host: String,
    #[serde(flatten)]
    pub report: VerifyReport,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Chains each entry onto the one before, records the head, and copies
/// each batch to the cluster (`mirror.rs`).
struct ChainHooks {
    key: Arc<AuditKey>,
    prev: [u8; MAC_LEN],
    heads: Arc<dyn Bucket>,
    mirror: Option<Mirror>,
}

impl Hooks for ChainHooks {
    fn store(&mut self, seq: u64, body: &[u8], out: &mut Vec<u8>) {
        self.prev = chain::store(&self.key, seq, &self.prev, body, out);
    }

    fn after_write(&mut self, first_seq: u64, stored: &[u8]) -> std::io::Result<()> {
        let lines = memchr::memchr_iter(b'\n', stored).count() as u64;
        let last_line = keyhole_seglog::complete_lines(stored)
            .next_back()
            .unwrap_or_default();
        let mac = chain::parse(last_line)
            .map(|s| s.mac)
            .map_err(|e| std::io::Error::other(format!("a stored line does not parse: {e}")))?;
        let head = serde_json::to_vec(&Head::new(&self.key, first_seq + lines - 1, &mac))?;
        if let Some(mirror) = &self.mirror {
            mirror.write_batch(first_seq, stored)?;
            mirror.write_head(&head)?;
        }
        self.heads
            .put(HEAD_KEY, &head)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(())
    }

    fn trimming(&mut self, first_kept: u64) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        entry::write_retention(&mut body, entry::now_ms(), first_kept);
        Some(body)
    }

    fn trimmed(&mut self, first_kept: u64) {
        if let Some(mirror) = &self.mirror
            && let Err(e) = mirror.trim(first_kept)
        {
            tracing::warn!("deleting old entries from the cluster's audit log: {e}");
        }
    }
}

impl AuditLog {
    /// Opens (creating) the log in `dir`, keeping about `keep` entries,
    /// with the chain key derived from `root` and the head in `heads`.
    pub fn open(
        dir: &Path,
        root: &[u8; 32],
        heads: Arc<dyn Bucket>,
        keep: usize,
    ) -> Result<Self, AuditError> {
        Self::open_mirrored(dir, root, heads, keep, None)
    }

    /// [`AuditLog::open`], copying every batch into `mirror` as part of
    /// writing it (cluster mode, `mirror.rs`).
    pub fn open_mirrored(
        dir: &Path,
        root: &[u8; 32],
        heads: Arc<dyn Bucket>,
        keep: usize,
        mirror: Option<Mirror>,
    ) -> Result<Self, AuditError> {
        let key = Arc::new(AuditKey::derive(root));
        let hooks_key = key.clone();
        let hooks_heads = heads.clone();
        let hooks_mirror = mirror.clone();
        let log = SegLog::open(dir, Config::keeping("keyhole-audit", keep), |last, _| {
            let prev = match last.map(chain::parse) {
                None => [0; MAC_LEN],
                Some(Ok(s)) => s.mac,
                Some(Err(why)) => {
                    // Continue the chain anyway; `verify` names the line.
                    tracing::error!(
                        "the last audit entry is malformed ({why}); run `keyhole audit verify`"
                    );
                    [0; MAC_LEN]
                }
            };
            Ok(ChainHooks {
                key: hooks_key,
                prev,
                heads: hooks_heads,
                mirror: hooks_mirror,
            })
        })?;
        Ok(AuditLog {
            log,
            dir: dir.to_path_buf(),
            key,
            heads,
            mirror,
        })
    }

    /// Accepts the entry for one `get-secret` call, before its value is
    /// handed out; refuses while the log cannot write.
    pub fn secret_read(&self, read: &SecretRead<'_>) -> Result<(), Unavailable> {
        self.log
            .try_append(0, |_, out| entry::write_secret_read(out, read))
            .map(drop)
            .map_err(|f| Unavailable(f.0))
    }

    /// Records an admin action and returns once its entry is on disk;
    /// refuses while the log cannot write.
    pub fn admin(&self, admin: &Admin<'_>) -> Result<(), Unavailable> {
        self.log
            .try_append(0, |_, out| entry::write_admin(out, admin))
            .map_err(|f| Unavailable(f.0))?;
        self.log
            .sync(ADMIN_SYNC_TIMEOUT)
            .map_err(|f| Unavailable(f.0))
    }

    /// Accepts an admin entry without waiting for the disk: for refused
    /// requests (401s, 403s), which are refused whether or not the entry
    /// is written, so a flood of them costs no fsync each.
    pub fn admin_unsynced(&self, admin: &Admin<'_>) -> Result<(), Unavailable> {
        self.log
            .try_append(0, |_, out| entry::write_admin(out, admin))
            .map(drop)
            .map_err(|f| Unavailable(f.0))
    }

    /// Entries accepted so far by this process: the mark a run's record
    /// waits for ([`AuditLog::wait_written`]).
    pub fn appended(&self) -> u64 {
        self.log.appended()
    }

    /// Waits (at most `timeout`) until the first `count` entries accepted by
    /// this process are in the files.
    pub fn wait_written(&self, count: u64, timeout: Duration) -> bool {
        self.log.wait_written(count, timeout)
    }

    /// Why the log cannot write, while it cannot.
    pub fn failing(&self) -> Option<String> {
        self.log.failing()
    }

    /// Waits until every accepted entry is on disk.
    pub fn sync(&self, timeout: Duration) -> Result<(), Unavailable> {
        self.log.sync(timeout).map_err(|f| Unavailable(f.0))
    }

    /// Entries matching `query` (see [`AuditQuery`] for the order).
    pub fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        query::run(&self.log, query)
    }

    /// Verifies the whole chain as it is on disk now.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let _ = self
            .log
            .wait_written(self.log.appended(), Duration::from_secs(10));
        let head =
            match self.heads.get(HEAD_KEY)? {
                Some(e) => Some(serde_json::from_slice::<Head>(&e.value).map_err(|e| {
                    AuditError::Corrupt {
                        seq: 0,
                        what: format!("the recorded head: {e}"),
                    }
                })?),
                None => None,
            };
        Ok(verify::verify(&self.dir, &self.key, head.as_ref())?)
    }
}

impl AuditLog {
    /// This host's name in the cluster's copy; `None` on a single host.
    pub fn host(&self) -> Option<&str> {
        self.mirror.as_ref().map(Mirror::host)
    }

    /// The hosts whose chains the cluster's copy holds (empty on a single
    /// host).
    pub fn hosts(&self) -> Result<Vec<String>, AuditError> {
        match &self.mirror {
            Some(m) => Ok(mirror::hosts(&**m.bucket())?),
            None => Ok(Vec::new()),
        }
    }

    /// Verifies every host's chain in the cluster's copy, each against its
    /// recorded head (empty on a single host).
    pub fn verify_cluster(&self) -> Result<Vec<HostReport>, AuditError> {
        let Some(m) = &self.mirror else {
            return Ok(Vec::new());
        };
        let _ = self
            .log
            .wait_written(self.log.appended(), ADMIN_SYNC_TIMEOUT);
        let bucket = &**m.bucket();
        let mut out = Vec::new();
        for host in mirror::hosts(bucket)? {
            let head = mirror::head(bucket, &host)?;
            let pieces = mirror::pieces(bucket, &host)?;
            let count = pieces.len();
            let report = verify::verify_pieces(
                count,
                pieces.into_iter().map(|p| Ok(Some(p))),
                &self.key,
                head.as_ref(),
            )?;
            out.push(HostReport { host, report });
        }
        Ok(out)
    }

    /// Entries of `host`'s chain in the cluster's copy matching `query`
    /// (nothing on a single host).
    pub fn query_host(
        &self,
        host: &str,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let Some(m) = &self.mirror else {
            return Ok(Vec::new());
        };
        let _ = self
            .log
            .wait_written(self.log.appended(), ADMIN_SYNC_TIMEOUT);
        query::select(query, |oldest_first, visit| {
            Ok(mirror::walk(&**m.bucket(), host, oldest_first, visit)?)
        })
    }
}

#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod tests;
