//! Online KEK and DEK rotation over 1,000 secrets.

mod common;

use common::*;
use keyhole_store::{KeySource, RotationTarget, SecretStore, StoreError};

const N: usize = 1000;

fn name(i: usize) -> String {
    format!("SECRET_{i:04}")
}

fn value(i: usize, round: &str) -> String {
    format!("{round}-value-{i}-{}", "x".repeat(i % 50))
}

fn fill(fx: &Fixture) {
    let s = &fx.store;
    for i in 0..N {
        let scope = if i.is_multiple_of(2) {
            env("prod")
        } else {
            space("team-a")
        };
        s.set_secret(&scope, &name(i), &val(&value(i, "r1")))
            .unwrap();
    }
}

fn check_all(store: &SecretStore) {
    for i in 0..N {
        let r = store.resolve("prod", Some("team-a"), &name(i)).unwrap();
        assert_eq!(r.value.expose(), value(i, "r1"), "{}", name(i));
    }
}

#[test]
fn kek_rotation_rewraps_every_dek_and_retires_the_old_key() {
    let fx = Fixture::new().with_layout();
    fill(&fx);
    let old_text = std::fs::read_to_string(&fx.key_path).unwrap();

    let report = fx.store.rotate_kek().unwrap();
    assert_eq!(report.target, RotationTarget::Kek);
    assert_eq!((report.previous_version, report.new_version), (Some(1), 2));
    assert_eq!(report.records_rewritten, 2, "one DEK per scope used");
    assert_eq!(report.retired_versions, [1]);
    check_all(&fx.store);

    // The key file now holds only v2, still private.
    let new_text = std::fs::read_to_string(&fx.key_path).unwrap();
    assert!(
        new_text.starts_with("v2 ") && new_text.lines().count() == 1,
        "{new_text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fx.key_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Writes after rotation work too.
    fx.store
        .set_secret(&env("prod"), "AFTER", &val("after"))
        .unwrap();

    // Every DEK record is now wrapped under v2, and the old key is useless.
    let fx = fx.reopen(KeySource::Inline(old_text));
    assert!(fx.store.is_sealed(), "old KEK must not open the store");
    assert!(matches!(
        fx.store.resolve("prod", None, &name(0)),
        Err(StoreError::Sealed { .. })
    ));
    assert_eq!(store_bucket(&fx.store).scan(b"dek/").unwrap().len(), 2);

    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    check_all(&fx.store);
    assert_eq!(
        fx.store.get_secret(&env("prod"), "AFTER").unwrap().expose(),
        "after"
    );

    // A second rotation works from the rotated state.
    let report = fx.store.rotate_kek().unwrap();
    assert_eq!((report.new_version, report.retired_versions), (3, vec![2]));
    check_all(&fx.store);
}

#[test]
fn dek_rotation_reencrypts_every_value_and_deletes_the_old_dek() {
    let fx = Fixture::new().with_layout();
    fill(&fx);
    let deks = store_bucket(&fx.store);
    let before = deks.scan(b"dek/").unwrap();

    let report = fx.store.rotate_dek(&env("prod")).unwrap();
    assert_eq!(report.target, RotationTarget::Dek(env("prod")));
    assert_eq!((report.previous_version, report.new_version), (Some(1), 2));
    assert_eq!(report.records_rewritten, N / 2);
    assert_eq!(report.retired_versions, [1]);
    check_all(&fx.store);

    let report = fx.store.rotate_dek(&space("team-a")).unwrap();
    assert_eq!(report.records_rewritten, N / 2);
    check_all(&fx.store);

    // Old DEK records are gone; the new ones differ.
    let after = deks.scan(b"dek/").unwrap();
    assert_eq!(after.len(), 2);
    for (k, _) in &before {
        assert!(
            deks.get(k).unwrap().is_none(),
            "old DEK record still present"
        );
    }

    // Rotating a scope without secrets creates its first DEK.
    let report = fx.store.rotate_dek(&env("staging")).unwrap();
    assert_eq!((report.previous_version, report.new_version), (None, 1));
    assert_eq!(report.records_rewritten, 0);
    drop(deks); // a bucket handle keeps the backend (and its lock) alive

    // Survives reopen, then a KEK rotation on top.
    let fx = fx.reopen_with_file();
    check_all(&fx.store);
    fx.store.rotate_kek().unwrap();
    fx.store.rotate_dek(&env("prod")).unwrap();
    check_all(&fx.store);
    let fx = fx.reopen_with_file();
    check_all(&fx.store);
}

/// The audit log's root key is made once, survives KEK rotations and
/// reopens unchanged (old audit entries must stay verifiable), is never on
/// disk in the clear, and is refused while sealed.
#[test]
fn the_audit_root_key_is_stable_across_rotations_and_reopens() {
    let fx = Fixture::new().with_layout();
    let root = fx.store.audit_root_key().unwrap();
    assert_eq!(*fx.store.audit_root_key().unwrap(), *root);
    fx.store.rotate_kek().unwrap();
    assert_eq!(*fx.store.audit_root_key().unwrap(), *root);
    let fx = fx.reopen_with_file();
    assert_eq!(*fx.store.audit_root_key().unwrap(), *root);
    fx.store.rotate_kek().unwrap();
    fx.store.flush().unwrap();
    for (path, bytes) in files_under(fx.data.path()) {
        assert!(
            !contains(&bytes, &root[..]),
            "root key in {}",
            path.display()
        );
    }
    let fx = fx.reopen(KeySource::None);
    assert!(matches!(
        fx.store.audit_root_key(),
        Err(StoreError::Sealed { .. })
    ));
}
