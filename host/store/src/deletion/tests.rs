//! Deterministic interleavings of a deletion with the writers it races,
//! pinned with [`crate::test_hooks`]: each writer checked the scope before
//! the deletion marked it and writes after the deletion's sweep, which is
//! exactly what its fence is for. Each test fails without that fence (or,
//! for the known-scopes cache, without its generation check).

use crate::layout;
use crate::tamper_tests::setup;
use crate::test_hooks::{self, Point};
use crate::{Scope, SecretStore, SecretValue, StoreError};

fn prod() -> Scope {
    Scope::Environment("prod".into())
}

fn value(v: &str) -> SecretValue {
    SecretValue::new(v.into())
}

fn delete(store: &SecretStore, scope: &Scope) {
    assert!(store.begin_delete(scope, true).unwrap());
    store.finish_delete(scope).unwrap();
}

/// Keys of the store's bucket under `prefix`.
fn keys(store: &SecretStore, prefix: &[u8]) -> Vec<Vec<u8>> {
    let scan = store.inner.bucket.scan(prefix).unwrap();
    scan.into_iter().map(|(k, _)| k).collect()
}

#[test]
fn a_write_landing_after_the_sweep_is_taken_back_by_its_fence() {
    let (_d, _k, store) = setup();
    store.set_secret(&prod(), "A", &value("a")).unwrap();
    let deleter = store.clone();
    test_hooks::arm(Point::BeforeSecretWrite, move || delete(&deleter, &prod()));
    let err = store
        .set_secret(&prod(), "LATE", &value("late"))
        .unwrap_err();
    assert!(!test_hooks::pending(), "the deletion ran");
    assert!(matches!(err, StoreError::UnknownEnvironment(_)), "{err:?}");
    assert!(keys(&store, &layout::secrets_of(&prod())).is_empty());
    assert!(keys(&store, &layout::deks_of(&prod())).is_empty());
}

#[test]
fn a_first_key_created_after_the_sweep_is_taken_back_by_its_fence() {
    let (_d, _k, store) = setup();
    let deleter = store.clone();
    test_hooks::arm(Point::BeforeDekCreate, move || delete(&deleter, &prod()));
    let err = store.set_secret(&prod(), "FIRST", &value("v")).unwrap_err();
    assert!(!test_hooks::pending(), "the deletion ran");
    assert!(matches!(err, StoreError::UnknownEnvironment(_)), "{err:?}");
    assert!(keys(&store, &layout::deks_of(&prod())).is_empty(), "no key");
    assert!(keys(&store, &layout::secrets_of(&prod())).is_empty());
}

#[test]
fn a_key_rotation_finishing_after_the_sweep_leaves_no_key() {
    let (_d, _k, store) = setup();
    store.set_secret(&prod(), "A", &value("a")).unwrap();
    let deleter = store.clone();
    test_hooks::arm(Point::BeforeDekSwitch, move || delete(&deleter, &prod()));
    let err = store.rotate_dek(&prod()).unwrap_err();
    assert!(!test_hooks::pending(), "the deletion ran");
    assert!(matches!(err, StoreError::UnknownEnvironment(_)), "{err:?}");
    assert!(keys(&store, &layout::deks_of(&prod())).is_empty(), "no key");
}

#[test]
fn a_space_created_in_an_environment_being_deleted_is_taken_back() {
    let (_d, _k, store) = setup();
    let deleter = store.clone();
    test_hooks::arm(Point::BeforeSpaceCreate, move || delete(&deleter, &prod()));
    let err = store.create_space("late", "prod").unwrap_err();
    assert!(!test_hooks::pending(), "the deletion ran");
    assert!(matches!(err, StoreError::UnknownEnvironment(_)), "{err:?}");
    assert!(keys(&store, &layout::space("late")).is_empty());
    assert!(store.pending_deletions().unwrap().is_empty());
}

/// Another host finished the deletion and the id was created again, with
/// a secret in it, while this host's sweep was between passes: the late
/// sweep must leave the new scope alone.
#[test]
fn a_late_sweep_leaves_a_scope_created_again_alone() {
    let (_d, _k, store) = setup();
    store.set_secret(&prod(), "OLD", &value("old")).unwrap();
    let other = store.clone();
    test_hooks::arm(Point::BeforeSweepPass, move || {
        other.finish_delete(&prod()).unwrap();
        other.create_environment("prod").unwrap();
        other.set_secret(&prod(), "NEW", &value("new")).unwrap();
    });
    store.begin_delete(&prod(), true).unwrap();
    store.finish_delete(&prod()).unwrap();
    assert!(!test_hooks::pending(), "the other host ran");
    assert!(store.environment("prod").unwrap().is_some());
    assert_eq!(store.get_secret(&prod(), "NEW").unwrap().expose(), "new");
    assert!(matches!(
        store.get_secret(&prod(), "OLD"),
        Err(StoreError::NotFound { .. })
    ));
}

/// A mark that lands (and is applied from the watch) while a check is
/// between finding the environment live and remembering it must not leave
/// the environment remembered as known.
#[test]
fn a_mark_landing_during_a_check_is_not_papered_over_by_the_known_cache() {
    let (_d, _k, store) = setup();
    let other = store.clone();
    test_hooks::arm(Point::EnvironmentFound, move || {
        other.begin_delete(&prod(), false).unwrap();
        assert!(other.check_scope("prod", None).is_err(), "applied");
    });
    store.check_scope("prod", None).unwrap(); // read before the mark
    assert!(!test_hooks::pending(), "the mark landed");
    assert!(matches!(
        store.check_scope("prod", None),
        Err(StoreError::UnknownEnvironment(_))
    ));
}
