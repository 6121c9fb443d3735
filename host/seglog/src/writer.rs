//! The writer thread: drains the queue in batches, stores each line
//! through the hooks, appends the batch to segment files, syncs when asked,
//! deletes the oldest segments (`retention.rs`), and retries a batch that
//! failed.
//!
//! All file I/O of a log happens here, off the callers' path.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::files::{Segments, complete_lines};
use crate::retention::{self, Deletion, delete_when_said, trim};
use crate::{Config, Hooks, Queue, SegLog, Shared};

/// How many times a closing log retries a failed batch before giving up.
const CLOSING_RETRIES: usize = 50;

/// A batch taken from the queue, already in its stored form.
pub(crate) struct Batch {
    /// Stored lines, each ending in `\n`.
    stored: Vec<u8>,
    first_seq: u64,
    lines: u64,
    mark: u64,
    /// The `appended` count the batch brings `written` to.
    through: u64,
}

impl Batch {
    /// Whether line `seq` is in this batch.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        (self.first_seq..self.first_seq + self.lines).contains(&seq)
    }
}

/// The writer's open segment.
struct Current {
    file: std::fs::File,
    /// The sequence number its name carries (its first line's).
    first: u64,
    path: PathBuf,
    lines: usize,
    /// When this process started writing to it.
    opened: Instant,
}

/// The writer's open segment, and the segments it left since the last
/// sync: a sync covers them all (a batch that rolled over to a new segment
/// was otherwise synced only in its last part).
#[derive(Default)]
pub(crate) struct Open {
    current: Option<Current>,
    /// Oldest first, each with its first sequence number.
    unsynced: Vec<(u64, PathBuf)>,
}

impl Open {
    /// Stops appending to the current segment; the next sync still covers
    /// it. Segments retention has deleted since are let go of here: they
    /// are the oldest, so a look at the start of the list finds them, with
    /// no call to the file system (a `stat` of every path left, once 64
    /// were waiting, took a tenth of the audit writer's time in a log
    /// nobody synced, and more as the list grew).
    pub(crate) fn leave(&mut self, segments: &Segments) {
        if let Some(c) = self.current.take() {
            let oldest = segments.files.first().map_or(c.first, |(first, _)| *first);
            let gone = self.unsynced.partition_point(|(first, _)| *first < oldest);
            if gone > 0 {
                self.unsynced.drain(..gone);
            }
            self.unsynced.push((c.first, c.path));
        }
    }

    /// Syncs every segment written since the last sync.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        while let Some((_, path)) = self.unsynced.last() {
            match std::fs::File::open(path) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.unsynced.pop();
        }
        self.current.as_mut().map_or(Ok(()), |c| c.file.sync_data())
    }
}

/// When the writer starts a new segment.
#[derive(Clone, Copy)]
struct Rolling {
    per_segment: usize,
    /// With a maximum age: how old a segment may grow (`retention.rs`).
    max_span: Option<Duration>,
}

impl Rolling {
    fn has_room(&self, c: &Current) -> bool {
        c.lines < self.per_segment && self.max_span.is_none_or(|s| c.opened.elapsed() < s)
    }
}

