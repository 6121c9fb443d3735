//! The embedded backend against the seam's conformance suite, plus what is
//! its own: the directory lock, revisions across a reopen, legacy trees, and
//! offline compaction.

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
    // What was written before the reopen counts as seen and written (a
    // store waiting for r1 has it; a caller handing in r1 is not ahead),
    // and a watch from there has nothing to say.
    let opened_at = b.revision();
    assert!(opened_at >= r1, "{opened_at} < {r1}");
    assert_eq!(b.written().unwrap(), opened_at);
    assert!(b.watch(opened_at).unwrap().try_next().unwrap().is_none());
    let r2 = b.put(b"k2", b"v2").unwrap();
    assert!(r2 > opened_at, "revisions keep growing after a reopen");
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

fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    !keyhole_kv::conformance::files_containing(dir, needle).is_empty()
}

#[test]
fn compaction_erases_freed_bytes_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, last) = {
        let kv = EmbeddedKv::open(dir.path()).unwrap();
        let b = kv.bucket("store").unwrap();
        let r = b.put(b"replaced", b"PLANTED-replaced-value").unwrap();
        assert!(
            b.update(b"replaced", b"the-current-value", r)
                .unwrap()
                .written()
                .is_some()
        );
        let r = b.put(b"deleted", b"PLANTED-deleted-value").unwrap();
        assert!(b.delete(b"deleted", r).unwrap().written().is_some());
        let kept: Vec<(Vec<u8>, u64)> = (0..300u32)
            .map(|i| {
                let k = format!("k{i}").into_bytes();
                let r = b.put(&k, &i.to_le_bytes()).unwrap();
                (k, r)
            })
            .collect();
        let other = kv.bucket("other").unwrap();
        let last = other.put(b"x", b"in another bucket").unwrap();
        b.flush().unwrap();
        (kept, last)
    };
    // sled keeps freed bytes: what the compaction is for.
    assert!(on_disk(dir.path(), b"PLANTED-deleted-value"));

    // Not while the directory is open.
    let open = EmbeddedKv::open(dir.path()).unwrap();
    assert!(matches!(
        EmbeddedKv::compact(dir.path()),
        Err(KvError::Locked { .. })
    ));
    drop(open);
    let done = EmbeddedKv::compact(dir.path()).unwrap();
    assert!(done.bytes_before > 0 && done.bytes_after > 0, "{done:?}");
    for planted in ["PLANTED-replaced-value", "PLANTED-deleted-value"] {
        assert!(!on_disk(dir.path(), planted.as_bytes()), "{planted} kept");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("db.") || n.starts_with("compact")),
        "{names:?}"
    );

    let kv = EmbeddedKv::open(dir.path()).unwrap();
    let b = kv.bucket("store").unwrap();
    for (k, r) in &kept {
        assert_eq!(b.get(k).unwrap().unwrap().revision, *r, "revision kept");
    }
    assert_eq!(
        b.get(b"replaced").unwrap().unwrap().value,
        b"the-current-value"
    );
    assert!(b.get(b"deleted").unwrap().is_none());
    let e = kv.bucket("other").unwrap().get(b"x").unwrap().unwrap();
    assert_eq!(e.revision, last);
    assert!(
        b.put(b"new", b"v").unwrap() > last,
        "revisions keep growing"
    );
}

/// Copies the directory `from` to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn an_interrupted_compaction_is_finished_or_discarded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    {
        let kv = EmbeddedKv::open(data).unwrap();
        let b = kv.bucket("store").unwrap();
        b.put(b"k", b"v").unwrap();
        b.flush().unwrap();
    }
    let value_after_open = || {
        let kv = EmbeddedKv::open(data).unwrap();
        let e = kv.bucket("store").unwrap().get(b"k").unwrap().unwrap();
        e.value
    };
    // Killed while copying: no marker, so the copy is thrown away.
    std::fs::create_dir(data.join("db.compacting")).unwrap();
    std::fs::write(data.join("db.compacting/half"), b"half a copy").unwrap();
    assert_eq!(value_after_open(), b"v");
    assert!(!data.join("db.compacting").exists());

    // Killed between the two renames: the marker says the copy is
    // complete, `db` is already `db.old`; open finishes the swap.
    copy_dir(&data.join("db"), &data.join("db.compacting"));
    std::fs::rename(data.join("db"), data.join("db.old")).unwrap();
    std::fs::write(data.join("compact.done"), b"").unwrap();
    assert_eq!(value_after_open(), b"v");
    for leftover in ["db.old", "db.compacting", "compact.done"] {
        assert!(!data.join(leftover).exists(), "{leftover} left");
    }
}
