//! Lanes: how a dispatch with many runs (a fan-out, the API's batch)
//! spreads them over the CPUs.
//!
//! One lane per worker thread, not a task per run: spawning and waking a
//! task per run cost more than the runs on 2 cores (100 runs took 1.7
//! times as long as one after another). The emitting task is one lane
//! itself; the others run on the blocking pool, where a run may block its
//! thread (a pure listener runs without a wasmtime fiber there, and one
//! that computes until its timeout holds a blocking thread, never a
//! worker).
//!
//! Lanes take the next piece of work as they go ([`Pull`]) rather than a
//! fixed share. Fixed shares held a whole dispatch back whenever a lane's
//! thread started late, and on a 2-vCPU VM that was about every other
//! event: the two threads a dispatch woke were both placed on the CPU that
//! was idle at that instant, so one ran its share and then the other's
//! (any blocking-pool thread takes a queued task) while the second CPU
//! idled (`perf sched timehist` of `keyhole-bench --loop fanout-async 2`:
//! two lanes ran at once 19% of the time, none 22%). Pulled, a late lane
//! finds the work taken, and nobody waits for a lane that has not started:
//! the emitting task waits only until every result is in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::error::RuntimeError;

/// `indices` dealt round-robin into at most `lanes` non-empty shares.
pub(crate) fn shares(indices: &[usize], lanes: usize) -> Vec<Vec<usize>> {
    let lanes = lanes.clamp(1, indices.len().max(1));
    let mut out = vec![Vec::new(); lanes];
    for (k, &i) in indices.iter().enumerate() {
        out[k % lanes].push(i);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// One result, with the index of the work it came from.
pub(crate) type Indexed<T> = (usize, Result<T, RuntimeError>);

/// One dispatch's work for its lanes: indices handed out one at a time to
/// whichever lane asks next, and the results as they come in.
pub(crate) struct Pull<T> {
    indices: Vec<usize>,
    next: AtomicUsize,
    results: Mutex<Vec<Indexed<T>>>,
    all_in: Notify,
}

impl<T> Pull<T> {
    pub(crate) fn new(indices: Vec<usize>) -> Arc<Pull<T>> {
        Arc::new(Pull {
            results: Mutex::new(Vec::with_capacity(indices.len())),
            indices,
            next: AtomicUsize::new(0),
            all_in: Notify::new(),
        })
    }

    /// The next index nobody has taken, if any is left.
    pub(crate) fn take(&self) -> Option<usize> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        self.indices.get(k).copied()
    }

    /// Keeps the result of index `i`, taken before.
    pub(crate) fn put(&self, i: usize, result: Result<T, RuntimeError>) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.push((i, result));
        if results.len() == self.indices.len() {
            self.all_in.notify_one();
        }
    }

    /// Every result, in index order, once all are in.
    pub(crate) async fn all(&self) -> Vec<Indexed<T>> {
        loop {
            // A `notify_one` before this wait leaves a permit: none is lost.
            let all_in = self.all_in.notified();
            {
                let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
                if results.len() == self.indices.len() {
                    let mut results = std::mem::take(&mut *results);
                    results.sort_unstable_by_key(|(i, _)| *i);
                    return results;
                }
            }
            all_in.await;
        }
    }
}

/// An index a blocking lane took: if the lane panics before putting its
/// result, the result is that failure (so [`Pull::all`] never waits for
/// it in vain).
struct Taken<'a, T> {
    pull: &'a Pull<T>,
    i: usize,
    put: bool,
}

impl<T> Drop for Taken<'_, T> {
    fn drop(&mut self) {
        if !self.put {
            let failed = RuntimeError::Engine("run task failed: it panicked".into());
            self.pull.put(self.i, Err(failed));
        }
    }
}

/// Starts `lanes` lanes on the blocking pool, each taking indices from
/// `pull` and putting `work`'s result for each, one after another, on its
/// thread, which it may block (driving a run with the runtime's handle).
/// Nothing waits for them: [`Pull::all`] waits for the results.
pub(crate) fn blocking_lanes<T: Send + 'static>(
    pull: &Arc<Pull<T>>,
    lanes: usize,
    work: impl Fn(&tokio::runtime::Handle, usize) -> Result<T, RuntimeError> + Clone + Send + 'static,
) {
    let handle = tokio::runtime::Handle::current();
    for _ in 0..lanes.min(pull.indices.len()) {
        let (pull, handle, work) = (pull.clone(), handle.clone(), work.clone());
        drop(tokio::task::spawn_blocking(move || {
            while let Some(i) = pull.take() {
                let mut taken = Taken {
                    pull: &pull,
                    i,
                    put: false,
                };
                let result = work(&handle, i);
                taken.put = true;
                pull.put(i, result);
            }
        }));
    }
}
