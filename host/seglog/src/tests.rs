use std::io::Write;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

struct Plain;
impl Hooks for Plain {}

fn config(keep: usize) -> Config {
    Config::keeping("test-log", keep)
}

fn open(dir: &Path, keep: usize) -> SegLog {
    SegLog::open(dir, config(keep), |_, _| Ok(Plain)).unwrap()
}

fn put(log: &SegLog, text: &str) -> u64 {
    log.append(0, |_, out| out.extend_from_slice(text.as_bytes()))
}

fn newest(log: &SegLog) -> Vec<String> {
    let mut out = Vec::new();
    log.newest_first(|l| {
        out.push(String::from_utf8(l.to_vec()).unwrap());
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

#[test]
fn sequence_numbers_are_consecutive_and_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1000);
    let seqs: Vec<u64> = (0..150).map(|i| put(&log, &format!("line {i}"))).collect();
    assert_eq!(seqs, (1..=150).collect::<Vec<_>>());
    log.sync(Duration::from_secs(10)).unwrap();
    drop(log);
    let mut last_seen = None;
    let log = SegLog::open(dir.path(), config(1000), |last, next| {
        last_seen = Some((last.map(<[u8]>::to_vec), next));
        Ok(Plain)
    })
    .unwrap();
    assert_eq!(last_seen, Some((Some(b"line 149".to_vec()), 151)));
    assert_eq!(put(&log, "after"), 151);
    let lines = newest(&log);
    assert_eq!(lines.len(), 151);
    assert_eq!(
        (lines[0].as_str(), lines[1].as_str()),
        ("after", "line 149")
    );
    assert!(segments(dir.path()).unwrap().len() > 1, "several segments");
}

#[test]
fn a_torn_last_line_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1000);
    for i in 0..5 {
        put(&log, &format!("{i}"));
    }
    drop(log);
    let (_, last) = segments(dir.path()).unwrap().pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(b"half a li").unwrap();
    drop(f);
    let log = open(dir.path(), 1000);
    assert_eq!(put(&log, "next"), 6);
    assert_eq!(newest(&log), ["next", "4", "3", "2", "1", "0"]);
}

/// Deletes beyond `keep`, and appends the hook's line about it; when the
/// segments are gone, notes whether that line was already on disk.
struct Trimming {
    dir: PathBuf,
    /// (first line kept, its line was in a segment file when they went).
    seen: Arc<Mutex<Vec<(u64, bool)>>>,
}
impl Hooks for Trimming {
    fn trimming(&mut self, first_kept: u64) -> Option<Vec<u8>> {
        Some(format!("trimmed before {first_kept}").into_bytes())
    }

    fn trimmed(&mut self, first_kept: u64) {
        let line = format!("trimmed before {first_kept}\n");
        let on_disk = segments(&self.dir).unwrap().iter().any(|(_, path)| {
            String::from_utf8_lossy(&std::fs::read(path).unwrap()).contains(&line)
        });
        self.seen.lock().unwrap().push((first_kept, on_disk));
    }
}

#[test]
fn old_segments_are_trimmed_beyond_keep_after_the_hook_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = Trimming {
        dir: dir.path().to_path_buf(),
        seen: seen.clone(),
    };
    let keep = 200;
    let log = SegLog::open(dir.path(), config(keep), |_, _| Ok(hook)).unwrap();
    for round in 0..10 {
        for i in 0..100 {
            put(&log, &format!("{}", round * 100 + i));
        }
        log.sync(Duration::from_secs(10)).unwrap();
    }
    let lines = newest(&log);
    assert!(
        (keep..=keep + keep / 10 + keep / 8 + 20).contains(&lines.len()),
        "{} lines kept",
        lines.len()
    );
    let trims = seen.lock().unwrap().clone();
    assert!(!trims.is_empty());
    // A crash between deleting and saying so would leave a log whose start
    // nothing explains: the line is written first.
    assert!(trims.iter().all(|(_, on_disk)| *on_disk), "{trims:?}");
    let notes = lines.iter().filter(|l| l.starts_with("trimmed")).count();
    assert!(notes >= 1, "the trim was recorded");
    assert!(lines.iter().any(|l| l == "999"), "the newest are kept");
}

/// Fails `after_write` a given number of times.
struct Flaky {
    failures: Arc<AtomicUsize>,
}
impl Hooks for Flaky {
    fn after_write(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(std::io::Error::other("disk on fire"));
        }
        Ok(())
    }
}

#[test]
fn a_failing_write_refuses_new_lines_retries_and_loses_or_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let hook = Flaky {
        failures: failures.clone(),
    };
    let mut cfg = config(1000);
    cfg.retry = Duration::from_millis(20);
    let log = SegLog::open(dir.path(), cfg, |_, _| Ok(hook)).unwrap();
    put(&log, "before");
    log.sync(Duration::from_secs(10)).unwrap();

    failures.store(5, Ordering::SeqCst);
    put(&log, "during");
    let err = log.sync(Duration::from_secs(10)).unwrap_err();
    assert!(err.0.contains("disk on fire"), "{err}");
    assert!(log.failing().is_some());
    assert!(
        log.try_append(0, |_, out| out.extend_from_slice(b"refused"))
            .is_err(),
        "fails closed"
    );
    // It heals by itself once writes work again.
    let healed = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        log.failing().is_none()
    });
    assert!(healed, "still failing");
    log.try_append(0, |_, out| out.extend_from_slice(b"after"))
        .unwrap();
    log.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(newest(&log), ["after", "during", "before"]);
}

