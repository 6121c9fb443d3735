//! keyhole's embedded storage backend: the `keyhole-kv` seam on sled, in
//! the data directory. The default, and the only code that names sled.
//!
//! Layout: one sled database in `DATA/db`; each bucket is a tree named
//! `kv/<bucket>` whose values are `revision (8 bytes, big-endian) ||
//! value`. Trees without the `kv/` prefix are the pre-seam layout of
//! release 0.1 ([`keyhole_kv::Backend::legacy`]), which the layers that
//! wrote them migrate on open.
//!
//! Revisions come from sled's monotonic id generator, which survives
//! restarts, plus a base that an offline compaction (`compact.rs`,
//! `keyhole compact`) raises when it starts a fresh database, so they only
//! grow. Every write to a bucket runs under that
//! bucket's write lock: compare-and-set is a read and a write inside it,
//! and the change is published to the bucket's watches (`feed.rs`) before
//! the lock is released, so watches see changes in revision order. Reads
//! take no lock. There is no history to watch from before the backend
//! opened: a bucket's revision starts where sled's ids stood then, so what
//! was written before counts as seen (a store waiting for a revision a
//! write returned before a restart has it), and nothing else writes here,
//! so [`keyhole_kv::Bucket::written`] is that revision too.
//!
//! Not for high-volume appends: sled 0.34's per-insert cost was most of the
//! run-log writer's time when run records lived here, and under that load it
//! can deadlock in `flush` (spacejam/sled#1412; seen as a hang dropping the
//! tree after 10,000 hostile runs). Run records and audit entries go to
//! files of their own.
//!
//! One [`EmbeddedKv`] per data directory: it holds an exclusive lock on
//! `DATA/keyhole.lock` for its life (sled's own lock does not tell "another
//! process" from "this process, a moment ago"). Clones share everything, so
//! several stores in one process ("hosts" in tests) can share one backend.
//!
//! The directories it creates (`DATA`, `DATA/db`) are mode 0700 and the
//! lock file 0600: what lies below is for keyhole's user only (see the
//! `keyhole` binary's `datadir.rs` for the whole policy).

#![forbid(unsafe_code)]

mod bucket;
mod compact;
mod feed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyhole_kv::{Backend, Bucket, KvError, LegacyRecords, validate_bucket_name};

use crate::bucket::SledBucket;
pub use crate::compact::Compacted;

/// The sled database's directory inside the data directory.
const DB_DIR: &str = "db";

/// Prefix of the trees that hold buckets.
const BUCKET_TREE_PREFIX: &str = "kv/";

/// sled's page cache. Its default is 1 GiB; 64 MiB keeps hot records cached
/// while bounding memory.
const CACHE_BYTES: u64 = 64 << 20;

/// The embedded backend of one data directory.
#[derive(Clone)]
pub struct EmbeddedKv {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    /// Added to sled's ids to make revisions ([`compact::revision_base`]).
    revision_base: u64,
    /// Where every bucket's revision starts: everything written before
    /// the backend opened counts as seen (there is no history to watch),
    /// so a revision a write returned before a restart is one a store has
    /// applied, not one it waits for.
    opened_at: u64,
    buckets: Mutex<HashMap<String, Arc<SledBucket>>>,
    /// Declared last: released only after the database has been dropped.
    _lock: DirLock,
}

impl std::fmt::Debug for EmbeddedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKv").finish_non_exhaustive()
    }
}

impl EmbeddedKv {
    /// Opens (creating) the backend in `data_dir`. Fails with
    /// [`KvError::Locked`] while another process has it open.
    pub fn open(data_dir: &Path) -> Result<Self, KvError> {
        create_private_dir(data_dir)?;
        let lock = DirLock::acquire(data_dir)?;
        compact::finish_interrupted(data_dir)?;
        create_private_dir(&data_dir.join(DB_DIR))?;
        let db = open_sled(data_dir, DB_DIR)?;
        let revision_base = compact::revision_base(&db)?;
        // Above every revision written before this open (sled's ids are
        // monotonic across restarts and crashes; a write's revision is the
        // base plus its id plus one), and below every one after.
        let opened_at = revision_base + db.generate_id().map_err(db_error)?;
        Ok(EmbeddedKv {
            inner: Arc::new(Inner {
                db,
                revision_base,
                opened_at,
                buckets: Mutex::default(),
                _lock: lock,
            }),
        })
    }

