//! A secret's history (`history.rs`): kept versions, rollback, soft delete
//! and undelete, destroy, check-and-set writes, and key rotation with all
//! of them.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use keyhole_kv::KvError;
use keyhole_kv_embedded::EmbeddedKv;
use keyhole_store::{
    DEFAULT_HISTORY, KeySource, SecretStore, StoreError, VersionInfo, VersionState,
};

fn states(h: &[VersionInfo]) -> Vec<(u64, VersionState)> {
    h.iter().map(|v| (v.version, v.state)).collect()
}

fn get(store: &SecretStore, name: &str) -> String {
    store
        .get_secret(&env("prod"), name)
        .unwrap()
        .expose()
        .to_owned()
}

fn set(store: &SecretStore, name: &str, value: &str) -> u64 {
    store
        .set_secret(&env("prod"), name, &val(value))
        .unwrap()
        .version
}

fn fixture() -> Fixture {
    let fx = Fixture::new();
    fx.store.create_environment("prod").unwrap();
    fx
}

#[test]
fn history_keeps_exactly_the_last_n_versions() {
    let fx = fixture();
    let n = DEFAULT_HISTORY;
    for i in 1..=n + 2 {
        assert_eq!(set(&fx.store, "K", &format!("value {i}")), i);
    }
    let h = fx.store.secret_history(&env("prod"), "K").unwrap();
    assert_eq!(h.len() as u64, n);
    assert_eq!(h[0].version, 3);
    assert_eq!(h.last().unwrap().state, VersionState::Current);
    assert!(
        h[..h.len() - 1]
            .iter()
            .all(|v| v.state == VersionState::Kept)
    );

    // Fewer kept from the next write on.
    fx.store.set_history_keep(2).unwrap();
    set(&fx.store, "K", "value 13");
    let h = fx.store.secret_history(&env("prod"), "K").unwrap();
    assert_eq!(
        states(&h),
        [(12, VersionState::Kept), (13, VersionState::Current)]
    );
    assert!(fx.store.set_history_keep(0).is_err());
}

