//! The two-host rotation race, made likely instead of lucky: two stores on
//! one backend (nothing shared but the backend and the key file), writers
//! that stall between picking their data key and writing (the window a
//! rotation must not strand a value in), and rotators on both stores. Each
//! writer thread arms [`crate::test_hooks`] for its own next write, so the
//! stall is real scheduling, not a replayed interleaving. With the writers'
//! fences removed it failed in 3 of 4 runs of 3 s (a value sealed under a
//! key the rotation had already deleted); `race_tests.rs` pins the same
//! race deterministically.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyhole_kv_embedded::EmbeddedKv;

use crate::test_hooks::{self, Point};
use crate::{KeySource, Scope, SecretStore, SecretValue};

const RUN_FOR: Duration = Duration::from_secs(5);
const STALL: Duration = Duration::from_millis(5);

fn scopes() -> [Scope; 2] {
    [
        Scope::Environment("prod".into()),
        Scope::Space("team-a".into()),
    ]
}

fn writer(
    store: SecretStore,
    id: usize,
    stop: Arc<AtomicBool>,
) -> HashMap<(Scope, String), String> {
    let mut acked = HashMap::new();
    // Bounded in count as well as time.
    for i in 0..100_000u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let scope = scopes()[(i % 2) as usize].clone();
        // Mostly new names: a first write creates its record, so no
        // revision check stops a write sealed under a retired key.
        let name = format!("W{id}_N{}", i / 2);
        let value = format!("writer {id} write {i}");
        test_hooks::arm(Point::BeforeSecretWrite, || std::thread::sleep(STALL));
        store
            .set_secret(&scope, &name, &SecretValue::new(value.clone()))
            .unwrap();
        acked.insert((scope, name), value);
        // Keep a handful of records, so a rotation is over within a stall.
        if i >= 8 {
            let old = (
                scopes()[(i % 2) as usize].clone(),
                format!("W{id}_N{}", (i - 8) / 2),
            );
            store.delete_secret(&old.0, &old.1).unwrap();
            acked.remove(&old);
        }
    }
    acked
}

fn rotator(store: SecretStore, stop: Arc<AtomicBool>) -> u32 {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) && rounds < 100_000 {
        for scope in scopes() {
            store.rotate_dek(&scope).unwrap();
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    rounds
}

#[test]
fn stalled_writers_on_two_stores_lose_nothing_to_dek_rotations() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let backend = EmbeddedKv::open(data.path()).unwrap().into_backend();
    let open = || SecretStore::open_on(backend.clone(), KeySource::File(key.clone())).unwrap();
    let (a, b) = (open(), open());
    a.create_environment("prod").unwrap();
    a.create_space("team-a", "prod").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .enumerate()
        .map(|(id, s)| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || writer(s, id, stop))
        })
        .collect();
    // One rotator: a second one would heal a stranded value from the old
    // key still in its cache, hiding the loss until that cache is gone.
    let rotators: Vec<_> = [&b]
        .into_iter()
        .map(|s| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || rotator(s, stop))
        })
        .collect();
    let began = Instant::now();
    std::thread::sleep(RUN_FOR);
    stop.store(true, Ordering::Relaxed);
    let mut acked = HashMap::new();
    for w in writers {
        acked.extend(w.join().expect("writer"));
    }
    let rounds: u32 = rotators
        .into_iter()
        .map(|r| r.join().expect("rotator"))
        .sum();
    assert!(
        rounds > 5 && acked.len() > 16,
        "ran: {rounds} rotations, {} names in {:?}",
        acked.len(),
        began.elapsed()
    );

    // A store opened now has nothing cached: every value must open from
    // what is stored, under a data key that still exists.
    let fresh = open();
    for ((scope, name), value) in &acked {
        match fresh.get_secret(scope, name) {
            Ok(got) => assert_eq!(got.expose(), value, "{scope}/{name}"),
            Err(e) => panic!("{scope}/{name} does not open: {e}"),
        }
    }
}
