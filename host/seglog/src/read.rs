//! Reading a log back a segment at a time, for callers that page through
//! it or look one line up.
//!
//! Segment files are named by the sequence number of their first line, so
//! a reader that knows which sequence numbers it wants (a cursor, one line)
//! skips whole segments by name, without opening them, and holds one
//! segment in memory at a time rather than the log. A line's sequence
//! number is its segment's first plus its place among the segment's
//! complete lines: the writer numbers lines that way, and a torn tail is
//! never counted (`files.rs`).

use std::io;
use std::ops::Range;
use std::path::PathBuf;

use crate::files::read_segment;

/// One segment file, as listed by [`crate::SegLog::segments`].
#[derive(Clone, Debug)]
pub struct Segment {
    /// The sequence number of its first line.
    pub first: u64,
    /// The next segment's first sequence number; `None` for the newest
    /// segment, which may still grow. A segment with an `end` is complete:
    /// the writer never adds to it again.
    pub end: Option<u64>,
    pub(crate) path: PathBuf,
}

impl Segment {
    /// Whether the segment may hold line `seq` (the newest may hold any
    /// line from its first on).
    pub fn may_hold(&self, seq: u64) -> bool {
        seq >= self.first && self.end.is_none_or(|end| seq < end)
    }

    /// Its complete lines, or `None` if it was deleted since it was listed
    /// (retention deletes the oldest first, so older ones are gone too).
    pub fn read(&self) -> io::Result<Option<SegmentLines>> {
        let Some(bytes) = read_segment(&self.path)? else {
            return Ok(None);
        };
        // What `complete_lines` yields: newline-terminated, non-empty.
        let mut spans = Vec::new();
        let mut start = 0;
        for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            if i > start {
                spans.push(start..i);
            }
            start = i + 1;
        }
        Ok(Some(SegmentLines {
            first: self.first,
            bytes,
            spans,
        }))
    }
}

/// The complete lines of one segment, with their sequence numbers.
pub struct SegmentLines {
    first: u64,
    bytes: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl SegmentLines {
    /// How many complete lines it has.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Line `seq`, if this segment has it.
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.spans.get(index).map(|s| &self.bytes[s.clone()])
    }

    /// `(sequence number, line)`, oldest first; `.rev()` for newest first.
    pub fn lines(&self) -> impl DoubleEndedIterator<Item = (u64, &[u8])> + ExactSizeIterator {
        self.spans
            .iter()
            .enumerate()
            .map(|(i, s)| (self.first + i as u64, &self.bytes[s.clone()]))
    }
}
