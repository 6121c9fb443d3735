//! The segment files: finding them, naming them, reading complete lines out
//! of them, and cutting off a torn tail.
//!
//! Segments are named by the sequence number of their first line,
//! zero-padded, so name order is log order. A crash can leave a torn last
//! line; everything here reads only newline-terminated lines, and
//! [`Segments::open_tail`] cuts a torn tail off before appends resume.
//!
//! Lines may say who did what and when (the audit log) or what a listener
//! printed (the run log): the directory is created 0700 and segments 0600,
//! whatever the process umask.

use std::path::{Path, PathBuf};

/// Creates the log's directory (and missing parents), mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens a segment for appending, creating it mode 0600.
pub(crate) fn open_for_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// The segment files, oldest first, by the sequence number of their first
/// line.
pub(crate) struct Segments {
    dir: PathBuf,
    pub files: Vec<(u64, PathBuf)>,
}

impl Segments {
    pub fn scan(dir: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
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

    pub fn path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.jsonl"))
    }

    /// The sequence number after the last complete line, and that line;
    /// cuts off a torn last line (a crash mid-append) so later appends
    /// start on a line of their own.
    pub fn open_tail(&self) -> std::io::Result<(u64, Option<Vec<u8>>)> {
        let Some((first, path)) = self.files.last() else {
            return Ok((1, None));
        };
        let bytes = std::fs::read(path)?;
        let complete = complete_len(&bytes);
        if complete < bytes.len() {
            tracing::warn!(path = %path.display(), "cutting off a torn last line");
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(complete as u64)?;
        }
        let mut lines = complete_lines(&bytes);
        let last = lines.next_back().map(<[u8]>::to_vec);
        let count = u64::from(last.is_some()) + lines.count() as u64;
        Ok((first + count, last))
    }

    /// Lines in all segments: sequence numbers are consecutive, so the gap
    /// from the oldest segment's first line to `next_seq`.
    pub fn total(&self, next_seq: u64) -> usize {
        self.files
            .first()
            .map_or(0, |(first, _)| (next_seq - first) as usize)
    }
}

/// A segment's bytes, or `None` if it was deleted meanwhile.
pub(crate) fn read_segment(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The complete (newline-terminated) lines of a segment's bytes.
pub fn complete_lines(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes[..complete_len(bytes)]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
}

/// Bytes up to and including the last newline: what a torn write left
/// behind, if anything, comes after.
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// The segment files of the log in `dir`, oldest first, as (sequence
/// number of the first line, path).
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    Ok(Segments::scan(dir)?.files)
}
