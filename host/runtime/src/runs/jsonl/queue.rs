//! The queue between the dispatch path and the writer thread: records
//! waiting as JSON lines, with the counters `sync` and backpressure use.
//!
//! Shared by the appending side (`mod.rs`) and the writer (`writer.rs`),
//! which is why it has a file of its own.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most records waiting for the writer, and most bytes of them; beyond
/// either `append` blocks (backpressure rather than unbounded memory). With
/// the writer's buffer and `Vec` growth, the queue holds at most about four
/// times `QUEUE_BYTES` plus one record (whose text `run/outcome.rs` caps).
pub(super) const QUEUE: usize = 65_536;
pub(super) const QUEUE_BYTES: usize = 64 << 20;
/// The writer wakes when this many records wait, or after [`LINGER`].
pub(super) const BATCH: usize = 1_024;
pub(super) const LINGER: Duration = Duration::from_millis(20);
/// A drained queue buffer bigger than this is shrunk before reuse.
pub(super) const SPARE_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(super) struct Queue {
    /// Records waiting for the writer, as JSON lines (each ends in `\n`).
    pub(super) lines: Vec<u8>,
    /// How many records `lines` holds.
    pub(super) pending: usize,
    /// The id the next appended record gets.
    pub(super) next_id: u64,
    /// Records ever appended; of those, how many `sync` callers want on
    /// disk, and how many are known to be on disk (sequence numbers, so no
    /// sync request is ever lost).
    pub(super) appended: u64,
    pub(super) sync_wanted: u64,
    pub(super) synced: u64,
    pub(super) closed: bool,
    pub(super) last_error: Option<String>,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Wakes the writer.
    pub(super) work: Condvar,
    /// Wakes appenders waiting for room and `sync` callers.
    pub(super) progress: Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
