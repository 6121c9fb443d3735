//! Deleting environments and spaces: what goes with them, what a marked
//! scope refuses, what a crash in the middle leaves for the next open, a
//! fresh scope under a reused id, and other stores on the same backend
//! forgetting what they knew. (That the values cannot be recovered is
//! `unrecoverable.rs`.)

mod common;

use std::sync::Arc;

use common::*;
use keyhole_kv::Backend;
use keyhole_kv_embedded::EmbeddedKv;
use keyhole_store::{KeySource, PendingDeletion, SecretStore, StoreError};

/// The keys of the store's bucket that start with `prefix`.
fn keys(fx: &Fixture, prefix: &str) -> Vec<String> {
    store_bucket(&fx.store)
        .scan(prefix.as_bytes())
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}

/// prod: 2 secrets; team-a: 1; team-b: none; staging: 1; team-s: 1.
fn filled() -> Fixture {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "A", &val("a")).unwrap();
    s.set_secret(&env("prod"), "B", &val("b")).unwrap();
    s.set_secret(&space("team-a"), "A", &val("a2")).unwrap();
    s.set_secret(&env("staging"), "A", &val("s")).unwrap();
    s.set_secret(&space("team-s"), "A", &val("s2")).unwrap();
    fx
}

#[test]
fn a_forced_delete_takes_the_spaces_secrets_and_data_keys_and_nothing_else() {
    let fx = filled();
    let s = &fx.store;
    let contents = s.scope_contents(&env("prod")).unwrap();
    assert_eq!(contents.secrets, 3);
    assert_eq!(contents.spaces, ["team-a", "team-b"]);
    assert!(s.begin_delete(&env("prod"), true).unwrap());
    let report = s.finish_delete(&env("prod")).unwrap();
    assert_eq!(report.secrets, 3);
    assert_eq!(report.spaces, ["team-a", "team-b"]);
    assert_eq!(report.data_keys, 2, "prod's and team-a's DEK v1");

    assert!(s.environment("prod").unwrap().is_none());
    assert!(s.space("team-a").unwrap().is_none());
    let envs: Vec<String> = s
        .list_environments()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(envs, ["staging"]);
    let spaces: Vec<String> = s
        .list_spaces(None)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(spaces, ["team-s"]);
    assert!(matches!(
        s.check_scope("prod", None),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.resolve("prod", Some("team-a"), "A"),
        Err(StoreError::UnknownSpace(_))
    ));
    for prefix in [
        "env/prod",
        "space/team-a",
        "space/team-b",
        "secret/env=prod/",
        "secret/space=team-a/",
    ] {
        assert!(keys(&fx, prefix).is_empty(), "{prefix}");
    }
    for prefix in ["dek/env=prod/", "dek/space=team-a/"] {
        assert!(keys(&fx, prefix).is_empty(), "{prefix}");
    }
    assert_eq!(
        s.resolve("staging", Some("team-s"), "A")
            .unwrap()
            .value
            .expose(),
        "s2"
    );
    assert_eq!(s.get_secret(&env("staging"), "A").unwrap().expose(), "s");

    // Deleting a space alone leaves its environment.
    assert_eq!(s.scope_contents(&space("team-s")).unwrap().secrets, 1);
    s.begin_delete(&space("team-s"), true).unwrap();
    let report = s.finish_delete(&space("team-s")).unwrap();
    assert_eq!((report.secrets, report.data_keys), (1, 1));
    assert!(report.spaces.is_empty());
    assert_eq!(s.get_secret(&env("staging"), "A").unwrap().expose(), "s");
    assert!(matches!(
        s.begin_delete(&space("team-s"), true),
        Err(StoreError::UnknownSpace(_))
    ));
}

