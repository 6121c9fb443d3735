//! An append-only log of lines in segment files, written by a background
//! thread: what keyhole's run log and audit log both are.
//!
//! Why one crate: both logs are high-volume appends from the event path
//! that must cost the caller almost nothing, be read back newest first,
//! survive a crash with at most a torn last line, keep a bounded number of
//! entries, and sync to disk on request. They differ only in what a stored
//! line looks like and what happens around a write, which are [`Hooks`].
//!
//! - **Appending** ([`SegLog::append`]) writes one line into a shared buffer
//!   under a lock and gives it the next sequence number: no allocation, no
//!   thread woken per line. Lines are consecutive and continue across
//!   restarts.
//! - **Writing** happens on the log's own thread, in batches (every
//!   `linger`, or when `batch` lines wait, or at once when someone waits
//!   for lines to be written or synced): each line becomes its stored
//!   form ([`Hooks::store`]), the batch is appended to the current segment
//!   (`<first seq>.jsonl`, zero-padded so name order is log order), and a
//!   new segment starts every `per_segment` lines.
//! - **Failures lose nothing.** A batch that fails to write is cut back out
//!   of the files it reached and tried again, in order, until it succeeds.
//!   Meanwhile the log is *failing* ([`SegLog::failing`]): [`SegLog::sync`]
//!   reports it and [`SegLog::try_append`] refuses new lines, so a caller
//!   that must not proceed without its line (the audit log) fails closed.
//!   Only a log being dropped gives up, after about five seconds of
//!   refusals, rather than hang its process's shutdown.
//! - **Ordering with another log** ([`Hooks::before_write`]): each append
//!   carries a *mark*, and the writer passes the highest mark of a batch to
//!   the hook before writing it (the run log waits there for the audit
//!   entries its runs depend on).
//! - **Retention** (`retention.rs`): beyond `keep` lines (plus a tenth),
//!   and optionally once older than `max_age`, the oldest whole segments
//!   are deleted, and [`Hooks::trimmed`] may append a line saying so.
//! - **Reading** newest or oldest first, or a segment at a time
//!   ([`SegLog::segments`], `read.rs`) for readers that skip segments by
//!   the sequence numbers in their names.
//! - **Crashes**: a torn last line is cut off on open, so appends resume on
//!   a line of their own. Syncing is the caller's choice ([`SegLog::sync`]).

#![forbid(unsafe_code)]

mod files;
pub mod json;
mod read;
mod retention;
mod writer;

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::files::Segments;
pub use crate::files::{complete_lines, segments};
pub use crate::read::{Segment, SegmentLines};

/// How a log is sized and paced.
#[derive(Clone, Debug)]
pub struct Config {
    /// The writer thread's name.
    pub thread_name: String,
    /// Lines kept; older whole segments are deleted. `usize::MAX` keeps all.
    pub keep: usize,
    /// Lines per segment file.
    pub per_segment: usize,
    /// Most lines, and most bytes, waiting for the writer; beyond either,
    /// `append` blocks (backpressure rather than unbounded memory).
    pub max_pending: usize,
    pub max_pending_bytes: usize,
    /// The writer wakes when this many lines wait, or after `linger`.
    pub batch: usize,
    pub linger: Duration,
    /// How long the writer waits before trying a failed batch again.
    pub retry: Duration,
    /// Lines older than this are deleted too, a whole segment at a time
    /// (`retention.rs`). When every line has expired, the log keeps an
    /// empty newest segment, and hooks' `init` then gets no last line.
    pub max_age: Option<Duration>,
}

impl Config {
    /// Defaults for a log keeping about `keep` lines.
    pub fn keeping(thread_name: &str, keep: usize) -> Self {
        Config {
            thread_name: thread_name.to_owned(),
            keep,
            per_segment: (keep / 8).clamp(16, 4096),
            max_pending: 65_536,
            max_pending_bytes: 64 << 20,
            batch: 1_024,
            linger: Duration::from_millis(20),
            retry: Duration::from_millis(100),
            max_age: None,
        }
    }
}

