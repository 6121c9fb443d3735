//! The cluster's copy of the audit log (`mirror.rs`): two hosts, each with
//! its own files and head, copy their chains into one shared bucket (an
//! embedded one here; NATS in `host/cli/tests/cluster.rs`). Either host
//! verifies and reads both chains; tampering with the copy is named; a copy
//! that cannot be written fails the log closed.

use std::sync::atomic::{AtomicBool, Ordering};

use keyhole_kv::Backend;
use keyhole_kv::breakable::Breakable;
use keyhole_kv_embedded::EmbeddedKv;

use super::*;
use crate::tests::{admin, fill, read};

const ROOT: [u8; 32] = [42; 32];

/// Two hosts' data directories and the cluster's shared bucket.
struct Cluster {
    dir: tempfile::TempDir,
    shared: EmbeddedKv,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shared = EmbeddedKv::open(&dir.path().join("cluster")).unwrap();
        Cluster { dir, shared }
    }

    fn bucket(&self) -> Arc<dyn Bucket> {
        self.shared.bucket("audit-log").unwrap()
    }

    /// Host `name`'s log, copying into `bucket`.
    fn host_with(
        &self,
        name: &str,
        keep: usize,
        bucket: Arc<dyn Bucket>,
    ) -> (AuditLog, EmbeddedKv) {
        let own = EmbeddedKv::open(&self.dir.path().join(name).join("data")).unwrap();
        let log = AuditLog::open_mirrored(
            &self.dir.path().join(name).join("audit"),
            &ROOT,
            own.bucket("audit").unwrap(),
            keep,
            Some(Mirror::new(bucket, name).unwrap()),
        )
        .unwrap();
        (log, own)
    }

    fn host(&self, name: &str) -> (AuditLog, EmbeddedKv) {
        self.host_with(name, usize::MAX, self.bucket())
    }
}

fn names(records: &[AuditRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::SecretRead { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn all() -> AuditQuery {
    AuditQuery {
        limit: 10_000,
        ..Default::default()
    }
}

#[test]
fn either_host_verifies_and_reads_both_chains() {
    let c = Cluster::new();
    let (a, _ka) = c.host("web-1");
    let (b, _kb) = c.host("web-2");
    fill(&a, 30);
    b.secret_read(&read("ONLY_ON_B", ReadOutcome::Ok)).unwrap();
    b.admin(&admin("token:ci", "secret.set")).unwrap();
    fill(&b, 5);
    assert_eq!(a.host(), Some("web-1"));
    assert_eq!(a.hosts().unwrap(), ["web-1", "web-2"]);
    for log in [&a, &b] {
        let reports = log.verify_cluster().unwrap();
        let summary: Vec<(&str, u64, bool)> = reports
            .iter()
            .map(|r| (r.host.as_str(), r.report.entries, r.report.ok()))
            .collect();
        assert_eq!(summary, [("web-1", 30, true), ("web-2", 7, true)]);
    }
    // a reads b's chain, newest first, filtered, as b reads its own.
    let from_a = a.query_host("web-2", &all()).unwrap();
    assert_eq!(from_a, b.query(&all()).unwrap());
    assert_eq!(names(&from_a).last().unwrap(), "ONLY_ON_B");
    let secret = AuditQuery {
        secret: Some("ONLY_ON_B".into()),
        ..all()
    };
    assert_eq!(a.query_host("web-2", &secret).unwrap().len(), 1);
    let after = AuditQuery {
        after: Some(1),
        limit: 2,
        ..Default::default()
    };
    let page: Vec<u64> = a
        .query_host("web-2", &after)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(page, [2, 3]);
    assert!(a.query_host("nobody", &all()).unwrap().is_empty());
}

#[test]
fn tampering_with_the_cluster_copy_is_named() {
    let c = Cluster::new();
    let (a, _ka) = c.host("web-1");
    let (b, _kb) = c.host("web-2");
    for _ in 0..3 {
        fill(&a, 10);
        fill(&b, 10);
    }
    let shared = c.bucket();
    let chunks = |host: &str| shared.scan(format!("chunk/{host}/").as_bytes()).unwrap();
    assert!(chunks("web-2").len() >= 3, "one chunk per batch");

    // An entry of b's edited in the copy.
    let (key, entry) = chunks("web-2")[1].clone();
    let edited = String::from_utf8(entry.value)
        .unwrap()
        .replacen("NAME_", "NAMX_", 1);
    shared.put(&key, edited.as_bytes()).unwrap();
    // a's newest chunk dropped (truncation).
    let (key, entry) = chunks("web-1").last().unwrap().clone();
    let _ = shared.delete(&key, entry.revision).unwrap();

    let reports = b.verify_cluster().unwrap();
    let web1 = reports[0].report.problem.as_ref().unwrap();
    assert!(web1.what.contains("truncated"), "{web1}");
    let web2 = reports[1].report.problem.as_ref().unwrap();
    assert!(web2.what.contains("does not authenticate"), "{web2}");
    assert_eq!(web2.segment.as_ref().unwrap().to_string_lossy(), {
        let k = String::from_utf8(chunks("web-2")[1].0.clone()).unwrap();
        k["chunk/".len()..].to_owned()
    });
    // Each host's own files are untouched.
    assert!(a.verify().unwrap().ok() && b.verify().unwrap().ok());
}

#[test]
fn a_copy_that_cannot_be_written_fails_the_log_closed_and_recovers() {
    let c = Cluster::new();
    let broken = Arc::new(AtomicBool::new(false));
    let bucket = Arc::new(Breakable::new(c.bucket(), broken.clone()));
    let (a, _ka) = c.host_with("web-1", usize::MAX, bucket);
    fill(&a, 3);
    broken.store(true, Ordering::SeqCst);
    a.secret_read(&read("ACCEPTED", ReadOutcome::Ok)).unwrap();
    assert!(a.admin(&admin("token:ci", "secret.set")).is_err());
    assert!(a.secret_read(&read("REFUSED", ReadOutcome::Ok)).is_err());
    broken.store(false, Ordering::SeqCst);
    let healed = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        a.failing().is_none()
    });
    assert!(healed);
    a.secret_read(&read("AFTER", ReadOutcome::Ok)).unwrap();
    a.sync(Duration::from_secs(10)).unwrap();
    let copy = a.query_host("web-1", &all()).unwrap();
    assert_eq!(copy, a.query(&all()).unwrap());
    assert_eq!(&names(&copy)[..2], ["AFTER", "ACCEPTED"]);
    assert!(a.verify_cluster().unwrap()[0].report.ok());
}

#[test]
fn retention_trims_the_copy_too() {
    let c = Cluster::new();
    let (a, _ka) = c.host_with("web-1", 64, c.bucket());
    for _ in 0..10 {
        fill(&a, 40);
    }
    let local_first = keyhole_seglog::segments(&a.dir).unwrap()[0].0;
    assert!(local_first > 1);
    let first_chunk = c.bucket().scan(b"chunk/web-1/").unwrap()[0].0.clone();
    let first = u64::from_str_radix(
        std::str::from_utf8(&first_chunk[b"chunk/web-1/".len()..]).unwrap(),
        16,
    )
    .unwrap();
    assert!(first > 1, "old chunks deleted");
    let report = &a.verify_cluster().unwrap()[0].report;
    assert!(report.ok(), "{report:?}");
}
