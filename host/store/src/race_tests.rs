//! Deterministic interleavings of rotations with reads and writes, pinned
//! with [`crate::test_hooks`] rather than left to a stress test's luck.

use crate::layout;
use crate::tamper_tests::{forget_caches, setup};
use crate::test_hooks::{self, Point};
use crate::{Scope, SecretStore, SecretValue};

fn prod() -> Scope {
    Scope::Environment("prod".into())
}

fn get(store: &SecretStore, name: &str) -> String {
    store.get_secret(&prod(), name).unwrap().expose().to_owned()
}

/// The first write to a scope creates its DEK v1 lazily. If it lands while
/// a `rotate_dek` of that scope is about to switch keys, the rotation must
/// see that DEK: it used to pick v1 from a scan taken earlier, overwrite the
/// DEK the value was sealed under, skip the value as "already on v1", and
/// leave it (and every later write sealed with the still-cached old v1)
/// undecryptable once the cache was cleared.
#[test]
fn first_write_racing_a_dek_rotation_keeps_its_dek() {
    let (_d, _k, store) = setup();
    let writer = store.clone();
    test_hooks::arm(Point::BeforeDekSwitch, move || {
        writer
            .set_secret(&prod(), "FIRST", &SecretValue::new("first".into()))
            .unwrap();
    });
    let report = store.rotate_dek(&prod()).unwrap();
    assert!(!test_hooks::pending(), "the racing write ran");
    assert_eq!((report.previous_version, report.new_version), (Some(1), 2));
    assert_eq!(report.retired_versions, [1]);
    assert_eq!(report.records_rewritten, 1);

    assert_eq!(get(&store, "FIRST"), "first");
    forget_caches(&store);
    assert_eq!(get(&store, "FIRST"), "first");
    let r = store.resolve("prod", None, "FIRST").unwrap();
    assert_eq!((r.value.expose(), r.version), ("first", 1));

    // Writes after the rotation and further rotations keep working.
    store
        .set_secret(&prod(), "SECOND", &SecretValue::new("second".into()))
        .unwrap();
    store.rotate_kek().unwrap();
    let report = store.rotate_dek(&prod()).unwrap();
    assert_eq!((report.previous_version, report.new_version), (Some(2), 3));
    assert_eq!(report.records_rewritten, 2);
    forget_caches(&store);
    assert_eq!(get(&store, "FIRST"), "first");
    assert_eq!(get(&store, "SECOND"), "second");
}

/// A scope's first write points `dek-current` at the v1 it finds created,
/// which may be the one a racing `rotate_dek` created and is about to point
/// at itself. The rotation's switch then fails; it used to delete "its
/// never-current" v1, stranding the value the write had just sealed under
/// it (seen in CI as "refers to a DEK that does not exist" on a
/// read-your-write, with two stores racing).
#[test]
fn a_first_write_that_adopts_a_rotations_new_dek_keeps_it() {
    let (_d, _k, store) = setup();
    let writer = store.clone();
    test_hooks::arm(Point::BeforeDekPointerMove, move || {
        writer
            .set_secret(&prod(), "FIRST", &SecretValue::new("first".into()))
            .unwrap();
    });
    let report = store.rotate_dek(&prod()).unwrap();
    assert!(!test_hooks::pending(), "the racing write ran");
    assert_eq!((report.previous_version, report.new_version), (Some(1), 2));
    assert_eq!(report.records_rewritten, 1);
    assert_eq!(report.retired_versions, [1]);
    forget_caches(&store);
    assert_eq!(get(&store, "FIRST"), "first");
}

