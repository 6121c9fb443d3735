//! `keyhole audit verify`: walks the whole chain and names the first entry
//! that does not hold.
//!
//! What is checked, in order: every line parses; its MAC authenticates
//! under the key; sequence numbers run on without a gap, repeat or swap;
//! each entry links to the one before it; each segment starts where its
//! file name says; a log that no longer starts at entry 1 has a retention
//! entry saying where it starts now; and the log does not end before the
//! head the writer recorded (truncation).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chain::{self, AuditKey, Head, MAC_LEN};
use crate::entry::Entry;

/// What verification found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries that verified before the first problem (all, if none).
    pub entries: u64,
    pub segments: usize,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first entry that does not hold, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The entry's sequence number (the one expected there, for a missing
    /// or garbled entry).
    pub seq: u64,
    /// The segment file and the line in it (1-based), if the entry is in one.
    pub segment: Option<PathBuf>,
    pub line: Option<usize>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}", self.seq)?;
        if let (Some(s), Some(l)) = (&self.segment, self.line) {
            let name = s
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            write!(f, " (segment {name}, line {l})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// A run of consecutive stored lines: a segment file, or a chunk of a
/// host's chain in the cluster's bucket (`mirror.rs`).
pub(crate) struct Piece {
    /// The sequence number its name says it starts with.
    pub first: u64,
    /// Its name in problems: the segment's path, or `HOST/FIRST`.
    pub name: PathBuf,
    pub bytes: Vec<u8>,
}

/// Verifies the log in `dir` against `key` and the recorded `head`.
pub(crate) fn verify(
    dir: &Path,
    key: &AuditKey,
    head: Option<&Head>,
) -> std::io::Result<VerifyReport> {
    let segments = keyhole_seglog::segments(dir)?;
    let count = segments.len();
    let pieces = segments
        .into_iter()
        .map(|(first, path)| match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Piece {
                first,
                name: path,
                bytes,
            })),
            // Deleted by retention since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        });
    verify_pieces(count, pieces, key, head)
}

/// Verifies a chain given as `count` pieces in order (`None`: a piece gone
/// since it was listed).
pub(crate) fn verify_pieces(
    count: usize,
    pieces: impl IntoIterator<Item = std::io::Result<Option<Piece>>>,
    key: &AuditKey,
    head: Option<&Head>,
) -> std::io::Result<VerifyReport> {
    let mut report = VerifyReport {
        entries: 0,
        segments: count,
        problem: None,
    };
    let mut expect: Option<u64> = None;
    let mut prev = [0u8; MAC_LEN];
    let mut macs_at_head = None;
    // The first entry, when the log no longer starts at 1: a retention
    // entry must say it starts there.
    let mut start_unexplained: Option<(u64, PathBuf)> = None;
    let fail = |seq, path: &Path, line, what: String| Problem {
        seq,
        segment: Some(path.to_path_buf()),
        line: Some(line),
        what,
    };
    'segments: for piece in pieces {
        let Some(Piece {
            first,
            name: path,
            bytes,
        }) = piece?
        else {
            continue;
        };
        let (first, path) = (&first, &path);
        for (i, line) in keyhole_seglog::complete_lines(&bytes).enumerate() {
            let at = expect.unwrap_or(*first);
            let stored = match chain::parse(line) {
                Ok(s) => s,
                Err(why) => {
                    report.problem = Some(fail(at, path, i + 1, format!("malformed: {why}")));
                    break 'segments;
                }
            };
            if !key.verify(&[stored.covered], &stored.mac) {
                let what = "does not authenticate (edited, or written under another key)";
                report.problem = Some(fail(stored.seq, path, i + 1, what.into()));
                break 'segments;
            }
            if i == 0 && stored.seq != *first {
                let what = format!(
                    "segment named for entry {first} starts with entry {} (segments swapped or renamed)",
                    stored.seq
                );
                report.problem = Some(fail(stored.seq, path, 1, what));
                break 'segments;
            }
            match expect {
                None if stored.seq != 1 => start_unexplained = Some((stored.seq, path.clone())),
                None if stored.prev != [0; MAC_LEN] => {
                    let what = "the first entry links to an earlier one".into();
                    report.problem = Some(fail(1, path, i + 1, what));
                    break 'segments;
                }
                Some(want) if stored.seq != want => {
                    let what = format!(
                        "found entry {} where entry {want} belongs (entries deleted, repeated or reordered)",
                        stored.seq
                    );
                    report.problem = Some(fail(want, path, i + 1, what));
                    break 'segments;
                }
                Some(_) if stored.prev != prev => {
                    let what = format!("does not link to entry {}", stored.seq - 1);
                    report.problem = Some(fail(stored.seq, path, i + 1, what));
                    break 'segments;
                }
                _ => {}
            }
            // A log starting at or before the first entry a retention
            // entry kept lost only what retention deleted (the cluster's
            // copy is trimmed by whole chunks, which need not start there).
            if let Ok(Entry::Retention { first_kept, .. }) = serde_json::from_slice(stored.entry)
                && start_unexplained
                    .as_ref()
                    .is_some_and(|(s, _)| *s <= first_kept)
            {
                start_unexplained = None;
            }
            if head.is_some_and(|h| h.seq == stored.seq) {
                macs_at_head = Some(stored.mac);
            }
            prev = stored.mac;
            expect = Some(stored.seq + 1);
            report.entries += 1;
        }
    }
    if report.problem.is_some() {
        return Ok(report);
    }
    if let Some((seq, path)) = start_unexplained {
        report.problem = Some(Problem {
            seq,
            segment: Some(path),
            line: Some(1),
            what: format!(
                "the log starts at entry {seq}, and no retention entry says entries before it were deleted"
            ),
        });
        return Ok(report);
    }
    if let Some(head) = head {
        let Some(head_mac) = head.check(key) else {
            report.problem = Some(Problem {
                seq: head.seq,
                segment: None,
                line: None,
                what: "the recorded head of the log does not authenticate".into(),
            });
            return Ok(report);
        };
        let last = expect.map_or(0, |e| e - 1);
        if last < head.seq {
            report.problem = Some(Problem {
                seq: last + 1,
                segment: None,
                line: None,
                what: format!(
                    "missing: the log ends at entry {last}, but entries up to {} were written (truncated)",
                    head.seq
                ),
            });
        } else if macs_at_head.is_some_and(|m| m != head_mac) {
            report.problem = Some(Problem {
                seq: head.seq,
                segment: None,
                line: None,
                what: "differs from the entry recorded as the head (the log was rewritten)".into(),
            });
        }
    }
    Ok(report)
}
