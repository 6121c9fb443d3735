//! Retention: which segments the writer deletes, by count and by age.
//! Choosing and deleting are apart: the writer first appends the hooks'
//! line saying what goes (the audit log's retention entry), and deletes
//! once that line is synced.
//!
//! Only whole segments are deleted, oldest first, so what is left is
//! always a run of consecutive lines ending at the newest.
//!
//! - **By count** ([`by_count`]): while at least `keep` lines would remain.
//! - **By age** ([`by_age`]): a segment file is modified last when its
//!   newest line is written, so a file unmodified for longer than
//!   `max_age` holds only lines older than that. To keep that true, the
//!   writer also starts a new segment once its current one is an eighth of
//!   `max_age` old, and never continues an older process's segment: a line
//!   outlives `max_age` on disk by at most that eighth plus a check
//!   interval.
//!
//! The newest segment is never simply deleted: its name carries the next
//! sequence number across a restart. When it has expired too, an empty
//! segment named by the next sequence number is created first, and the
//! expired one is deleted after it.

use std::io;
use std::time::{Duration, Instant, SystemTime};

use crate::Config;
use crate::Hooks;
use crate::files::Segments;
use crate::writer::{Batch, Open};

/// The first line to keep so that at least `keep` lines remain, if that
/// leaves out a whole segment.
pub(crate) fn by_count(segments: &Segments, next_seq: u64, keep: usize) -> Option<u64> {
    let mut first_kept = None;
    for (first, _) in segments.files.iter().skip(1) {
        if ((next_seq - first) as usize) < keep {
            break;
        }
        first_kept = Some(*first);
    }
    first_kept
}

/// What [`by_age`] found.
#[derive(Debug, Default)]
pub(crate) struct AgeTrim {
    /// The first line to keep, if a segment expired.
    pub first_kept: Option<u64>,
    /// Whether the newest segment expired and an empty one took its place:
    /// the writer must not append to the old one any more.
    pub rolled: bool,
}

/// Finds the segments whose newest line was written more than `max_age`
/// ago (`next_seq`: the sequence number after the last line written). When
/// the newest is one of them, an empty segment takes its place first.
pub(crate) fn by_age(
    segments: &mut Segments,
    next_seq: u64,
    max_age: Duration,
) -> io::Result<AgeTrim> {
    let mut done = AgeTrim::default();
    let Some(cutoff) = SystemTime::now().checked_sub(max_age) else {
        return Ok(done);
    };
    let expired = |path: &std::path::Path| -> io::Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.modified()? < cutoff),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    };
    if let Some((first, path)) = segments.files.last()
        && *first < next_seq
        && expired(path)?
    {
        let path = segments.path(next_seq);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        segments.files.push((next_seq, path));
        done.rolled = true;
    }
    for pair in segments.files.windows(2) {
        if !expired(&pair[0].1)? {
            break;
        }
        done.first_kept = Some(pair[1].0);
    }
    Ok(done)
}

/// Deletes the segments wholly before line `first_kept`, oldest first
/// (never the newest).
pub(crate) fn delete_before(segments: &mut Segments, first_kept: u64) -> io::Result<()> {
    while segments.files.len() > 1 && segments.files[1].0 <= first_kept {
        delete_oldest(segments)?;
    }
    Ok(())
}

/// How often the writer looks for expired segments, and how old its
/// current segment may grow before it starts a new one.
pub(crate) fn age_check_every(max_age: Duration) -> Duration {
    (max_age / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// How old a segment may grow before the writer starts a new one.
pub(crate) fn roll_after(max_age: Duration) -> Duration {
    (max_age / 8).max(Duration::from_millis(10))
}

fn delete_oldest(segments: &mut Segments) -> io::Result<()> {
    let (first, path) = segments.files.remove(0);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            segments.files.insert(0, (first, path));
            Err(e)
        }
    }
}

/// Segments retention chose to delete, and the line saying so.
pub(crate) struct Deletion {
    pub(crate) first_kept: u64,
    /// The sequence number of the hooks' line about it: the segments go
    /// once a batch holding it is written and synced.
    pub(crate) said_at: Option<u64>,
}

/// Deletes the chosen segments once the line saying so is on disk (syncing
/// the batch that holds it). Housekeeping: a failure leaves them for a
/// later pass, and never makes a written batch be retried.
pub(crate) fn delete_when_said<H: Hooks>(
    deletion: &mut Option<Deletion>,
    segments: &mut Segments,
    open: &mut Open,
    batch: &Option<Batch>,
    hooks: &mut H,
) {
    let Some(d) = deletion else { return };
    if let Some(seq) = d.said_at {
        if !batch.as_ref().is_some_and(|b| b.holds(seq)) {
            return;
        }
        // Written: a crash from now on leaves the line. Synced too, unless
        // the disk refuses (then it goes with a later sync; waiting for
        // one here could leave the deletion pending for good).
        if let Err(e) = open.sync() {
            tracing::warn!("syncing before deleting old segments: {e}");
        }
        d.said_at = None;
    }
    match delete_before(segments, d.first_kept) {
        Ok(()) => {
            hooks.trimmed(d.first_kept);
            *deletion = None;
        }
        Err(e) => tracing::warn!("deleting old segments: {e}"),
    }
}

/// Chooses old segments to delete by count and by age (`retention.rs`);
/// returns the first line to keep if any are to go.
pub(crate) fn trim(
    segments: &mut Segments,
    open: &mut Open,
    next_seq: u64,
    config: &Config,
    age_checked: &mut Instant,
) -> Option<u64> {
    let mut first_kept = None;
    if segments.total(next_seq) > config.keep.saturating_add(config.keep / 10) {
        first_kept = by_count(segments, next_seq, config.keep);
    }
    if let Some(max_age) = config.max_age
        && age_checked.elapsed() >= age_check_every(max_age)
    {
        *age_checked = Instant::now();
        match by_age(segments, next_seq, max_age) {
            Ok(found) => {
                if found.rolled {
                    open.leave(segments);
                }
                first_kept = first_kept.max(found.first_kept);
            }
            Err(e) => tracing::warn!(
                "looking for expired segments of {}: {e}",
                config.thread_name
            ),
        }
    }
    first_kept
}
