//! The writer's own parts (`writer.rs`).

use super::*;

/// A batch that rolls over to a new segment leaves lines in the old
/// one: the next sync covers it too, and a segment deleted meanwhile
/// (by retention) is passed over.
#[test]
fn a_sync_covers_the_segments_left_since_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut open = Open::default();
    let segment = |first: u64| {
        let path = dir.path().join(format!("{first}.jsonl"));
        Current {
            file: crate::files::open_for_append(&path).unwrap(),
            first,
            path,
            lines: 0,
            opened: Instant::now(),
        }
    };
    for first in [1, 2, 3] {
        let segments = Segments::scan(dir.path()).unwrap();
        open.leave(&segments);
        open.current = Some(segment(first));
    }
    let left: Vec<_> = [1, 2]
        .iter()
        .map(|&n| (n, dir.path().join(format!("{n}.jsonl"))))
        .collect();
    assert_eq!(open.unsynced, left);
    std::fs::remove_file(&left[0].1).unwrap();
    open.sync().unwrap();
    assert!(open.unsynced.is_empty());
    assert!(open.current.is_some(), "still appending to the newest");
}

/// Segments retention deleted (the oldest) are let go of when the writer
/// next leaves one, without asking the file system; the others stay until
/// a sync.
#[test]
fn leaving_a_segment_lets_go_of_the_deleted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut open = Open::default();
    for first in [10, 20, 30, 40] {
        let path = dir.path().join(format!("{first}.jsonl"));
        let file = crate::files::open_for_append(&path).unwrap();
        let segments = Segments::scan(dir.path()).unwrap();
        open.leave(&segments);
        open.current = Some(Current {
            file,
            first,
            path,
            lines: 0,
            opened: Instant::now(),
        });
    }
    let firsts = |open: &Open| open.unsynced.iter().map(|(f, _)| *f).collect::<Vec<_>>();
    assert_eq!(firsts(&open), vec![10, 20, 30]);
    // Retention deletes the two oldest.
    for first in [10, 20] {
        std::fs::remove_file(dir.path().join(format!("{first}.jsonl"))).unwrap();
    }
    let segments = Segments::scan(dir.path()).unwrap();
    open.leave(&segments);
    assert_eq!(firsts(&open), vec![30, 40]);
}