#[test]
fn a_marked_scope_is_gone_for_readers_and_writers_until_cancelled() {
    let fx = filled();
    let s = &fx.store;
    s.check_scope("prod", Some("team-a")).unwrap(); // known, cached
    assert!(!s.begin_delete(&env("prod"), false).unwrap());
    assert!(matches!(
        s.check_scope("prod", None),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.set_secret(&env("prod"), "C", &val("c")),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.create_space("team-c", "prod"),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.create_environment("prod"),
        Err(StoreError::BeingDeleted(_))
    ));
    assert!(
        s.list_environments()
            .unwrap()
            .iter()
            .all(|e| e.id != "prod")
    );
    assert_eq!(
        s.pending_deletions().unwrap(),
        [PendingDeletion {
            scope: env("prod"),
            forced: false
        }]
    );
    // Counting still works under the mark (the unforced check's recount).
    assert_eq!(s.scope_contents(&env("prod")).unwrap().secrets, 3);
    assert!(s.cancel_delete(&env("prod")).unwrap());
    s.check_scope("prod", Some("team-a")).unwrap();
    s.set_secret(&env("prod"), "C", &val("c")).unwrap();
    assert_eq!(s.get_secret(&env("prod"), "A").unwrap().expose(), "a");
    assert!(s.pending_deletions().unwrap().is_empty());

    // A forced mark is never cancelled; forcing an unforced one sticks.
    assert!(!s.begin_delete(&space("team-b"), false).unwrap());
    assert!(s.begin_delete(&space("team-b"), true).unwrap());
    assert!(
        s.begin_delete(&space("team-b"), false).unwrap(),
        "stays forced"
    );
    assert!(!s.cancel_delete(&space("team-b")).unwrap());
    assert!(s.space("team-b").unwrap().is_none());
}

#[test]
fn a_deletion_stopped_after_its_mark_or_mid_sweep_is_finished_after_reopening() {
    let fx = filled();
    fx.store.begin_delete(&env("prod"), true).unwrap();
    // Part of the sweep done, as if the process died in the middle of it.
    let bucket = store_bucket(&fx.store);
    for (k, e) in bucket.scan(b"secret/env=prod/A").unwrap() {
        let _ = bucket.delete(&k, e.revision).unwrap();
    }
    drop(bucket); // it holds the backend open
    let fx = fx.reopen_with_file();
    let s = &fx.store;
    assert!(s.environment("prod").unwrap().is_none(), "still gone");
    assert!(s.set_secret(&env("prod"), "A", &val("x")).is_err());
    let pending = s.pending_deletions().unwrap();
    assert_eq!(
        pending,
        [PendingDeletion {
            scope: env("prod"),
            forced: true
        }]
    );
    let report = s.finish_delete(&env("prod")).unwrap();
    assert_eq!((report.secrets, report.spaces.len()), (2, 2));
    assert!(keys(&fx, "dek/env=prod/").is_empty());
    assert!(keys(&fx, "space/team-a").is_empty());
    assert!(s.pending_deletions().unwrap().is_empty());
    // Finishing again: nothing there.
    assert!(matches!(
        s.finish_delete(&env("prod")),
        Err(StoreError::UnknownEnvironment(_))
    ));
}

#[test]
fn what_a_crash_before_a_fence_leaves_is_cleared_at_open() {
    let fx = filled();
    let bucket = store_bucket(&fx.store);
    // A DEK whose scope has no record (a first write that died before its
    // fence while the scope was deleted), and a space whose environment
    // has none (a create that died likewise).
    let dek = bucket
        .get(b"dek/env=staging/0000000000000001")
        .unwrap()
        .unwrap();
    bucket
        .put(b"dek/env=ghost/0000000000000001", &dek.value)
        .unwrap();
    let space_rec = bucket.get(b"space/team-s").unwrap().unwrap();
    let rewritten = {
        // The same record naming environment `gone` (postcard: the
        // variant, the string's length, the string, the time).
        let mut v = space_rec.value.clone();
        let at = v.windows(7).position(|w| w == b"staging").unwrap();
        v.splice(at - 1..at + 7, [4u8].into_iter().chain(*b"gone"));
        v
    };
    bucket.put(b"space/orphan", &rewritten).unwrap();
    drop(bucket); // it holds the backend open
    let fx = fx.reopen_with_file();
    assert!(
        keys(&fx, "dek/env=ghost/").is_empty(),
        "orphan key destroyed"
    );
    assert_eq!(keys(&fx, "dek/env=staging/").len(), 1, "others kept");
    let pending = fx.store.pending_deletions().unwrap();
    assert_eq!(
        pending,
        [PendingDeletion {
            scope: space("orphan"),
            forced: true
        }]
    );
    let s = &fx.store;
    s.begin_delete(&space("orphan"), true).unwrap();
    s.finish_delete(&space("orphan")).unwrap();
    assert!(s.pending_deletions().unwrap().is_empty());
}

