//! The writer's own parts (`writer.rs`).

use super::*;

/// A batch that rolls over to a new segment leaves lines in the old
/// one: the next sync covers it too, and a segment deleted meanwhile
/// (by retention) is passed over.
#[test]
fn a_sync_covers_the_segments_left_since_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut open = Open::default();
    let segment = |name: &str| {
        let path = dir.path().join(name);
        Current {
            file: crate::files::open_for_append(&path).unwrap(),
            path,
            lines: 0,
            opened: Instant::now(),
        }
    };
    for name in ["1.jsonl", "2.jsonl", "3.jsonl"] {
        open.leave();
        open.current = Some(segment(name));
    }
    let left: Vec<_> = ["1.jsonl", "2.jsonl"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    assert_eq!(open.unsynced, left);
    std::fs::remove_file(&left[0]).unwrap();
    open.sync().unwrap();
    assert!(open.unsynced.is_empty());
    assert!(open.current.is_some(), "still appending to the newest");
}
