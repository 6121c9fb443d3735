//! The writer thread: drains the queue in batches, appends the lines to
//! segment files, syncs when asked, and trims the oldest segments.
//!
//! All file I/O of the run log happens here, off the dispatch path.

use std::io::Write;

use super::queue::{LINGER, SPARE_BYTES, Shared};
use super::segments::{Segments, complete_lines};

/// The writer's open segment.
struct Current {
    file: std::io::BufWriter<std::fs::File>,
    records: usize,
}

/// `next_id`: the id the first record appended will have.
pub(super) fn write_loop(
    mut segments: Segments,
    mut next_id: u64,
    shared: &Shared,
    keep: usize,
    per_segment: usize,
) {
    let mut current: Option<Current> = None;
    let mut spare = Vec::new();
    loop {
        let (lines, records, target, sync, closed) = {
            let mut q = shared.lock();
            if q.pending == 0 && q.sync_wanted <= q.synced && !q.closed {
                q = shared
                    .work
                    .wait_timeout(q, LINGER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (
                std::mem::replace(&mut q.lines, std::mem::take(&mut spare)),
                std::mem::take(&mut q.pending),
                q.appended,
                q.sync_wanted > q.synced,
                q.closed,
            )
        };
        shared.progress.notify_all();
        let mut result = append_all(&mut segments, &mut current, &lines, next_id, per_segment);
        next_id += records as u64;
        spare = lines;
        spare.clear();
        spare.shrink_to(SPARE_BYTES);
        if result.is_ok() && (sync || closed) {
            result = current.as_mut().map_or(Ok(()), |c| {
                c.file.flush().and_then(|()| c.file.get_ref().sync_data())
            });
        }
        if result.is_ok() && segments.total(next_id) > keep + keep / 10 {
            result = trim(&mut segments, next_id, keep);
        }
        if let Err(e) = &result {
            tracing::error!("writing run records: {e}");
        }
        let mut q = shared.lock();
        // A failed write also releases `sync` callers: they get the error.
        if sync || closed || result.is_err() {
            q.synced = target;
        }
        if let Err(e) = result {
            q.last_error = Some(e.to_string());
        }
        let done = closed && q.pending == 0;
        drop(q);
        shared.progress.notify_all();
        if done {
            return;
        }
    }
}

/// Appends `lines` (JSON lines of records with consecutive ids from
/// `first_id`), starting a new segment every `per_segment` records.
fn append_all(
    segments: &mut Segments,
    current: &mut Option<Current>,
    lines: &[u8],
    first_id: u64,
    per_segment: usize,
) -> std::io::Result<()> {
    for (id, line) in (first_id..).zip(complete_lines(lines)) {
        let open = match current {
            Some(c) if c.records < per_segment => c,
            _ => {
                if let Some(mut old) = current.take() {
                    old.file.flush()?;
                }
                // Continue the last segment after a restart if it has room.
                let (first, records) = match segments.files.last() {
                    Some((first, _)) if id - first < per_segment as u64 => {
                        (*first, (id - first) as usize)
                    }
                    _ => (id, 0),
                };
                let path = segments.path(first);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                if records == 0 {
                    segments.files.push((first, path));
                }
                current.insert(Current {
                    file: std::io::BufWriter::with_capacity(64 << 10, file),
                    records,
                })
            }
        };
        open.file.write_all(line)?;
        open.file.write_all(b"\n")?;
        open.records += 1;
    }
    match current {
        Some(c) => c.file.flush(),
        None => Ok(()),
    }
}

/// Deletes the oldest whole segments while at least `keep` records remain.
fn trim(segments: &mut Segments, next_id: u64, keep: usize) -> std::io::Result<()> {
    while segments.files.len() > 1 {
        let second_first = segments.files[1].0;
        if ((next_id - second_first) as usize) < keep {
            break;
        }
        let (_, path) = segments.files.remove(0);
        std::fs::remove_file(path)?;
    }
    Ok(())
}
