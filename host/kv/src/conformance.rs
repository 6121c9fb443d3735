//! The behaviour every backend must show, as functions a backend's own tests
//! call with a fresh, empty backend (see `keyhole-kv-embedded`'s tests).
//!
//! Each function panics with a message naming the broken rule.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::{Backend, Bucket, Cas, Change};

/// Every check below, in order.
pub fn run_all(backend: &dyn Backend) {
    crud_and_revisions(backend);
    compare_and_set(backend);
    scans(backend);
    watches(backend);
    buckets_are_apart(backend);
    erasing_history(backend);
}

fn bucket(backend: &dyn Backend, name: &str) -> Arc<dyn Bucket> {
    backend.bucket(name).expect("open bucket")
}

/// Puts and gets, revisions that grow, deletes.
pub fn crud_and_revisions(backend: &dyn Backend) {
    let b = bucket(backend, "conformance-crud");
    assert_eq!(b.name(), "conformance-crud");
    assert!(b.get(b"a").unwrap().is_none(), "a new bucket is empty");
    let r1 = b.put(b"a", b"one").unwrap();
    let e = b.get(b"a").unwrap().expect("written");
    assert_eq!((e.value.as_slice(), e.revision), (&b"one"[..], r1));
    let r2 = b.put(b"b", b"two").unwrap();
    assert!(r2 > r1, "revisions grow across keys");
    let r3 = b.put(b"a", b"three").unwrap();
    assert!(r3 > r2, "revisions grow on rewrite");
    assert!(
        b.revision() >= r3,
        "the bucket's revision covers own writes"
    );
    assert_eq!(b.get(b"a").unwrap().unwrap().value, b"three");
    let d = b.delete(b"a", r3).unwrap();
    assert!(matches!(d, Cas::Written(r) if r > r3), "{d:?}");
    assert!(b.get(b"a").unwrap().is_none(), "deleted");
    assert!(b.get(b"").unwrap().is_none());
    b.put(b"", b"empty key").unwrap();
    let last = b.put(b"binary\0key\xff", b"").unwrap();
    assert_eq!(
        b.written().unwrap(),
        last,
        "the newest revision written is the last write's"
    );
    assert_eq!(b.get(b"binary\0key\xff").unwrap().unwrap().value, b"");
    b.flush().unwrap();
}

/// create / update / delete answer `Conflict` and write nothing unless the
/// key is in the expected state; of racing updates exactly one wins.
pub fn compare_and_set(backend: &dyn Backend) {
    let b = bucket(backend, "conformance-cas");
    let r1 = b.create(b"k", b"v1").unwrap().written().expect("created");
    assert_eq!(b.create(b"k", b"again").unwrap(), Cas::Conflict);
    assert_eq!(b.get(b"k").unwrap().unwrap().value, b"v1");
    let r2 = b
        .update(b"k", b"v2", r1)
        .unwrap()
        .written()
        .expect("updated");
    assert_eq!(b.update(b"k", b"stale", r1).unwrap(), Cas::Conflict);
    assert_eq!(b.update(b"absent", b"x", r2).unwrap(), Cas::Conflict);
    assert_eq!(b.delete(b"k", r1).unwrap(), Cas::Conflict);
    assert_eq!(b.delete(b"absent", r2).unwrap(), Cas::Conflict);
    assert_eq!(b.get(b"k").unwrap().unwrap().value, b"v2");
    assert!(b.delete(b"k", r2).unwrap().written().is_some());
    assert!(
        b.create(b"k", b"v3").unwrap().written().is_some(),
        "a deleted key can be created again"
    );

    let start = b.get(b"k").unwrap().unwrap().revision;
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let winners: usize = (0..threads)
        .map(|i| {
            let (b, barrier) = (b.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let value = format!("racer {i}");
                b.update(b"k", value.as_bytes(), start)
                    .unwrap()
                    .written()
                    .is_some()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap()))
        .sum();
    assert_eq!(winners, 1, "exactly one racing update wins");
}

/// Prefix scans return exactly the prefixed keys, in key order.
pub fn scans(backend: &dyn Backend) {
    let b = bucket(backend, "conformance-scan");
    for k in ["s/e:a/X", "s/e:a/Y", "s/e:ab/Z", "s/e:a", "t/1"] {
        b.put(k.as_bytes(), k.as_bytes()).unwrap();
    }
    let keys = |p: &str| -> Vec<String> {
        b.scan(p.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, e)| {
                assert_eq!(k, e.value, "scan pairs keys with their values");
                String::from_utf8(k).unwrap()
            })
            .collect()
    };
    assert_eq!(keys("s/e:a/"), ["s/e:a/X", "s/e:a/Y"]);
    assert_eq!(keys("s/"), ["s/e:a", "s/e:a/X", "s/e:a/Y", "s/e:ab/Z"]);
    assert_eq!(keys("").len(), 5);
    assert!(keys("u").is_empty());
}