/// A read that misses the DEK cache and unwraps a DEK which a rotation then
/// retires must not put the retired key back into the cache after the
/// rotation evicted it.
#[test]
fn a_cache_miss_racing_a_dek_rotation_does_not_cache_the_retired_dek() {
    let (_d, _k, store) = setup();
    store
        .set_secret(&prod(), "K", &SecretValue::new("v".into()))
        .unwrap();
    forget_caches(&store);
    let rotator = store.clone();
    test_hooks::arm(Point::DekUnwrapped, move || {
        let report = rotator.rotate_dek(&prod()).unwrap();
        assert_eq!(report.retired_versions, [1]);
    });
    // The read decrypts the record it read with the DEK it unwrapped.
    assert_eq!(get(&store, "K"), "v");
    assert!(!test_hooks::pending(), "the racing rotation ran");
    assert_eq!(
        store.inner.sealed_cache.len(),
        0,
        "the record sealed under retired DEK v1 was cached"
    );

    let v1 = layout::dek(&prod(), 1);
    assert!(store.inner.bucket.get(&v1).unwrap().is_none());
    assert!(
        !store.inner.keys.deks.contains(&v1),
        "retired DEK v1 is still cached"
    );
    assert_eq!(get(&store, "K"), "v");
}

/// A read that missed the sealed cache and read a record from the backend just
/// before a write replaced it returns the older value (it began first), but
/// must not cache it: the next read sees the write.
#[test]
fn a_read_racing_a_write_does_not_cache_the_older_record() {
    let (_d, _k, store) = setup();
    store
        .set_secret(&prod(), "K", &SecretValue::new("old".into()))
        .unwrap();
    forget_caches(&store);
    let writer = store.clone();
    test_hooks::arm(Point::DekUnwrapped, move || {
        writer
            .set_secret(&prod(), "K", &SecretValue::new("new".into()))
            .unwrap();
    });
    assert_eq!(get(&store, "K"), "old");
    assert!(!test_hooks::pending(), "the racing write ran");
    assert_eq!(store.inner.sealed_cache.len(), 0);
    assert_eq!(get(&store, "K"), "new");
}

/// Reads are served from the sealed cache, and every write through the
/// store (set, delete, DEK rotation) is visible to the next read.
#[test]
fn writes_after_cached_reads_are_seen() {
    let (_d, _k, store) = setup();
    let set = |v: &str| {
        store
            .set_secret(&prod(), "K", &SecretValue::new(v.into()))
            .unwrap()
    };
    set("one");
    assert_eq!(get(&store, "K"), "one");
    assert_eq!(
        store.inner.sealed_cache.len(),
        1,
        "an authenticated read is cached"
    );
    assert_eq!(get(&store, "K"), "one");

    set("two");
    assert_eq!(get(&store, "K"), "two");

    let report = store.rotate_dek(&prod()).unwrap();
    assert_eq!(
        report.records_rewritten, 2,
        "the value and its kept version 1"
    );
    assert_eq!(get(&store, "K"), "two");
    store.rotate_kek().unwrap();
    assert_eq!(get(&store, "K"), "two");

    assert!(store.delete_secret(&prod(), "K").unwrap());
    for _ in 0..2 {
        assert!(matches!(
            store.get_secret(&prod(), "K"),
            Err(crate::StoreError::NotFound { .. })
        ));
    }
}

/// The same for a name that did not exist yet: a read that found nothing
/// just before a write created it must not cache "missing".
#[test]
fn a_read_racing_the_first_write_does_not_cache_missing() {
    let (_d, _k, store) = setup();
    let writer = store.clone();
    test_hooks::arm(Point::SecretRecordRead, move || {
        writer
            .set_secret(&prod(), "NEW", &SecretValue::new("created".into()))
            .unwrap();
    });
    assert!(matches!(
        store.get_secret(&prod(), "NEW"),
        Err(crate::StoreError::NotFound { .. })
    ));
    assert!(!test_hooks::pending(), "the racing write ran");
    assert_eq!(get(&store, "NEW"), "created");
}

