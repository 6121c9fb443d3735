//! The segment files of the run log: finding them, naming them, and
//! reading complete records out of them.
//!
//! Segments are named by the id of their first record, zero-padded, so name
//! order is run order. A crash can leave a torn last line; everything here
//! reads only newline-terminated records, and [`Segments::next_id`] cuts a
//! torn tail off before appends resume.

use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

/// The segment files, oldest first, by the id of their first record.
pub(super) struct Segments {
    dir: PathBuf,
    pub(super) files: Vec<(u64, PathBuf)>,
}

impl Segments {
    pub(super) fn scan(dir: &Path) -> Result<Self, RuntimeError> {
        let io = |e| RuntimeError::io(dir, e);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                files.push((first, path));
            }
        }
        files.sort();
        Ok(Segments {
            dir: dir.to_path_buf(),
            files,
        })
    }

    pub(super) fn path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.jsonl"))
    }

    /// The id after the last complete record; cuts off a torn last line
    /// (a crash mid-append) so later appends start on a line of their own.
    pub(super) fn next_id(&self) -> Result<u64, RuntimeError> {
        let Some((first, path)) = self.files.last() else {
            return Ok(1);
        };
        let io = |e| RuntimeError::io(path, e);
        let bytes = std::fs::read(path).map_err(io)?;
        let complete = complete_len(&bytes);
        if complete < bytes.len() {
            tracing::warn!(path = %path.display(), "cutting off a torn last run record");
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(complete as u64))
                .map_err(io)?;
        }
        Ok(first + complete_lines(&bytes).count() as u64)
    }

    /// Records in all segments: ids are consecutive, so the gap from the
    /// oldest segment's first id to `next_id`.
    pub(super) fn total(&self, next_id: u64) -> usize {
        self.files
            .first()
            .map_or(0, |(first, _)| (next_id - first) as usize)
    }
}

/// The complete (newline-terminated) records of a segment, one JSON
/// document per line (JSON escapes newlines inside strings).
pub(super) fn complete_lines(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes[..complete_len(bytes)]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
}

/// Bytes up to and including the last newline: what a torn write left
/// behind, if anything, comes after.
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}