/// Reports the highest mark of each batch.
struct Marks(Arc<Mutex<Vec<u64>>>);
impl Hooks for Marks {
    fn before_write(&mut self, mark: u64, _: &dyn Fn() -> bool) {
        self.0.lock().unwrap().push(mark);
    }
    fn store(&mut self, seq: u64, body: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{seq}:").as_bytes());
        out.extend_from_slice(body);
    }
}

#[test]
fn batches_carry_their_highest_mark_and_lines_their_stored_form() {
    let dir = tempfile::tempdir().unwrap();
    let marks = Arc::new(Mutex::new(Vec::new()));
    let hook = Marks(marks.clone());
    let log = SegLog::open(dir.path(), config(1000), |_, _| Ok(hook)).unwrap();
    log.append(7, |_, out| out.extend_from_slice(b"a"));
    log.append(3, |_, out| out.extend_from_slice(b"b"));
    log.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(marks.lock().unwrap().last(), Some(&7));
    assert_eq!(newest(&log), ["2:b", "1:a"]);
    let mut oldest = Vec::new();
    read_oldest_first(dir.path(), |l| {
        oldest.push(l.to_vec());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(oldest, [b"1:a".to_vec(), b"2:b".to_vec()]);
}

/// Never lets a batch through until the log is being dropped.
struct Stuck;
impl Hooks for Stuck {
    fn before_write(&mut self, _: u64, closing: &dyn Fn() -> bool) {
        while !closing() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn a_blocked_barrier_lets_go_when_the_log_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegLog::open(dir.path(), config(1000), |_, _| Ok(Stuck)).unwrap();
    log.append(1, |_, out| out.extend_from_slice(b"waits"));
    assert!(!log.wait_written(1, Duration::from_millis(100)));
    let started = std::time::Instant::now();
    drop(log);
    assert!(started.elapsed() < Duration::from_secs(5), "drop hung");
    assert_eq!(
        std::fs::read_to_string(&segments(dir.path()).unwrap()[0].1).unwrap(),
        "waits\n"
    );
}

#[test]
fn segments_read_back_with_their_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 160); // 20 lines a segment
    for i in 1..=100 {
        put(&log, &format!("line {i}"));
    }
    assert_eq!(log.next_seq(), 101);
    let segs = log.segments().unwrap();
    assert_eq!(segs.len(), 5);
    let mut want = 1;
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg.first, want);
        assert_eq!(seg.end, segs.get(i + 1).map(|s| s.first));
        let lines = seg.read().unwrap().unwrap();
        for (seq, line) in lines.lines() {
            assert_eq!((seq, line), (want, format!("line {want}").as_bytes()));
            assert!(seg.may_hold(seq));
            want += 1;
        }
        let last = want - 1;
        assert_eq!(lines.get(last), Some(format!("line {last}").as_bytes()));
        assert_eq!(lines.get(seg.first.wrapping_sub(1)), None);
        assert_eq!(lines.get(want), None);
    }
    assert_eq!(want, 101);
    assert!(segs[4].may_hold(10_000) && !segs[3].may_hold(100));
    // A segment deleted since it was listed reads as `None`.
    std::fs::remove_file(&segs[0].path).unwrap();
    assert!(segs[0].read().unwrap().is_none());
}

fn aging(max_age: Duration) -> Config {
    Config {
        max_age: Some(max_age),
        ..config(1000)
    }
}

/// Waits (at most 5 s) until `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_segment_is_closed_once_it_is_an_eighth_of_the_maximum_age_old() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegLog::open(dir.path(), aging(Duration::from_secs(60)), |_, _| Ok(Plain)).unwrap();
    put(&log, "a");
    log.sync(Duration::from_secs(10)).unwrap();
    drop(log);
    // Another process never continues a segment whose age it cannot know.
    let log = SegLog::open(dir.path(), aging(Duration::from_millis(400)), |_, _| {
        Ok(Plain)
    })
    .unwrap();
    put(&log, "b");
    log.sync(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(80)); // past 400 ms / 8
    put(&log, "c");
    log.sync(Duration::from_secs(10)).unwrap();
    let firsts: Vec<u64> = log.segments().unwrap().iter().map(|s| s.first).collect();
    assert_eq!(firsts, [1, 2, 3]);
}

#[test]
fn lines_past_the_maximum_age_are_deleted_and_numbering_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let max_age = Duration::from_millis(300);
    let log = SegLog::open(dir.path(), aging(max_age), |_, _| Ok(Plain)).unwrap();
    for i in 1..=10 {
        put(&log, &format!("old {i}"));
    }
    log.sync(Duration::from_secs(10)).unwrap();
    eventually("old lines deleted", || newest(&log).is_empty());
    // An empty newest segment keeps the next sequence number.
    let files = segments(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, 11);
    assert_eq!(std::fs::metadata(&files[0].1).unwrap().len(), 0);
    assert_eq!(put(&log, "new"), 11);
    assert_eq!(newest(&log), ["new"], "fresh lines stay");
    drop(log);

    let mut last_seen = None;
    let log = SegLog::open(dir.path(), aging(max_age), |last, next| {
        last_seen = Some((last.map(<[u8]>::to_vec), next));
        Ok(Plain)
    })
    .unwrap();
    assert_eq!(last_seen, Some((Some(b"new".to_vec()), 12)));
    eventually("deleted after the restart too", || newest(&log).is_empty());
    drop(log);
    let log = SegLog::open(dir.path(), aging(max_age), |_, _| Ok(Plain)).unwrap();
    assert_eq!(put(&log, "later"), 12);
    assert_eq!(newest(&log), ["later"]);
}