/// A writer that read the DEK pointer before a rotation switched it, and
/// writes a new name after the rotation swept the scope and deleted the
/// old DEK, would leave its value sealed under a DEK that no longer exists
/// (no pass of the rotation saw the record). Its fence notices the pointer
/// moved and seals the value again under the current DEK.
#[test]
fn a_write_that_picked_the_old_dek_is_resealed_by_its_fence() {
    let (_d, _k, store) = setup();
    store
        .set_secret(&prod(), "K", &SecretValue::new("existing".into()))
        .unwrap();
    let rotator = store.clone();
    test_hooks::arm(Point::BeforeSecretWrite, move || {
        let report = rotator.rotate_dek(&prod()).unwrap();
        assert_eq!(report.retired_versions, [1], "DEK v1 deleted mid-write");
    });
    store
        .set_secret(&prod(), "NEW", &SecretValue::new("written late".into()))
        .unwrap();
    assert!(!test_hooks::pending(), "the racing rotation ran");
    forget_caches(&store);
    assert_eq!(get(&store, "NEW"), "written late");
    assert_eq!(get(&store, "K"), "existing");
    let stored = store
        .inner
        .bucket
        .get(&layout::secret(&prod(), "NEW"))
        .unwrap()
        .unwrap();
    let rec = crate::records::decode_secret(&stored.value).unwrap();
    assert_eq!(rec.dek_version, 2, "re-sealed under the current DEK");
}

/// The same one level up: a scope's first write creates its DEK wrapped
/// under the current master key. If a KEK rotation retires that master key
/// between the writer reading the pointer and creating the DEK, the DEK's
/// fence rewraps it under the new master key; otherwise it would be
/// wrapped under a key the key file no longer holds.
#[test]
fn a_dek_created_under_a_retiring_master_key_is_rewrapped_by_its_fence() {
    let (_d, keys, store) = setup();
    store.create_environment("staging").unwrap();
    let rotator = store.clone();
    test_hooks::arm(Point::BeforeDekCreate, move || {
        let report = rotator.rotate_kek().unwrap();
        assert_eq!(report.retired_versions, [1], "KEK v1 retired mid-write");
    });
    let staging = Scope::Environment("staging".into());
    store
        .set_secret(&staging, "K", &SecretValue::new("first".into()))
        .unwrap();
    assert!(!test_hooks::pending(), "the racing rotation ran");
    drop(store);
    // A fresh open holds only what the key file holds (v2).
    let store = crate::tamper_tests::reopen(&_d, &keys);
    assert_eq!(store.get_secret(&staging, "K").unwrap().expose(), "first");
}

/// Misses are cached, and a write of the name replaces the cached miss.
#[test]
fn a_cached_miss_is_forgotten_when_the_name_is_written() {
    let (_d, _k, store) = setup();
    for _ in 0..2 {
        assert!(store.get_secret(&prod(), "LATER").is_err());
    }
    assert_eq!(store.inner.sealed_cache.len(), 1, "the miss is cached");
    store
        .set_secret(&prod(), "LATER", &SecretValue::new("now".into()))
        .unwrap();
    assert_eq!(get(&store, "LATER"), "now");
}

/// A space's listener reading an inherited secret caches the space's miss;
/// writing the override replaces it, and resolve reports the override.
#[test]
fn a_cached_space_miss_gives_way_to_a_new_override() {
    let (_d, _k, store) = setup();
    store.create_space("team-a", "prod").unwrap();
    store
        .set_secret(&prod(), "K", &SecretValue::new("inherited".into()))
        .unwrap();
    for _ in 0..2 {
        let r = store.resolve("prod", Some("team-a"), "K").unwrap();
        assert_eq!(r.value.expose(), "inherited");
        assert_eq!(r.provenance, crate::Provenance::Environment);
    }
    assert_eq!(
        store.inner.sealed_cache.len(),
        2,
        "the space's miss is cached"
    );
    let team_a = Scope::Space("team-a".into());
    store
        .set_secret(&team_a, "K", &SecretValue::new("override".into()))
        .unwrap();
    let r = store.resolve("prod", Some("team-a"), "K").unwrap();
    assert_eq!(r.value.expose(), "override");
    assert_eq!(r.provenance, crate::Provenance::SpaceOverride);
}
