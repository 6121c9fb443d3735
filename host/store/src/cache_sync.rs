//! Keeping the store's caches true when anyone writes, this store or
//! another one on the same backend (another host).
//!
//! The store watches its bucket from the revision it opened at. Before every
//! read that consults a cache it calls [`CacheSync::catch_up`], which applies
//! every change the bucket has seen and the caches have not: a change to a
//! secret empties the sealed-record cache, a deleted DEK is evicted from the
//! DEK cache, an environment or space whose record changed (marked for
//! deletion, or deleted) is forgotten, and a lag notice
//! (changes missed) empties them all. When nothing changed, `catch_up` is
//! one comparison of two revisions, so the `get-secret` hot path stays a
//! memory read.
//!
//! **A watch that cannot be trusted.** A network backend's watch stalls
//! silently while the backend is cut off ([`keyhole_kv::Health`]). While it
//! is, every read empties the caches first, so it goes to the backend (and
//! fails there while it is unreachable) instead of serving a record another
//! host may have replaced or a scope it may have deleted; and after a
//! break the caches are emptied once more, since changes made meanwhile
//! reach the watch only after the connection is back. A watch that ends
//! (the backend closed it) is started again from the last applied
//! revision, so nothing is missed.
//!
//! Writes through this store need no special treatment: they reach the
//! watch like anyone else's, and a backend shows a writer its own change on
//! the watch before the write returns (the embedded one publishes inside
//! the write), so the writer's next read sees it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyhole_kv::{Bucket, Change, Revision, Watch};

use crate::error::StoreError;
use crate::layout;
use crate::locks::write_lock;
use crate::open::Inner;

pub(crate) struct CacheSync {
    watch: Mutex<Box<dyn Watch>>,
    /// Every change up to this revision has been applied to the caches.
    applied: AtomicU64,
    /// The backend's connection breaks the caches have been emptied for.
    breaks: AtomicU64,
}

/// How often [`CacheSync::wait_for`] looks for changes while it waits.
const WAIT_POLL: Duration = Duration::from_millis(1);

impl CacheSync {
    /// Watches `bucket` from its current revision.
    pub(crate) fn new(bucket: &dyn Bucket) -> Result<Self, StoreError> {
        let from = bucket.revision();
        Ok(CacheSync {
            watch: Mutex::new(bucket.watch(from)?),
            applied: AtomicU64::new(from),
            breaks: AtomicU64::new(bucket.health().breaks),
        })
    }

    /// Applies every change the bucket has seen that the caches have not.
    /// While the backend is cut off it empties the caches instead (see the
    /// module docs).
    #[inline]
    pub(crate) fn catch_up(&self, inner: &Inner) -> Result<(), StoreError> {
        let health = inner.bucket.health();
        if !health.live || health.breaks != self.breaks.load(Ordering::Acquire) {
            self.distrust(inner, health.breaks);
        }
        if inner.bucket.revision() > self.applied.load(Ordering::Acquire) {
            self.drain(inner)?;
        }
        Ok(())
    }

    /// Applies every change waiting on the watch. Callers that raced here
    /// wait for the first to finish, so none reads before the changes it
    /// saw pending are applied.
    fn drain(&self, inner: &Inner) -> Result<(), StoreError> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let mut restarted = false;
        loop {
            match watch.try_next() {
                Ok(Some(change)) => {
                    apply(inner, &change);
                    self.applied.store(change.revision(), Ordering::Release);
                }
                Ok(None) => return Ok(()),
                // The feed ended: once per drain, start another where this
                // one stopped.
                Err(e) if !restarted => {
                    restarted = true;
                    match inner.bucket.watch(self.applied.load(Ordering::Acquire)) {
                        Ok(fresh) => *watch = fresh,
                        Err(_) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Empties every cache: the watch is not live, or was not for a while.
    #[cold]
    fn distrust(&self, inner: &Inner, breaks: u64) {
        forget_all(inner);
        self.breaks.store(breaks, Ordering::Release);
    }

    /// Waits (at most `timeout`) until every change up to `revision` has
    /// been applied; returns whether it has.
    pub(crate) fn wait_for(
        &self,
        inner: &Inner,
        revision: Revision,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain(inner)?;
            if self.applied.load(Ordering::Acquire) >= revision {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(WAIT_POLL.min(deadline - now));
        }
    }
}

/// What one change means for the caches.
fn apply(inner: &Inner, change: &Change) {
    let deleted = matches!(change, Change::Delete { .. });
    match change.key() {
        None => forget_all(inner),
        Some(key) if key.starts_with(layout::SECRET_PREFIX) => inner.sealed_cache.invalidate(),
        Some(key) if key.starts_with(layout::DEK_PREFIX) && deleted => {
            inner.keys.deks.remove(key);
            inner.sealed_cache.invalidate();
        }
        // Any change to a scope record, a deletion's mark as much as the
        // record's removal, makes the scope unknown again.
        Some(key) if key.starts_with(layout::ENV_PREFIX) => {
            write_lock(&inner.known).forget_environment(&key[layout::ENV_PREFIX.len()..]);
        }
        Some(key) if key.starts_with(layout::SPACE_PREFIX) => {
            write_lock(&inner.known).forget_space(&key[layout::SPACE_PREFIX.len()..]);
        }
        Some(_) => {}
    }
}

/// Empties the sealed-record, DEK and known-scope caches.
fn forget_all(inner: &Inner) {
    inner.sealed_cache.invalidate();
    inner.keys.deks.clear();
    write_lock(&inner.known).clear();
}