/// What a log does around its writes, on the writer thread.
pub trait Hooks: Send + 'static {
    /// Writes the stored form of line `seq` (appended as `body`) into `out`,
    /// without a newline. Called once per line, in order.
    fn store(&mut self, seq: u64, body: &[u8], out: &mut Vec<u8>) {
        let _ = seq;
        out.extend_from_slice(body);
    }

    /// Called before a batch is written with the highest mark its lines
    /// were appended with; may block, but should return once `closing()`
    /// says the log is being dropped.
    fn before_write(&mut self, mark: u64, closing: &dyn Fn() -> bool) {
        let _ = (mark, closing);
    }

    /// Called after a batch is written (not necessarily synced), with the
    /// sequence number of its first line and the stored form of all its
    /// lines, each ending in a newline. An error cuts the batch back out of
    /// the files, and it is tried again (with the same stored lines).
    fn after_write(&mut self, first_seq: u64, stored: &[u8]) -> io::Result<()> {
        let _ = (first_seq, stored);
        Ok(())
    }

    /// Called when retention is about to delete the segments before line
    /// `first_kept`; returns a line to append about it, if any. The
    /// segments are deleted only once that line is written and synced, so
    /// a crash in between never leaves a log whose start nothing explains.
    fn trimming(&mut self, first_kept: u64) -> Option<Vec<u8>> {
        let _ = first_kept;
        None
    }

    /// Called after the segments before line `first_kept` were deleted.
    fn trimmed(&mut self, first_kept: u64) {
        let _ = first_kept;
    }
}

/// Lines appended while the log was failing are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing(pub String);

