//! The change feed behind a bucket's watches: the changes made since the
//! backend was opened, kept in revision order and bounded in count and
//! bytes. A watcher whose next change has already been dropped is told it
//! lagged ([`Change::Lagged`]) and continues from the newest change.
//!
//! Writers publish under their bucket's write lock, so the feed is in
//! revision order. Readers of [`Feed::latest`] see an atomic; a watcher
//! locks the feed only when it asks for changes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyhole_kv::{Change, KvError, Revision, Watch};

/// Most changes kept for watchers.
const MAX_CHANGES: usize = 4_096;
/// Most bytes of keys and values kept for watchers.
const MAX_BYTES: usize = 8 << 20;

#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<State>,
    changed: Condvar,
    /// The revision of the newest change published.
    latest: AtomicU64,
}

#[derive(Default)]
struct State {
    changes: VecDeque<Change>,
    bytes: usize,
    /// The newest revision dropped from `changes` (0: none dropped).
    dropped_through: Revision,
}

fn size(c: &Change) -> usize {
    match c {
        Change::Put { key, value, .. } => key.len() + value.len(),
        Change::Delete { key, .. } => key.len(),
        Change::Lagged { .. } => 0,
    }
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A feed whose newest revision is `revision` before any change is
    /// published (the backend's state when it opened).
    pub(crate) fn starting_at(revision: Revision) -> Self {
        Feed {
            latest: AtomicU64::new(revision),
            ..Feed::default()
        }
    }

    pub(crate) fn latest(&self) -> Revision {
        self.latest.load(Ordering::Acquire)
    }

    /// Adds a change; revisions must grow (the bucket's write lock sees to
    /// it).
    pub(crate) fn publish(&self, change: Change) {
        let revision = change.revision();
        let mut s = self.lock();
        s.bytes += size(&change);
        s.changes.push_back(change);
        while s.changes.len() > MAX_CHANGES || (s.bytes > MAX_BYTES && s.changes.len() > 1) {
            let old = s.changes.pop_front().expect("non-empty");
            s.bytes -= size(&old);
            s.dropped_through = old.revision();
        }
        self.latest.store(revision, Ordering::Release);
        drop(s);
        self.changed.notify_all();
    }

    pub(crate) fn subscribe(self: &Arc<Self>, from: Revision) -> Watcher {
        Watcher {
            feed: self.clone(),
            after: from,
        }
    }

    /// The first change after `after`, or a lag notice.
    fn next_after(&self, s: &State, after: Revision) -> Option<Change> {
        if after < s.dropped_through {
            return Some(Change::Lagged {
                revision: s.changes.back().map_or(s.dropped_through, Change::revision),
            });
        }
        let i = s.changes.partition_point(|c| c.revision() <= after);
        s.changes.get(i).cloned()
    }
}

/// One watch on a [`Feed`].
pub(crate) struct Watcher {
    feed: Arc<Feed>,
    /// Changes up to this revision have been delivered.
    after: Revision,
}

impl Watcher {
    fn take(&mut self, change: Option<Change>) -> Option<Change> {
        if let Some(c) = &change {
            self.after = c.revision();
        }
        change
    }
}

impl Watch for Watcher {
    fn try_next(&mut self) -> Result<Option<Change>, KvError> {
        if self.feed.latest() <= self.after {
            return Ok(None);
        }
        let next = {
            let s = self.feed.lock();
            self.feed.next_after(&s, self.after)
        };
        Ok(self.take(next))
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, KvError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.feed.lock();
        loop {
            if let Some(c) = self.feed.next_after(&s, self.after) {
                drop(s);
                return Ok(self.take(Some(c)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            s = self
                .feed
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: Revision, bytes: usize) -> Change {
        Change::Put {
            key: b"k".to_vec(),
            value: vec![0; bytes],
            revision,
        }
    }

    #[test]
    fn a_watcher_that_falls_behind_is_told_it_lagged() {
        let feed = Arc::new(Feed::default());
        let mut w = feed.subscribe(0);
        for r in 1..=(MAX_CHANGES as u64 + 10) {
            feed.publish(put(r, 1));
        }
        let last = MAX_CHANGES as u64 + 10;
        assert_eq!(
            w.try_next().unwrap(),
            Some(Change::Lagged { revision: last })
        );
        assert_eq!(w.try_next().unwrap(), None, "caught up after the lag");
        feed.publish(put(last + 1, 1));
        assert_eq!(w.try_next().unwrap().unwrap().revision(), last + 1);
    }

    #[test]
    fn the_feed_is_bounded_in_bytes() {
        let feed = Arc::new(Feed::default());
        let mut w = feed.subscribe(0);
        for r in 1..=10 {
            feed.publish(put(r, 2 << 20));
        }
        assert!(feed.lock().bytes <= MAX_BYTES);
        assert!(matches!(w.try_next().unwrap(), Some(Change::Lagged { .. })));
        // A watcher that kept up is not told it lagged.
        let mut current = feed.subscribe(feed.latest());
        feed.publish(put(11, 1));
        assert_eq!(current.try_next().unwrap().unwrap().revision(), 11);
    }
}
