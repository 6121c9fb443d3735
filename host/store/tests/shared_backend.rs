//! Two stores on one backend, as two hosts sharing a datastore would be:
//! each has its own caches and nothing in common but the backend (and the
//! key file). Writes through one are seen by the other once observed, and
//! key rotations on either never strand a value, with no lock shared
//! between them.
//!
//! The race runs for `KEYHOLE_STRESS_SECS` seconds (default 10).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use keyhole_kv::Backend;
use keyhole_kv_embedded::EmbeddedKv;
use keyhole_store::{KeySource, Provenance, Scope, SecretStore, StoreError};

struct Hosts {
    _data: tempfile::TempDir,
    _keys: tempfile::TempDir,
    key: PathBuf,
    backend: Arc<dyn Backend>,
    a: SecretStore,
    b: SecretStore,
}

fn hosts() -> Hosts {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let backend = EmbeddedKv::open(data.path()).unwrap().into_backend();
    let a = SecretStore::open_on(backend.clone(), KeySource::File(key.clone())).unwrap();
    let b = SecretStore::open_on(backend.clone(), KeySource::File(key.clone())).unwrap();
    a.create_environment("prod").unwrap();
    a.create_space("team-a", "prod").unwrap();
    Hosts {
        _data: data,
        _keys: keys,
        key,
        backend,
        a,
        b,
    }
}

fn read(store: &SecretStore, name: &str) -> String {
    store
        .get_secret(&env("prod"), name)
        .unwrap()
        .expose()
        .to_owned()
}

/// Reads `name` through `b` until it is cached there, then changes it
/// through `a`: once `b` has observed `a`'s revision, its next read returns
/// the new value (it would return the cached old one if `b` did not apply
/// the backend's changes).
#[test]
fn a_write_through_one_store_is_read_through_the_other() {
    let h = hosts();
    let (a, b) = (&h.a, &h.b);
    a.set_secret(&env("prod"), "K", &val("one")).unwrap();
    for _ in 0..3 {
        assert_eq!(read(b, "K"), "one");
        assert_eq!(b.resolve("prod", Some("team-a"), "K").unwrap().version, 1);
    }

    let meta = a.set_secret(&env("prod"), "K", &val("two")).unwrap();
    assert!(b.wait_for(a.revision(), Duration::from_secs(5)).unwrap());
    assert_eq!(read(b, "K"), "two");
    let r = b.resolve("prod", Some("team-a"), "K").unwrap();
    assert_eq!((r.value.expose(), r.version), ("two", meta.version));

    // An override written through b reaches a's cached resolve.
    assert_eq!(
        a.resolve("prod", Some("team-a"), "K").unwrap().provenance,
        Provenance::Environment
    );
    b.set_secret(&space("team-a"), "K", &val("override"))
        .unwrap();
    assert!(a.wait_for(b.revision(), Duration::from_secs(5)).unwrap());
    let r = a.resolve("prod", Some("team-a"), "K").unwrap();
    assert_eq!(
        (r.value.expose(), r.provenance),
        ("override", Provenance::SpaceOverride)
    );

    // A delete, and rotations of either key, through a.
    assert!(a.delete_secret(&space("team-a"), "K").unwrap());
    a.rotate_dek(&env("prod")).unwrap();
    a.rotate_kek().unwrap();
    assert!(b.wait_for(a.revision(), Duration::from_secs(5)).unwrap());
    let r = b.resolve("prod", Some("team-a"), "K").unwrap();
    assert_eq!(
        (r.value.expose(), r.provenance),
        ("two", Provenance::Environment)
    );
    // b writes under the new keys (re-reading the rotated key file).
    b.set_secret(&env("prod"), "NEW", &val("after rotation"))
        .unwrap();
    assert_eq!(read(a, "NEW"), "after rotation");
    assert!(a.delete_secret(&env("prod"), "NEW").unwrap());
    assert!(b.wait_for(a.revision(), Duration::from_secs(5)).unwrap());
    assert!(matches!(
        b.get_secret(&env("prod"), "NEW"),
        Err(StoreError::NotFound { .. })
    ));
}

