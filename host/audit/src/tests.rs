use std::sync::atomic::{AtomicBool, Ordering};

use keyhole_kv::Backend;
use keyhole_kv::breakable::Breakable;
use keyhole_kv_embedded::EmbeddedKv;

use super::*;

const ROOT: [u8; 32] = [42; 32];

struct Fixture {
    dir: tempfile::TempDir,
    kv: EmbeddedKv,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("data")).unwrap();
        Fixture { dir, kv }
    }

    fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    fn open(&self, keep: usize) -> AuditLog {
        self.open_with(keep, self.kv.bucket("audit").unwrap())
    }

    fn open_with(&self, keep: usize, heads: Arc<dyn Bucket>) -> AuditLog {
        AuditLog::open(&self.audit_dir(), &ROOT, heads, keep).unwrap()
    }
}

pub(crate) fn read(name: &str, outcome: ReadOutcome) -> SecretRead<'_> {
    SecretRead {
        time_ms: entry::now_ms(),
        event_id: "ev_1",
        topic: "greet:now",
        deployment: "hello",
        module_sha256: "bc96",
        name,
        requested: None,
        resolved: (outcome == ReadOutcome::Ok).then_some(ResolvedScope {
            space: false,
            id: "prod",
            provenance: "environment",
            version: 1,
        }),
        injected: None,
        outcome,
        reason: None,
    }
}

pub(crate) fn admin<'a>(actor: &'a str, action: &'a str) -> Admin<'a> {
    Admin {
        time_ms: entry::now_ms(),
        actor,
        action,
        target: "env:prod/SLACK_TOKEN",
        outcome: "ok",
        detail: None,
    }
}

pub(crate) fn fill(log: &AuditLog, n: usize) {
    for i in 0..n {
        let name = format!("NAME_{i}");
        log.secret_read(&read(&name, ReadOutcome::Ok)).unwrap();
    }
    log.sync(Duration::from_secs(10)).unwrap();
}