    /// Rewrites the database in `data_dir` so that what was deleted or
    /// replaced (destroyed secret versions, retired data keys) is gone from
    /// its files, not merely unreachable. Offline: fails with
    /// [`KvError::Locked`] while the directory is open, here or elsewhere.
    /// See `compact.rs`.
    pub fn compact(data_dir: &Path) -> Result<Compacted, KvError> {
        if !data_dir.join(DB_DIR).is_dir() {
            return Err(KvError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no keyhole database in {}", data_dir.display()),
            )));
        }
        let _lock = DirLock::acquire(data_dir)?;
        compact::finish_interrupted(data_dir)?;
        compact::run(data_dir)
    }

    /// This backend as the seam's trait object.
    pub fn into_backend(self) -> Arc<dyn Backend> {
        Arc::new(self)
    }
}

impl Backend for EmbeddedKv {
    fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>, KvError> {
        validate_bucket_name(name)?;
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let tree = self
            .inner
            .db
            .open_tree(format!("{BUCKET_TREE_PREFIX}{name}"))
            .map_err(db_error)?;
        let bucket = Arc::new(SledBucket::new(
            name,
            tree,
            self.inner.db.clone(),
            self.inner.revision_base,
            self.inner.opened_at,
        ));
        buckets.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }

    fn legacy(&self, name: &str) -> Result<Option<LegacyRecords>, KvError> {
        if name.starts_with(BUCKET_TREE_PREFIX) || !self.has_tree(name) {
            return Ok(None);
        }
        let tree = self.inner.db.open_tree(name).map_err(db_error)?;
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(db_error)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(Some(out))
    }

    fn drop_legacy(&self, name: &str) -> Result<(), KvError> {
        if !name.starts_with(BUCKET_TREE_PREFIX) && self.has_tree(name) {
            self.inner.db.drop_tree(name).map_err(db_error)?;
            self.inner.db.flush().map_err(db_error)?;
        }
        Ok(())
    }
}

impl EmbeddedKv {
    fn has_tree(&self, name: &str) -> bool {
        self.inner
            .db
            .tree_names()
            .iter()
            .any(|t| t.as_ref() == name.as_bytes())
    }

    /// Test support: writes `records` into a tree named `name` outside any
    /// bucket, as release 0.1 did.
    #[doc(hidden)]
    pub fn write_legacy(&self, name: &str, records: &[(&[u8], &[u8])]) -> Result<(), KvError> {
        let tree = self.inner.db.open_tree(name).map_err(db_error)?;
        for (k, v) in records {
            tree.insert(k, *v).map_err(db_error)?;
        }
        self.inner.db.flush().map_err(db_error)?;
        Ok(())
    }
}

pub(crate) fn db_error(e: sled::Error) -> KvError {
    match e {
        sled::Error::Io(io) => KvError::Io(io),
        other => KvError::Backend(other.to_string()),
    }
}

/// An exclusive `flock` on `data_dir/keyhole.lock`, held for the life of the
/// backend. It is what tells "another process has this directory" apart
/// from sled's own lock, which a backend dropped in *this* process can still
/// hold for a moment while sled's background threads let go of the file.
struct DirLock(#[allow(dead_code)] std::fs::File);

impl DirLock {
    fn acquire(data_dir: &Path) -> Result<Self, KvError> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(data_dir.join("keyhole.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(KvError::Locked {
                path: data_dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// How long to wait for sled's lock once keyhole's own lock is held: only a
/// backend dropped in this process can be holding it, and it lets go
/// quickly.
const SLED_LOCK_GRACE: Duration = Duration::from_secs(5);

/// Creates `dir` (and missing parents) mode 0700. sled creates its own
/// files with default modes, so the directories above them are what keeps
/// others out when the process umask does not (the `keyhole` binary sets
/// one; a library user may not).
fn create_private_dir(dir: &Path) -> Result<(), KvError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    Ok(builder.create(dir)?)
}

/// Opens the sled database in `data_dir/dir` under a held [`DirLock`];
/// sled's lock can then only be the residue of a backend this process just
/// dropped, so it is waited out.
fn open_sled(data_dir: &Path, dir: &str) -> Result<sled::Db, KvError> {
    let deadline = Instant::now() + SLED_LOCK_GRACE;
    let path: PathBuf = data_dir.join(dir);
    loop {
        let opened = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .open();
        match opened {
            Err(sled::Error::Io(io)) if is_lock_error(&io) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(sled::Error::Io(io)) if is_lock_error(&io) => {
                return Err(KvError::Locked {
                    path: data_dir.to_path_buf(),
                });
            }
            other => return other.map_err(db_error),
        }
    }
}

/// sled reports a held lock as an i/o error.
fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}
