//! Deterministic interleavings of rotations with reads and writes, pinned
//! with [`crate::test_hooks`] rather than left to a stress test's luck.

use crate::records;
use crate::tamper_tests::setup;
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
    store.inner.dek_cache.clear();
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
    store.inner.dek_cache.clear();
    assert_eq!(get(&store, "FIRST"), "first");
    assert_eq!(get(&store, "SECOND"), "second");
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
    store.inner.dek_cache.clear();
    let rotator = store.clone();
    test_hooks::arm(Point::DekUnwrapped, move || {
        let report = rotator.rotate_dek(&prod()).unwrap();
        assert_eq!(report.retired_versions, [1]);
    });
    // The read decrypts the record it read with the DEK it unwrapped.
    assert_eq!(get(&store, "K"), "v");
    assert!(!test_hooks::pending(), "the racing rotation ran");

    let v1 = records::dek_key(&records::scope_key(&prod()), 1);
    assert!(!store.inner.trees.deks.contains_key(&v1).unwrap());
    assert!(
        !store.inner.dek_cache.contains(&v1),
        "retired DEK v1 is still cached"
    );
    assert_eq!(get(&store, "K"), "v");
}
