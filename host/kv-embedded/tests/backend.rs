//! The embedded backend against the seam's conformance suite, plus what is
//! its own: the directory lock, revisions across a reopen, and legacy trees.

use keyhole_kv::{Backend, KvError, migrate_legacy};
use keyhole_kv_embedded::EmbeddedKv;

#[test]
fn conforms_to_the_seam() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(dir.path()).unwrap();
    keyhole_kv::conformance::run_all(&kv);
}

#[test]
fn one_process_at_a_time_and_data_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(dir.path()).unwrap();
    let b = kv.bucket("store").unwrap();
    let r1 = b.put(b"k", b"v").unwrap();
    b.flush().unwrap();
    assert!(matches!(
        EmbeddedKv::open(dir.path()),
        Err(KvError::Locked { .. })
    ));
    drop(b);
    drop(kv);
    let kv = EmbeddedKv::open(dir.path()).unwrap();
    let b = kv.bucket("store").unwrap();
    let e = b.get(b"k").unwrap().unwrap();
    assert_eq!((e.value.as_slice(), e.revision), (&b"v"[..], r1));
    let r2 = b.put(b"k2", b"v2").unwrap();
    assert!(r2 > r1, "revisions keep growing after a reopen");
}

#[test]
fn legacy_trees_migrate_once_and_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(dir.path()).unwrap();
    assert!(kv.legacy("old-tree").unwrap().is_none());
    kv.write_legacy("old-tree", &[(b"a", b"1"), (b"b", b"2"), (b"odd", b"3")])
        .unwrap();
    let rows = kv.legacy("old-tree").unwrap().unwrap();
    assert_eq!(rows.len(), 3);
    let bucket = kv.bucket("new").unwrap();
    // A key that cannot be placed stops the migration; nothing is lost.
    let refused = migrate_legacy(&kv, "old-tree", &*bucket, |k| {
        if k == b"odd" {
            Err("unexpected key".into())
        } else {
            Ok([b"x/", k].concat())
        }
    });
    assert!(
        matches!(refused, Err(KvError::Corrupt { .. })),
        "{refused:?}"
    );
    assert!(bucket.get(b"x/a").unwrap().is_none(), "nothing written");
    assert_eq!(kv.legacy("old-tree").unwrap().unwrap().len(), 3);
    let moved = migrate_legacy(&kv, "old-tree", &*bucket, |k| Ok([b"x/", k].concat())).unwrap();
    assert_eq!(moved, 3);
    assert_eq!(bucket.get(b"x/a").unwrap().unwrap().value, b"1");
    assert_eq!(bucket.get(b"x/odd").unwrap().unwrap().value, b"3");
    assert!(kv.legacy("old-tree").unwrap().is_none(), "dropped");
    assert_eq!(
        migrate_legacy(&kv, "old-tree", &*bucket, |k| Ok(k.to_vec())).unwrap(),
        0,
        "nothing left to migrate"
    );
    // A bucket's own tree is never offered as legacy data.
    assert!(kv.legacy("kv/new").unwrap().is_none());
}