impl std::fmt::Display for Failing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    /// Lines waiting for the writer, each ending in `\n`.
    pub lines: Vec<u8>,
    /// How many lines `lines` holds, and the highest mark among them.
    pub pending: usize,
    pub mark: u64,
    /// The sequence number the next appended line gets.
    pub next_seq: u64,
    /// Lines ever appended (this process), written to the files, and
    /// synced; how many `sync` callers want synced.
    pub appended: u64,
    pub written: u64,
    pub sync_wanted: u64,
    pub synced: u64,
    /// How many lines `wait_written` callers want written: the writer
    /// writes them without lingering.
    pub written_wanted: u64,
    /// Why the last write failed, while it keeps failing.
    pub failing: Option<String>,
    pub closed: bool,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    /// Wakes the writer.
    pub work: Condvar,
    /// Wakes appenders waiting for room, and waiters for writes and syncs.
    pub progress: Condvar,
    /// `Queue::appended`, readable without the lock: the run log reads the
    /// audit log's count once per run (its mark), and the lock is the
    /// appenders' and the writer's.
    pub appended: AtomicU64,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, q: MutexGuard<'a, Queue>, until: Option<Instant>) -> MutexGuard<'a, Queue> {
        match until {
            None => self.progress.wait(q).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                self.progress
                    .wait_timeout(q, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }
}

/// One log. Dropping it writes what is queued and stops the writer.
pub struct SegLog {
    dir: PathBuf,
    shared: Arc<Shared>,
    config: Config,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl SegLog {
    /// Opens (creating) the log in `dir`. `init` gets the stored form of the
    /// last complete line (after a torn tail is cut off) and the sequence
    /// number the next line will have, and returns the hooks.
    pub fn open<H: Hooks>(
        dir: &Path,
        config: Config,
        init: impl FnOnce(Option<&[u8]>, u64) -> io::Result<H>,
    ) -> io::Result<Self> {
        files::create_private_dir(dir)?;
        let segments = Segments::scan(dir)?;
        let (next_seq, last) = segments.open_tail()?;
        let hooks = init(last.as_deref(), next_seq)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next_seq,
                ..Queue::default()
            }),
            ..Shared::default()
        });
        let (writer_shared, writer_config) = (shared.clone(), config.clone());
        let writer = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || writer::run(segments, next_seq, &writer_shared, writer_config, hooks))?;
        Ok(SegLog {
            dir: dir.to_path_buf(),
            shared,
            config,
            writer: Some(writer),
        })
    }

    /// Appends one line: `write` gets the line's sequence number and writes
    /// its body (no newline; JSON escapes them) into the shared buffer.
    /// Blocks while the queue is full. Returns the sequence number.
    pub fn append(&self, mark: u64, write: impl FnOnce(u64, &mut Vec<u8>)) -> u64 {
        let q = self.room();
        Self::push(&self.shared, q, &self.config, mark, write)
    }

    /// Like [`SegLog::append`], but refuses the line while the log is
    /// failing to write.
    pub fn try_append(
        &self,
        mark: u64,
        write: impl FnOnce(u64, &mut Vec<u8>),
    ) -> Result<u64, Failing> {
        let q = self.room();
        if let Some(why) = &q.failing {
            return Err(Failing(why.clone()));
        }
        Ok(Self::push(&self.shared, q, &self.config, mark, write))
    }

    fn room(&self) -> MutexGuard<'_, Queue> {
        let mut q = self.shared.lock();
        while !q.closed
            && (q.pending >= self.config.max_pending
                || q.lines.len() >= self.config.max_pending_bytes)
        {
            self.shared.work.notify_one();
            q = self.shared.wait(q, None);
        }
        q
    }

    pub(crate) fn push(
        shared: &Shared,
        mut q: MutexGuard<'_, Queue>,
        config: &Config,
        mark: u64,
        write: impl FnOnce(u64, &mut Vec<u8>),
    ) -> u64 {
        let seq = q.next_seq;
        q.next_seq += 1;
        let start = q.lines.len();
        // Written under the lock, so sequence numbers and lines stay in step.
        write(seq, &mut q.lines);
        debug_assert!(!q.lines[start..].contains(&b'\n'), "a line with a newline");
        q.lines.push(b'\n');
        q.pending += 1;
        q.appended += 1;
        shared.appended.store(q.appended, Ordering::Release);
        q.mark = q.mark.max(mark);
        if q.pending == config.batch {
            shared.work.notify_one();
        }
        seq
    }

    /// Lines appended so far by this process.
    pub fn appended(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Why writing fails, while it does.
    pub fn failing(&self) -> Option<String> {
        self.shared.lock().failing.clone()
    }

    /// Waits (at most `timeout`) until the first `count` lines appended by
    /// this process are in the files (not necessarily synced).
    pub fn wait_written(&self, count: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut q = self.shared.lock();
        q.written_wanted = q.written_wanted.max(count);
        while q.written < count {
            if Instant::now() >= until {
                return false;
            }
            self.shared.work.notify_one();
            q = self.shared.wait(q, Some(until));
        }
        true
    }

    /// Waits (at most `timeout`) until every line appended so far is on
    /// disk. Fails at once while the log is failing to write.
    pub fn sync(&self, timeout: Duration) -> Result<(), Failing> {
        let until = Instant::now() + timeout;
        let mut q = self.shared.lock();
        let target = q.appended;
        q.sync_wanted = q.sync_wanted.max(target);
        self.shared.work.notify_one();
        while q.synced < target {
            if let Some(why) = &q.failing {
                return Err(Failing(why.clone()));
            }
            if Instant::now() >= until {
                return Err(Failing("timed out waiting for the disk".into()));
            }
            q = self.shared.wait(q, Some(until));
        }
        Ok(())
    }

    /// The sequence number the next appended line will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.lock().next_seq
    }

    /// The segment files, oldest first. Like the other readers, waits
    /// (briefly) until every line appended before the call is written.
    pub fn segments(&self) -> io::Result<Vec<Segment>> {
        self.wait_written(self.appended(), Duration::from_secs(10));
        let files = Segments::scan(&self.dir)?.files;
        let ends = files.iter().skip(1).map(|(first, _)| Some(*first));
        Ok(files
            .iter()
            .zip(ends.chain([None]))
            .map(|((first, path), end)| Segment {
                first: *first,
                end,
                path: path.clone(),
            })
            .collect())
    }

    /// Calls `f` with every stored line, newest first, until it breaks.
    /// Sees every line appended before the call that could be written.
    pub fn newest_first(&self, mut f: impl FnMut(&[u8]) -> ControlFlow<()>) -> io::Result<()> {
        self.wait_written(self.appended(), Duration::from_secs(10));
        for (_, path) in Segments::scan(&self.dir)?.files.iter().rev() {
            let Some(bytes) = files::read_segment(path)? else {
                break; // trimmed since the scan: older ones are gone too
            };
            for line in complete_lines(&bytes).rev() {
                if f(line).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every stored line, oldest first, until it breaks.
    pub fn oldest_first(&self, f: impl FnMut(&[u8]) -> ControlFlow<()>) -> io::Result<()> {
        self.wait_written(self.appended(), Duration::from_secs(10));
        read_oldest_first(&self.dir, f)
    }
}

/// Every stored line of the log in `dir`, oldest first, whether or not a
/// log is open on it (for offline checks).
pub fn read_oldest_first(
    dir: &Path,
    mut f: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> io::Result<()> {
    for (_, path) in &Segments::scan(dir)?.files {
        let Some(bytes) = files::read_segment(path)? else {
            continue;
        };
        for line in complete_lines(&bytes) {
            if f(line).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

impl Drop for SegLog {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        self.shared.progress.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests;