pub(crate) fn run<H: Hooks>(
    mut segments: Segments,
    mut next_seq: u64,
    shared: &Shared,
    config: Config,
    mut hooks: H,
) {
    let mut open = Open::default();
    let mut retry: Option<Batch> = None;
    // Failed writes since the log began closing: a log being dropped
    // gives up on a batch the disk keeps refusing rather than hang.
    let mut closing_failures = 0;
    let mut spare = Vec::new();
    let rolling = Rolling {
        per_segment: config.per_segment,
        max_span: config.max_age.map(retention::roll_after),
    };
    let mut age_checked = Instant::now();
    let mut deletion: Option<Deletion> = None;
    loop {
        let (batch, sync, closed) = match retry.take() {
            Some(batch) => {
                let q = shared.lock();
                let (sync, closed) = (q.sync_wanted > q.synced, q.closed);
                drop(q);
                (Some(batch), sync, closed)
            }
            None => {
                // Lines gather for up to `linger` (or until a batch is
                // full, or someone waits for them): a writer that took
                // whatever had arrived woke, wrote and ran its hooks per
                // handful of lines, and took CPU from the runs.
                let mut q = shared.lock();
                let until = Instant::now() + config.linger;
                loop {
                    let due = q.pending >= config.batch
                        || q.sync_wanted > q.synced
                        || q.closed
                        || (q.written_wanted > q.written && q.pending > 0);
                    let left = until.saturating_duration_since(Instant::now());
                    if due || left.is_zero() {
                        break;
                    }
                    q = shared
                        .work
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let lines = std::mem::replace(&mut q.lines, std::mem::take(&mut spare));
                let count = std::mem::take(&mut q.pending) as u64;
                let mark = std::mem::take(&mut q.mark);
                let (through, sync, closed) = (q.appended, q.sync_wanted > q.synced, q.closed);
                drop(q);
                shared.progress.notify_all();
                let batch = (count > 0).then(|| {
                    let mut stored = Vec::with_capacity(lines.len() + lines.len() / 2);
                    for (seq, body) in (next_seq..).zip(complete_lines(&lines)) {
                        hooks.store(seq, body, &mut stored);
                        stored.push(b'\n');
                    }
                    let batch = Batch {
                        stored,
                        first_seq: next_seq,
                        lines: count,
                        mark,
                        through,
                    };
                    next_seq += count;
                    batch
                });
                spare = lines;
                spare.clear();
                spare.shrink_to(1 << 20);
                (batch, sync, closed)
            }
        };
        let mut result = Ok(());
        if let Some(b) = &batch {
            hooks.before_write(b.mark, &|| shared.lock().closed);
            let mut touched = Vec::new();
            result = append_all(&mut segments, &mut open, b, rolling, &mut touched);
            if result.is_ok() {
                result = hooks.after_write(b.first_seq, &b.stored);
            }
            if result.is_err() {
                cut_back(&mut segments, &mut open, touched);
            }
        }
        // A failed sync leaves the batch written: the sync is tried again
        // (it is still wanted), the batch is not appended twice.
        let mut synced = Ok(());
        if result.is_ok() && (sync || closed) {
            synced = open.sync();
        }
        if result.is_ok() {
            delete_when_said(&mut deletion, &mut segments, &mut open, &batch, &mut hooks);
        }
        let mut retention_line = None;
        if result.is_ok()
            && synced.is_ok()
            && deletion.is_none()
            && let Some(first_kept) = trim(
                &mut segments,
                &mut open,
                next_seq,
                &config,
                &mut age_checked,
            )
        {
            match hooks.trimming(first_kept) {
                Some(line) => retention_line = Some((first_kept, line)),
                None => {
                    deletion = Some(Deletion {
                        first_kept,
                        said_at: None,
                    });
                    delete_when_said(&mut deletion, &mut segments, &mut open, &None, &mut hooks);
                }
            }
        }
        let mut q = shared.lock();
        match result {
            Ok(()) => {
                if let Some(b) = &batch {
                    q.written = b.through;
                }
                match synced {
                    Ok(()) => {
                        if sync || closed {
                            q.synced = q.written;
                        }
                        q.failing = None;
                    }
                    Err(e) => {
                        let what = "a sync the disk keeps refusing";
                        if failed(
                            &mut q,
                            &config,
                            "syncing",
                            &e,
                            closed,
                            &mut closing_failures,
                            what,
                        ) {
                            q.synced = q.written;
                        }
                    }
                }
            }
            Err(e) => {
                let what = format!(
                    "{} lines the disk keeps refusing",
                    batch.as_ref().map_or(0, |b| b.lines)
                );
                if failed(
                    &mut q,
                    &config,
                    "writing",
                    &e,
                    closed,
                    &mut closing_failures,
                    &what,
                ) {
                    q.written = q.appended;
                    q.synced = q.written;
                } else {
                    retry = batch;
                }
            }
        }
        let done = closed
            && q.pending == 0
            && retry.is_none()
            && retention_line.is_none()
            && q.synced >= q.written;
        let failing = q.failing.is_some();
        drop(q);
        if let Some((first_kept, body)) = retention_line {
            let q = shared.lock();
            let seq = SegLog::push(shared, q, &config, 0, |_, out| out.extend_from_slice(&body));
            deletion = Some(Deletion {
                first_kept,
                said_at: Some(seq),
            });
        }
        shared.progress.notify_all();
        if done {
            return;
        }
        if failing {
            std::thread::sleep(config.retry);
        }
    }
}

/// A failed write or sync: logged, and the log is failing until one
/// succeeds. Returns whether to give up (the log is closing and the disk
/// has refused more than `CLOSING_RETRIES` times), saying so.
fn failed(
    q: &mut Queue,
    config: &Config,
    doing: &str,
    e: &std::io::Error,
    closed: bool,
    closing_failures: &mut usize,
    what: &str,
) -> bool {
    tracing::error!("{doing} {}: {e}", config.thread_name);
    q.failing = Some(format!("{e}"));
    *closing_failures += usize::from(closed);
    let give_up = *closing_failures > CLOSING_RETRIES;
    if give_up {
        tracing::error!("{}: giving up on {what}, at shutdown", config.thread_name);
    }
    give_up
}

/// Appends a batch, starting a new segment when the current one is full
/// (or, with a maximum age, old), and notes in `touched` each file it
/// reached with its length before.
fn append_all(
    segments: &mut Segments,
    open: &mut Open,
    batch: &Batch,
    rolling: Rolling,
    touched: &mut Vec<Touched>,
) -> std::io::Result<()> {
    let bytes = &batch.stored;
    let per_segment = rolling.per_segment;
    (|| {
        let (mut offset, mut seq) = (0, batch.first_seq);
        // The segment this batch created, if any.
        let mut created = None;
        while offset < bytes.len() {
            if !open.current.as_ref().is_some_and(|c| rolling.has_room(c)) {
                open.leave(segments);
                // Continue the last segment (after a restart, or a failed
                // batch) if it has room; with a maximum age, only an empty
                // one, whose age is unknown otherwise.
                let (first, lines) = match segments.files.last() {
                    Some((first, _))
                        if seq - first < per_segment as u64
                            && (rolling.max_span.is_none() || seq == *first) =>
                    {
                        (*first, (seq - first) as usize)
                    }
                    _ => (seq, 0),
                };
                let path = segments.path(first);
                let file = crate::files::open_for_append(&path)?;
                if lines == 0 && segments.files.last().map(|(f, _)| *f) != Some(first) {
                    segments.files.push((first, path.clone()));
                    created = Some(path.clone());
                }
                open.current = Some(Current {
                    file,
                    first,
                    path,
                    lines,
                    opened: Instant::now(),
                });
            }
            let Some(seg) = open.current.as_mut() else {
                unreachable!("a segment was opened above");
            };
            if !touched.iter().any(|t| t.path == seg.path) {
                touched.push(Touched {
                    created: created.as_ref() == Some(&seg.path),
                    path: seg.path.clone(),
                    len: seg.file.metadata()?.len(),
                    file: seg.file.try_clone()?,
                });
            }
            // As many whole lines as the segment has room for, in one write.
            let (mut end, mut n) = (offset, 0);
            while n < per_segment - seg.lines && end < bytes.len() {
                end += memchr::memchr(b'\n', &bytes[end..]).map_or(bytes.len() - end, |i| i + 1);
                n += 1;
            }
            seg.file.write_all(&bytes[offset..end])?;
            seg.lines += n;
            seq += n as u64;
            offset = end;
        }
        Ok(())
    })()
}

/// A file a batch wrote to, and its length before.
struct Touched {
    path: PathBuf,
    /// Whether the batch created it (a failure removes it again; an empty
    /// segment that was there before stays, as its name may carry the next
    /// sequence number).
    created: bool,
    len: u64,
    /// Its open handle: cutting back through it works even if the file was
    /// moved or its directory replaced under the log.
    file: std::fs::File,
}

/// Cuts every file a failed batch reached back to where it was (removing
/// the ones it created), so a retry writes each line once.
fn cut_back(segments: &mut Segments, open: &mut Open, touched: Vec<Touched>) {
    open.leave(segments);
    for t in touched {
        if let Err(e) = t.file.set_len(t.len) {
            tracing::error!(path = %t.path.display(), "cutting back a failed write: {e}");
        }
        if t.created {
            let _ = std::fs::remove_file(&t.path);
            segments.files.retain(|(_, p)| *p != t.path);
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