/// A watch from a revision delivers every later change once, in revision
/// order, including other handles' writes; `next_timeout` waits.
pub fn watches(backend: &dyn Backend) {
    let b = bucket(backend, "conformance-watch");
    let before = b.put(b"old", b"before the watch").unwrap();
    let mut w = b.watch(before).unwrap();
    assert!(w.try_next().unwrap().is_none(), "nothing after `from` yet");
    let other = bucket(backend, "conformance-watch");
    let r1 = other.put(b"a", b"1").unwrap();
    let r2 = b.create(b"b", b"2").unwrap().written().unwrap();
    let r3 = other.delete(b"a", r1).unwrap().written().unwrap();
    let mut seen = Vec::new();
    while let Some(c) = w.try_next().unwrap() {
        seen.push(c);
    }
    assert_eq!(
        seen,
        vec![
            Change::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                revision: r1
            },
            Change::Put {
                key: b"b".to_vec(),
                value: b"2".to_vec(),
                revision: r2
            },
            Change::Delete {
                key: b"a".to_vec(),
                revision: r3
            },
        ]
    );
    assert!(
        b.update(b"b", b"stale", r1).unwrap() == Cas::Conflict && w.try_next().unwrap().is_none(),
        "a refused write is not a change"
    );

    let started = Instant::now();
    assert!(w.next_timeout(Duration::from_millis(50)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(40), "it waited");
    let writer = {
        let b = b.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.put(b"late", b"x").unwrap()
        })
    };
    let c = w
        .next_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("woken by the write");
    assert_eq!(c.revision(), writer.join().unwrap());

    let mut from_start = b.watch(r2).unwrap();
    let first = from_start.try_next().unwrap().expect("history after r2");
    assert_eq!(first.revision(), r3, "a watch starts after its revision");
}

/// Buckets do not share keys.
pub fn buckets_are_apart(backend: &dyn Backend) {
    let a = bucket(backend, "conformance-a");
    let b = bucket(backend, "conformance-b");
    a.put(b"k", b"in a").unwrap();
    assert!(b.get(b"k").unwrap().is_none());
    assert!(b.scan(b"").unwrap().is_empty());
    assert!(backend.bucket("not/valid").is_err());
}

/// Erasing a key's history keeps its newest write as it is (value,
/// revision, compare-and-set against it), after a delete too, and of an
/// absent key does nothing.
pub fn erasing_history(backend: &dyn Backend) {
    let b = bucket(backend, "conformance-erase");
    b.put(b"k", b"one").unwrap();
    b.put(b"k", b"two").unwrap();
    let r3 = b.put(b"k", b"three").unwrap();
    let other = b.put(b"other", b"stays").unwrap();
    b.erase_history(b"k").unwrap();
    let e = b.get(b"k").unwrap().expect("the newest write stays");
    assert_eq!((e.value.as_slice(), e.revision), (&b"three"[..], r3));
    assert_eq!(b.get(b"other").unwrap().unwrap().revision, other);
    let r4 = b.update(b"k", b"four", r3).unwrap().written().expect("cas");
    assert!(b.delete(b"k", r4).unwrap().written().is_some());
    b.erase_history(b"k").unwrap();
    assert!(b.get(b"k").unwrap().is_none(), "a delete stays a delete");
    assert!(b.create(b"k", b"again").unwrap().written().is_some());
    b.erase_history(b"never-written").unwrap();
    assert_eq!(b.scan(b"").unwrap().len(), 2);
}

/// The files under `dir` (recursively) whose bytes contain `needle`: how a
/// backend's tests check that something erased left its storage. Files
/// that vanish while being read are skipped.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}