fn stress_duration() -> Duration {
    let secs = std::env::var("KEYHOLE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

/// The latest acknowledged value per (scope, name).
type Acked = HashMap<(Scope, String), String>;

fn writer(store: SecretStore, id: usize, stop: Arc<AtomicBool>, shared: Arc<AtomicU64>) -> Acked {
    let mut acked = Acked::new();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let scope = if i.is_multiple_of(2) {
            env("prod")
        } else {
            space("team-a")
        };
        let name = format!("W{id}_N{}", i % 8);
        let value = format!("writer {id} write {i}");
        store.set_secret(&scope, &name, &val(&value)).unwrap();
        assert_eq!(
            store.get_secret(&scope, &name).unwrap().expose(),
            value,
            "read-your-write"
        );
        acked.insert((scope, name), value.clone());
        if i.is_multiple_of(3) {
            store
                .set_secret(&env("prod"), "SHARED", &val(&value))
                .unwrap();
            shared.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    acked
}

fn rotator(store: SecretStore, stop: Arc<AtomicBool>, kek_every: u32) -> u32 {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        store.rotate_dek(&env("prod")).unwrap();
        store.rotate_dek(&space("team-a")).unwrap();
        if rounds % kek_every == 0 {
            store.rotate_kek().unwrap();
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    rounds
}

/// Two writers per store and a rotator on each (DEK rotations of both
/// scopes, KEK rotations now and then), racing for the stress duration.
/// Afterwards every acknowledged value opens through either store and a
/// third one opened fresh, no record refers to a deleted DEK, no DEK is
/// wrapped under a master key the key file lacks, and no version bump of
/// the contended name was lost.
#[test]
fn two_stores_racing_writes_against_rotations_lose_nothing() {
    let h = hosts();
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(7));
    let mut writers = Vec::new();
    for id in 0..4 {
        let store = if id % 2 == 0 { &h.a } else { &h.b }.clone();
        let (stop, shared, start) = (stop.clone(), shared.clone(), start.clone());
        writers.push(std::thread::spawn(move || {
            start.wait();
            writer(store, id, stop, shared)
        }));
    }
    let rotators: Vec<_> = [(&h.a, 3), (&h.b, 4)]
        .into_iter()
        .map(|(store, kek_every)| {
            let (store, stop, start) = (store.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                rotator(store, stop, kek_every)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(stress_duration());
    stop.store(true, Ordering::Relaxed);
    let mut acked = Acked::new();
    for w in writers {
        acked.extend(w.join().expect("writer panicked"));
    }
    for r in rotators {
        assert!(r.join().expect("rotator panicked") > 0, "rotations ran");
    }
    assert!(acked.len() >= 8, "made progress in {:?}", began.elapsed());

    let fresh = SecretStore::open_on(h.backend.clone(), KeySource::File(h.key.clone())).unwrap();
    for store in [&h.a, &h.b, &fresh] {
        assert!(
            store
                .wait_for(h.a.revision().max(h.b.revision()), Duration::from_secs(5))
                .unwrap()
        );
        for ((scope, name), value) in &acked {
            assert_eq!(
                store.get_secret(scope, name).unwrap().expose(),
                value,
                "{scope}/{name}"
            );
        }
        let meta = store
            .list_secrets(&env("prod"))
            .unwrap()
            .into_iter()
            .find(|m| m.name == "SHARED")
            .unwrap();
        assert_eq!(
            meta.version,
            shared.load(Ordering::Relaxed),
            "no lost version bumps"
        );
    }

    // Behind the stores' backs: every reference resolves.
    let bucket = store_bucket(&h.a);
    let deks: Vec<Vec<u8>> = bucket
        .scan(b"dek/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let key_file = std::fs::read_to_string(&h.key).unwrap();
    let kept = bucket.scan(b"version/").unwrap();
    assert!(!kept.is_empty(), "replaced versions are kept");
    for (key, entry) in bucket.scan(b"secret/").unwrap().into_iter().chain(kept) {
        let (scope_segment, dek_version) = secret_record_dek(&key, &entry.value);
        let dek_key = format!("dek/{scope_segment}/{dek_version:016x}").into_bytes();
        assert!(
            deks.contains(&dek_key),
            "{} refers to deleted DEK v{dek_version}",
            String::from_utf8_lossy(&key)
        );
    }
    for (key, entry) in bucket.scan(b"dek/").unwrap() {
        let kek_version = dek_record_kek(&entry.value);
        assert!(
            key_file
                .lines()
                .any(|l| l.starts_with(&format!("v{kek_version} "))),
            "{} is wrapped under v{kek_version}, not in the key file",
            String::from_utf8_lossy(&key)
        );
    }
}

/// Release 0.1's record formats (unchanged since), as stored.
#[derive(serde::Deserialize)]
enum Versioned<T> {
    V1(T),
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SecretRecord {
    version: u64,
    created_at_ms: u64,
    updated_at_ms: u64,
    dek_version: u64,
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct DekRecord {
    kek_version: u64,
    nonce: [u8; 12],
    wrapped: Vec<u8>,
}

/// (`env=<id>` or `space=<id>`, DEK version) of a stored secret record
/// (current or kept).
fn secret_record_dek(key: &[u8], value: &[u8]) -> (String, u64) {
    let key = String::from_utf8(key.to_vec()).unwrap();
    let segment = key.split('/').nth(1).unwrap().to_owned();
    let Versioned::V1(rec) = postcard::from_bytes::<Versioned<SecretRecord>>(value).unwrap();
    (segment, rec.dek_version)
}

/// The KEK version of a stored DEK record.
fn dek_record_kek(value: &[u8]) -> u64 {
    let Versioned::V1(rec) = postcard::from_bytes::<Versioned<DekRecord>>(value).unwrap();
    rec.kek_version
}