#[test]
fn an_id_created_again_is_a_fresh_empty_scope_with_a_new_key_version() {
    let fx = filled();
    let s = &fx.store;
    let old_key = store_bucket(s)
        .get(b"dek/env=prod/0000000000000001")
        .unwrap()
        .unwrap();
    s.begin_delete(&env("prod"), true).unwrap();
    s.finish_delete(&env("prod")).unwrap();
    s.create_environment("prod").unwrap();
    s.create_space("team-a", "prod").unwrap();
    assert!(s.list_secrets(&env("prod")).unwrap().is_empty());
    assert!(s.list_effective("prod", Some("team-a")).unwrap().is_empty());
    assert!(matches!(
        s.get_secret(&env("prod"), "A"),
        Err(StoreError::NotFound { .. })
    ));
    s.set_secret(&env("prod"), "A", &val("fresh")).unwrap();
    assert_eq!(
        keys(&fx, "dek/env=prod/"),
        ["dek/env=prod/0000000000000002"],
        "the next version, never v1 again"
    );
    let new_key = store_bucket(s)
        .get(b"dek/env=prod/0000000000000002")
        .unwrap()
        .unwrap();
    assert_ne!(new_key.value, old_key.value);
    assert_eq!(s.get_secret(&env("prod"), "A").unwrap().expose(), "fresh");
    let report = s.rotate_dek(&env("prod")).unwrap();
    assert_eq!((report.previous_version, report.new_version), (Some(2), 3));
    assert_eq!(
        s.resolve("prod", Some("team-a"), "A")
            .unwrap()
            .value
            .expose(),
        "fresh"
    );
}

/// Two stores on one backend, as two hosts.
fn two_hosts() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    SecretStore,
    SecretStore,
) {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let backend: Arc<dyn Backend> = EmbeddedKv::open(data.path()).unwrap().into_backend();
    let a = SecretStore::open_on(backend.clone(), KeySource::File(key.clone())).unwrap();
    let b = SecretStore::open_on(backend, KeySource::File(key)).unwrap();
    (data, keys, a, b)
}

#[test]
fn another_host_forgets_a_deleted_scope_and_its_keys() {
    let (_data, _keys, a, b) = two_hosts();
    a.create_environment("prod").unwrap();
    a.create_space("team-a", "prod").unwrap();
    a.set_secret(&env("prod"), "A", &val("old")).unwrap();
    // b knows prod and team-a, and has prod's DEK v1 and the record cached.
    b.check_scope("prod", Some("team-a")).unwrap();
    assert_eq!(
        b.resolve("prod", Some("team-a"), "A")
            .unwrap()
            .value
            .expose(),
        "old"
    );

    a.begin_delete(&env("prod"), true).unwrap();
    a.finish_delete(&env("prod")).unwrap();
    assert!(matches!(
        b.check_scope("prod", None),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(b.resolve("prod", Some("team-a"), "A").is_err());

    // Created again through a: b reads the new value under the new key.
    a.create_environment("prod").unwrap();
    a.set_secret(&env("prod"), "A", &val("new")).unwrap();
    b.check_scope("prod", None).unwrap();
    assert_eq!(b.get_secret(&env("prod"), "A").unwrap().expose(), "new");
    assert!(matches!(
        b.check_scope("prod", Some("team-a")),
        Err(StoreError::UnknownSpace(_))
    ));
    // b may also finish a deletion a began.
    a.begin_delete(&env("prod"), true).unwrap();
    b.finish_delete(&env("prod")).unwrap();
    assert!(a.environment("prod").unwrap().is_none());
}