#[test]
fn versions_continue_across_delete_and_recreate_and_undelete_restores() {
    let fx = fixture();
    let s = &fx.store;
    set(s, "K", "one");
    set(s, "K", "two");
    assert!(s.delete_secret(&env("prod"), "K").unwrap());
    assert!(!s.delete_secret(&env("prod"), "K").unwrap(), "deleted once");
    assert!(matches!(
        s.get_secret(&env("prod"), "K"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.list_secrets(&env("prod")).unwrap().is_empty());
    assert!(s.resolve("prod", None, "K").is_err());
    let h = s.secret_history(&env("prod"), "K").unwrap();
    assert_eq!(
        states(&h),
        [(1, VersionState::Kept), (2, VersionState::Deleted)]
    );

    // Undelete brings version 2 back as it was.
    let meta = s.undelete_secret(&env("prod"), "K").unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(get(s, "K"), "two");
    assert!(matches!(
        s.undelete_secret(&env("prod"), "K"),
        Err(StoreError::WrongState { .. })
    ));

    // Deleted and written again: the version goes on from 2.
    assert!(s.delete_secret(&env("prod"), "K").unwrap());
    assert_eq!(set(s, "K", "three"), 3);
    assert_eq!(get(s, "K"), "three");
    let h = s.secret_history(&env("prod"), "K").unwrap();
    assert_eq!(
        states(&h),
        [
            (1, VersionState::Kept),
            (2, VersionState::Kept),
            (3, VersionState::Current)
        ]
    );
    // An environment whose secrets are all deleted is empty.
    assert!(s.delete_secret(&env("prod"), "K").unwrap());
    assert_eq!(s.scope_contents(&env("prod")).unwrap().secrets, 0);
}

#[test]
fn rollback_writes_a_new_version_with_the_old_value() {
    let fx = fixture();
    let s = &fx.store;
    set(s, "K", "first");
    set(s, "K", "second");
    let meta = s.rollback_secret(&env("prod"), "K", 1, None).unwrap();
    assert_eq!(meta.version, 3);
    assert_eq!(get(s, "K"), "first");
    // The current version rolls back to itself as a new version.
    assert_eq!(
        s.rollback_secret(&env("prod"), "K", 3, None)
            .unwrap()
            .version,
        4
    );
    assert!(matches!(
        s.rollback_secret(&env("prod"), "K", 99, None),
        Err(StoreError::VersionGone {
            version: 99,
            destroyed: false,
            ..
        })
    ));
    // With an expectation that does not hold, nothing is written.
    assert!(matches!(
        s.rollback_secret(&env("prod"), "K", 2, Some(3)),
        Err(StoreError::VersionMismatch {
            expected: 3,
            found: 4,
            ..
        })
    ));
    assert_eq!(get(s, "K"), "first");
}

#[test]
fn destroyed_versions_leave_no_bytes_in_the_data_directory_once_compacted() {
    let fx = fixture();
    set(&fx.store, "K", "destroy-me-v1");
    set(&fx.store, "K", "current-v2");
    let bucket = store_bucket(&fx.store);
    let values = |prefix: &[u8]| -> Vec<Vec<u8>> {
        bucket
            .scan(prefix)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.value)
            .collect()
    };
    let kept_v1 = values(b"version/env=prod/K/").remove(0);
    let old_deks = values(b"dek/env=prod/");
    assert_eq!(
        fx.store
            .destroy_versions(&env("prod"), "K", Some(&[1]))
            .unwrap(),
        [1]
    );
    fx.store.flush().unwrap();
    drop(bucket);
    // What must be gone: the destroyed version's ciphertext, and the
    // wrapped data key it was sealed under (retired by the destroy).
    let mut gone = vec![kept_v1[kept_v1.len() - 32..].to_vec()];
    gone.extend(old_deks.iter().map(|d| d[d.len() - 32..].to_vec()));
    let Fixture {
        data,
        key_path,
        store,
        ..
    } = fx;
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        match EmbeddedKv::compact(data.path()) {
            Err(KvError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => break other.unwrap(),
        }
    };
    assert!(done.bytes_after > 0, "{done:?}");
    for (path, bytes) in files_under(data.path()) {
        for needle in &gone {
            assert!(!contains(&bytes, needle), "{path:?} keeps destroyed bytes");
        }
    }
    let store = open_retrying(data.path(), KeySource::File(key_path));
    assert_eq!(get(&store, "K"), "current-v2");
    assert_eq!(
        states(&store.secret_history(&env("prod"), "K").unwrap()),
        [(1, VersionState::Destroyed), (2, VersionState::Current)]
    );
}

/// In cluster mode the bucket keeps earlier revisions of every key as
/// history: a destroy erases them from nats-server's files too, with the
/// retired data key's.
#[test]
fn destroyed_versions_leave_no_bytes_in_the_nats_servers_files() {
    use keyhole_kv_nats::test_server::{TestServer, available};
    use keyhole_kv_nats::{NatsConfig, NatsKv};
    if !available() {
        return;
    }
    let server = TestServer::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let backend = NatsKv::connect(NatsConfig {
        url: server.url(),
        namespace: "kh".into(),
        replicas: 1,
    })
    .unwrap();
    let store = SecretStore::open_on(Arc::new(backend), KeySource::File(key)).unwrap();
    store.create_environment("prod").unwrap();
    set(&store, "K", "destroy-me-v1");
    set(&store, "K", "current-v2");
    let bucket = store_bucket(&store);
    let tail = |v: Vec<u8>| v[v.len() - 32..].to_vec();
    let gone: Vec<Vec<u8>> = bucket
        .scan(b"version/env=prod/K/")
        .unwrap()
        .into_iter()
        .chain(bucket.scan(b"dek/env=prod/").unwrap())
        .map(|(_, e)| tail(e.value))
        .collect();
    let on_disk = |needle: &[u8]| {
        files_under(&server.store_dir())
            .iter()
            .any(|(_, bytes)| contains(bytes, needle))
    };
    // nats-server writes its files a moment after it acknowledges.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone.iter().all(|g| on_disk(g)) {
        assert!(Instant::now() < deadline, "the records never reached disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    store
        .destroy_versions(&env("prod"), "K", Some(&[1]))
        .unwrap();
    for needle in &gone {
        assert!(
            !on_disk(needle),
            "destroyed bytes left in the server's files"
        );
    }
    assert_eq!(get(&store, "K"), "current-v2");
}

#[test]
fn destroy_erases_versions_for_good() {
    let fx = fixture();
    let s = &fx.store;
    set(s, "K", "PLANTED-destroy-me-v1");
    set(s, "K", "kept-v2");
    set(s, "K", "current-v3");
    let bucket = store_bucket(s);
    let kept_v1 = bucket
        .scan(b"version/env=prod/K/")
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .1
        .value;
    let dek_before: Vec<Vec<u8>> = bucket
        .scan(b"dek/env=prod/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();

    // The live current version is not destroyed alone.
    assert!(matches!(
        s.destroy_versions(&env("prod"), "K", Some(&[3])),
        Err(StoreError::WrongState { .. })
    ));
    assert_eq!(
        s.destroy_versions(&env("prod"), "K", Some(&[1])).unwrap(),
        [1]
    );
    let h = s.secret_history(&env("prod"), "K").unwrap();
    assert_eq!(
        states(&h),
        [
            (1, VersionState::Destroyed),
            (2, VersionState::Kept),
            (3, VersionState::Current)
        ]
    );
    assert!(matches!(
        s.rollback_secret(&env("prod"), "K", 1, None),
        Err(StoreError::VersionGone {
            destroyed: true,
            ..
        })
    ));
    // Nothing in the store holds its ciphertext, and the data key it was
    // sealed under is gone (the scope's DEK was rotated).
    let sealed_tail = &kept_v1[kept_v1.len() - 32..];
    for (key, e) in bucket.scan(b"").unwrap() {
        assert!(
            !contains(&e.value, sealed_tail),
            "{} holds the destroyed version",
            String::from_utf8_lossy(&key)
        );
    }
    for k in &dek_before {
        assert!(bucket.get(k).unwrap().is_none(), "old DEK kept");
    }
    assert_eq!(get(s, "K"), "current-v3");
    assert_eq!(
        s.rollback_secret(&env("prod"), "K", 2, None)
            .unwrap()
            .version,
        4
    );
    assert_eq!(get(s, "K"), "kept-v2");

    // Everything: deleted, every kept version destroyed.
    let destroyed = s.destroy_versions(&env("prod"), "K", None).unwrap();
    assert_eq!(destroyed, [2, 3, 4]);
    assert!(matches!(
        s.get_secret(&env("prod"), "K"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.undelete_secret(&env("prod"), "K").is_err());
    let h = s.secret_history(&env("prod"), "K").unwrap();
    assert!(
        h.iter().all(|v| v.state == VersionState::Destroyed),
        "{h:?}"
    );
    // The name goes on from where it was.
    assert_eq!(set(s, "K", "again"), 5);
}

#[test]
fn racing_check_and_set_writes_have_one_winner() {
    let fx = fixture();
    let s = &fx.store;
    set(s, "K", "start");
    for round in 0..20u64 {
        let expect = round + 1;
        let barrier = Arc::new(Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (store, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.write_secret(
                        &env("prod"),
                        "K",
                        &val(&format!("round {round} writer {w}")),
                        None,
                        Some(expect),
                    )
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(won[0].version, expect + 1);
        assert!(results.iter().any(|r| matches!(
            r,
            Err(StoreError::VersionMismatch { found, .. }) if *found == expect + 1
        )));
    }
    // Create-only: expecting version 0 of an existing name fails.
    assert!(matches!(
        s.write_secret(&env("prod"), "K", &val("x"), None, Some(0)),
        Err(StoreError::VersionMismatch { expected: 0, .. })
    ));
    assert_eq!(
        s.write_secret(&env("prod"), "NEW", &val("x"), None, Some(0))
            .unwrap()
            .version,
        1
    );
}

#[test]
fn key_rotation_reseals_every_kept_version() {
    let fx = fixture().reopen_with_file();
    let s = &fx.store;
    for i in 1..=5 {
        set(s, "K", &format!("value {i}"));
    }
    assert!(s.delete_secret(&env("prod"), "K").unwrap());
    let report = s.rotate_dek(&env("prod")).unwrap();
    assert_eq!(report.records_rewritten, 5, "every kept version");
    assert_eq!(report.retired_versions, [1]);
    s.rotate_kek().unwrap();
    let fx = fx.reopen_with_file();
    let s = &fx.store;
    s.undelete_secret(&env("prod"), "K").unwrap();
    assert_eq!(get(s, "K"), "value 5");
    for v in 1..=4 {
        s.rollback_secret(&env("prod"), "K", v, None).unwrap();
        assert_eq!(get(s, "K"), format!("value {v}"));
    }
}

#[test]
fn a_secret_may_keep_more_or_fewer_versions_than_the_store() {
    let fx = fixture();
    let s = &fx.store;
    s.set_history_keep(3).unwrap();
    for i in 1..=5 {
        set(s, "FEW", &format!("few {i}"));
        set(s, "MANY", &format!("many {i}"));
    }
    s.set_versions_kept(&env("prod"), "MANY", Some(5)).unwrap();
    assert_eq!(s.versions_kept(&env("prod"), "MANY").unwrap(), 5);
    for i in 6..=8 {
        set(s, "FEW", &format!("few {i}"));
        set(s, "MANY", &format!("many {i}"));
    }
    let count = |name| s.secret_history(&env("prod"), name).unwrap().len();
    assert_eq!((count("FEW"), count("MANY")), (3, 5));
    // Fewer at once, and back to the store's setting.
    s.set_versions_kept(&env("prod"), "MANY", Some(2)).unwrap();
    assert_eq!(count("MANY"), 2);
    s.set_versions_kept(&env("prod"), "MANY", None).unwrap();
    assert_eq!(s.versions_kept(&env("prod"), "MANY").unwrap(), 3);
    assert!(s.set_versions_kept(&env("prod"), "MANY", Some(0)).is_err());
    // A deleted scope takes the setting with it.
    s.set_versions_kept(&env("prod"), "FEW", Some(7)).unwrap();
    assert!(s.begin_delete(&env("prod"), true).unwrap());
    s.finish_delete(&env("prod")).unwrap();
    let bucket = store_bucket(s);
    assert!(bucket.scan(b"keep/").unwrap().is_empty());
    assert!(bucket.scan(b"version/").unwrap().is_empty());
}
