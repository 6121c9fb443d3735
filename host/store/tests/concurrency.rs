//! Many threads writing and reading at once (optionally while keys rotate):
//! no errors, no lost acknowledged writes, no lost version bumps.
//!
//! Runs for `KEYHOLE_STRESS_SECS` seconds (default 10) per test.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use keyhole_store::{Provenance, Scope, SecretStore};

const THREADS: usize = 8;
const NAMES_PER_THREAD: usize = 16;

fn stress_duration() -> Duration {
    let secs = std::env::var("KEYHOLE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

fn scope_for(t: usize) -> Scope {
    if t.is_multiple_of(2) {
        env("prod")
    } else {
        space("team-a")
    }
}

/// Latest acknowledged value per (scope, name), per thread.
type Acked = HashMap<(Scope, String), String>;

fn worker(store: SecretStore, t: usize, stop: Arc<AtomicBool>, shared: Arc<AtomicU64>) -> Acked {
    let scope = scope_for(t);
    let mut acked = Acked::new();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let k = (i as usize) % NAMES_PER_THREAD;
        let name = format!("T{t}_N{k}");
        let value = format!("thread {t} write {i}");
        store.set_secret(&scope, &name, &val(&value)).unwrap();
        acked.insert((scope.clone(), name.clone()), value.clone());
        // Read-your-write, through both paths.
        assert_eq!(store.get_secret(&scope, &name).unwrap().expose(), value);
        let r = store.resolve("prod", Some("team-a"), &name).unwrap();
        let expected_prov = match scope {
            Scope::Space(_) => Provenance::SpaceOverride,
            Scope::Environment(_) => Provenance::Environment,
        };
        assert_eq!(r.provenance, expected_prov);
        // Another thread's name: must read cleanly if present.
        let other = format!("T{}_N{k}", (t + 1) % THREADS);
        match store.resolve("prod", Some("team-a"), &other) {
            Ok(r) => assert!(r.value.expose().starts_with("thread ")),
            Err(keyhole_store::StoreError::NotFound { .. }) => {}
            Err(e) => panic!("read of {other} failed: {e}"),
        }
        // A contended name every thread bumps.
        if i.is_multiple_of(4) {
            store
                .set_secret(&env("prod"), "SHARED", &val(&value))
                .unwrap();
            shared.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    acked
}

fn run(rotate: bool) {
    let fx = Fixture::new().with_layout();
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, stop, shared, start) = (
                fx.store.clone(),
                stop.clone(),
                shared.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                worker(store, t, stop, shared)
            })
        })
        .collect();
    let rotator = rotate.then(|| {
        let (store, stop) = (fx.store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rotations: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                store.rotate_dek(&env("prod")).unwrap();
                store.rotate_dek(&space("team-a")).unwrap();
                if rotations.is_multiple_of(3) {
                    store.rotate_kek().unwrap();
                }
                rotations += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            rotations
        })
    });
    start.wait();
    let began = Instant::now();
    std::thread::sleep(stress_duration());
    stop.store(true, Ordering::Relaxed);
    let mut acked = Acked::new();
    for w in workers {
        acked.extend(w.join().expect("worker panicked"));
    }
    if let Some(r) = rotator {
        let rotations = r.join().expect("rotator panicked");
        assert!(rotations > 0);
    }
    assert!(
        acked.len() > THREADS,
        "made progress in {:?}",
        began.elapsed()
    );

    let check = |store: &SecretStore| {
        for ((scope, name), value) in &acked {
            assert_eq!(
                store.get_secret(scope, name).unwrap().expose(),
                value,
                "{scope}/{name}"
            );
        }
        let shared_writes = shared.load(Ordering::Relaxed);
        let meta = store
            .list_secrets(&env("prod"))
            .unwrap()
            .into_iter()
            .find(|m| m.name == "SHARED")
            .unwrap();
        assert_eq!(meta.version, shared_writes, "no lost version bumps");
    };
    check(&fx.store);
    let fx = fx.reopen_with_file();
    check(&fx.store);
}

#[test]
fn eight_threads_write_and_read_without_losing_writes() {
    run(false);
}

#[test]
fn writes_and_reads_survive_concurrent_rotation() {
    run(true);
}