#[test]
fn entries_come_back_filtered_and_paged() {
    let fx = Fixture::new();
    let log = fx.open(10_000);
    log.secret_read(&read("SLACK_TOKEN", ReadOutcome::Ok))
        .unwrap();
    log.secret_read(&read("SLACK_TOKEN", ReadOutcome::NotFound))
        .unwrap();
    log.secret_read(&read("DB_URL", ReadOutcome::AccessDenied))
        .unwrap();
    log.admin(&admin("token:ci", "secret.set")).unwrap();
    let all = log
        .query(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [4, 3, 2, 1], "newest first");
    let q = |q: AuditQuery| log.query(&AuditQuery { limit: 100, ..q }).unwrap().len();
    assert_eq!(
        q(AuditQuery {
            secret: Some("SLACK_TOKEN".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        q(AuditQuery {
            outcome: Some("access_denied".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        q(AuditQuery {
            actor: Some("token:ci".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        q(AuditQuery {
            deployment: Some("hello".into()),
            ..Default::default()
        }),
        3
    );
    let page = log
        .query(&AuditQuery {
            before: Some(3),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page[0].seq, 2);
    let follow = log
        .query(&AuditQuery {
            after: Some(2),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        follow.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 4],
        "oldest first"
    );
    let report = log.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 4);
}

/// Every way of rewriting history is caught, at the right entry.
#[test]
fn tampering_is_named_at_its_entry() {
    let fx = Fixture::new();
    let log = fx.open(200);
    fill(&log, 100);
    drop(log);
    let segments = keyhole_seglog::segments(&fx.audit_dir()).unwrap();
    assert!(segments.len() > 1, "several segments");
    let (_, first) = &segments[0];
    let original = std::fs::read(first).unwrap();
    let lines: Vec<&[u8]> = keyhole_seglog::complete_lines(&original).collect();
    let write = |lines: &[&[u8]]| {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        std::fs::write(first, out).unwrap();
    };
    let check = |want_seq: u64, want: &str| {
        let log = fx.open(200);
        let report = log.verify().unwrap();
        let problem = report
            .problem
            .unwrap_or_else(|| panic!("{want}: not caught"));
        assert_eq!(problem.seq, want_seq, "{want}: {problem}");
        assert!(problem.what.contains(want), "{want}: {problem}");
    };

    // A byte edited inside entry 3.
    let mut edited = lines[2].to_vec();
    let at = edited.windows(6).position(|w| w == b"NAME_2").unwrap();
    edited[at + 5] = b'9';
    let mut copy = lines.clone();
    copy[2] = &edited;
    write(&copy);
    check(3, "does not authenticate");
    // Entry 5 deleted.
    let mut copy = lines.clone();
    copy.remove(4);
    write(&copy);
    check(5, "entries deleted, repeated or reordered");
    // Entries 6 and 7 swapped.
    let mut copy = lines.clone();
    copy.swap(5, 6);
    write(&copy);
    check(6, "entries deleted, repeated or reordered");
    write(&lines);
    assert!(fx.open(200).verify().unwrap().ok(), "restored");

    // The newest entries truncated: the recorded head catches it.
    let (_, last) = segments.last().unwrap();
    let tail = std::fs::read(last).unwrap();
    let tail_lines: Vec<&[u8]> = keyhole_seglog::complete_lines(&tail).collect();
    let mut cut = Vec::new();
    for l in &tail_lines[..tail_lines.len() - 2] {
        cut.extend_from_slice(l);
        cut.push(b'\n');
    }
    std::fs::write(last, &cut).unwrap();
    check(99, "truncated");
    std::fs::write(last, &tail).unwrap();

    // A segment swapped for another (renamed into its place).
    let (_, second) = &segments[1];
    let second_bytes = std::fs::read(second).unwrap();
    std::fs::write(first, &second_bytes).unwrap();
    check(segments[1].0, "segments swapped");
    std::fs::write(first, &original).unwrap();

    // The whole first segment deleted, with no retention entry for it.
    std::fs::remove_file(first).unwrap();
    check(segments[1].0, "no retention entry");
    std::fs::write(first, &original).unwrap();
    assert!(fx.open(200).verify().unwrap().ok());

    // Another key cannot verify it (nor could it have written it).
    let other = AuditLog::open(
        &fx.audit_dir(),
        &[1; 32],
        fx.kv.bucket("audit").unwrap(),
        200,
    )
    .unwrap();
    assert!(!other.verify().unwrap().ok());
}

#[test]
fn retention_deletes_old_segments_and_says_so() {
    let fx = Fixture::new();
    let log = fx.open(64);
    for _ in 0..10 {
        fill(&log, 40);
    }
    let before = keyhole_seglog::segments(&fx.audit_dir()).unwrap();
    assert!(before[0].0 > 1, "old segments were deleted");
    let retention = log
        .query(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.entry, Entry::Retention { .. }))
        .count();
    assert!(retention >= 1);
    let report = log.verify().unwrap();
    assert!(report.ok(), "{report:?}");
}

#[test]
fn a_failing_sink_refuses_entries_keeps_what_it_accepted_and_recovers() {
    let fx = Fixture::new();
    let broken = Arc::new(AtomicBool::new(false));
    let heads = Arc::new(Breakable::new(
        fx.kv.bucket("audit").unwrap(),
        broken.clone(),
    ));
    let log = fx.open_with(10_000, heads);
    log.secret_read(&read("BEFORE", ReadOutcome::Ok)).unwrap();
    log.sync(Duration::from_secs(10)).unwrap();

    broken.store(true, Ordering::SeqCst);
    log.secret_read(&read("ACCEPTED", ReadOutcome::Ok)).unwrap();
    let err = log.admin(&admin("token:ci", "secret.set")).unwrap_err();
    assert!(
        err.to_string().starts_with("audit log unavailable"),
        "{err}"
    );
    assert!(log.failing().is_some());
    assert!(log.secret_read(&read("REFUSED", ReadOutcome::Ok)).is_err());

    broken.store(false, Ordering::SeqCst);
    let healed = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        log.failing().is_none()
    });
    assert!(healed);
    log.secret_read(&read("AFTER", ReadOutcome::Ok)).unwrap();
    log.sync(Duration::from_secs(10)).unwrap();
    let names: Vec<String> = log
        .query(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::SecretRead { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["AFTER", "ACCEPTED", "BEFORE"]);
    assert!(log.verify().unwrap().ok());
}

#[test]
fn the_chain_continues_across_a_reopen() {
    let fx = Fixture::new();
    let log = fx.open(usize::MAX);
    fill(&log, 10);
    drop(log);
    let log = fx.open(usize::MAX);
    fill(&log, 10);
    let report = log.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 20);
}
