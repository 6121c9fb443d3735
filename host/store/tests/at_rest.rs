//! What an attacker with the data directory (but not the key) gets: no
//! plaintext, and no way to move or alter ciphertexts undetected. And what
//! happens without the right key: a sealed store that changes nothing.

mod common;

use common::*;
use keyhole_store::{KeySource, StoreError};

#[test]
fn planted_plaintext_never_reaches_disk() {
    let fx = Fixture::new().with_layout();
    fx.store
        .set_secret(&env("prod"), "PLANTED", &val(PLANTED))
        .unwrap();
    fx.store
        .set_secret(&space("team-a"), "PLANTED", &val(PLANTED))
        .unwrap();
    fx.store.rotate_dek(&env("prod")).unwrap();
    fx.store.flush().unwrap();
    let check = |when: &str| {
        let files = files_under(fx.data.path());
        assert!(!files.is_empty());
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, PLANTED.as_bytes()),
                "{when}: plaintext in {path:?}"
            );
        }
    };
    check("after flush");
    let data_dir = fx.data.path().canonicalize().unwrap();
    assert!(!fx.key_path.canonicalize().unwrap().starts_with(&data_dir));
    // The key itself is not in the data dir either.
    let key_text = std::fs::read_to_string(&fx.key_path).unwrap();
    let key_hex = key_text.split_whitespace().nth(1).unwrap();
    let key_bytes = hex::decode(key_hex).unwrap();
    let fx = fx.reopen(KeySource::None);
    drop(fx.store);
    for (path, bytes) in files_under(fx.data.path()) {
        assert!(
            !contains(&bytes, PLANTED.as_bytes()),
            "after drop: plaintext in {path:?}"
        );
        assert!(!contains(&bytes, &key_bytes), "KEK bytes in {path:?}");
        assert!(!contains(&bytes, key_hex.as_bytes()), "KEK hex in {path:?}");
    }
}

#[test]
fn ciphertext_swapped_between_names_fails_integrity() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "A", &val("value-of-a")).unwrap();
    s.set_secret(&env("prod"), "B", &val("value-of-b")).unwrap();
    let tree = store_bucket(&fx.store);
    let (ka, kb) = (record_key(&env("prod"), "A"), record_key(&env("prod"), "B"));
    let (va, vb) = (
        tree.get(&ka).unwrap().unwrap().value,
        tree.get(&kb).unwrap().unwrap().value,
    );
    tree.put(&ka, &vb).unwrap();
    tree.put(&kb, &va).unwrap();
    for name in ["A", "B"] {
        let err = s.get_secret(&env("prod"), name).unwrap_err();
        assert!(
            matches!(err, StoreError::Integrity { .. }),
            "{name}: {err:?}"
        );
        assert!(err.is_unavailable());
        let err = s.resolve("prod", None, name).unwrap_err();
        assert!(
            matches!(err, StoreError::Integrity { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn ciphertext_moved_between_scopes_fails_integrity() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "K", &val("prod-value")).unwrap();
    s.set_secret(&env("staging"), "K", &val("staging-value"))
        .unwrap();
    s.set_secret(&space("team-a"), "K", &val("a-value"))
        .unwrap();
    s.set_secret(&space("team-b"), "K", &val("b-value"))
        .unwrap();
    let tree = store_bucket(&fx.store);
    let kp = record_key(&env("prod"), "K");
    let ks = record_key(&env("staging"), "K");
    let ka = record_key(&space("team-a"), "K");
    let kb = record_key(&space("team-b"), "K");
    // env → env, and space → space within the same environment.
    let vs = tree.get(&ks).unwrap().unwrap().value;
    tree.put(&kp, &vs).unwrap();
    let vb = tree.get(&kb).unwrap().unwrap().value;
    tree.put(&ka, &vb).unwrap();
    assert!(matches!(
        s.get_secret(&env("prod"), "K"),
        Err(StoreError::Integrity { .. })
    ));
    assert!(matches!(
        s.resolve("prod", None, "K"),
        Err(StoreError::Integrity { .. })
    ));
    assert!(matches!(
        s.resolve("prod", Some("team-a"), "K"),
        Err(StoreError::Integrity { .. })
    ));
    // Untouched records still read.
    assert_eq!(
        s.get_secret(&env("staging"), "K").unwrap().expose(),
        "staging-value"
    );
    assert_eq!(
        s.get_secret(&space("team-b"), "K").unwrap().expose(),
        "b-value"
    );
}

#[test]
fn garbage_records_are_corrupt_not_panics() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "K", &val("v")).unwrap();
    let tree = store_bucket(&fx.store);
    let k = record_key(&env("prod"), "K");
    tree.put(&k, &[0xff_u8, 0xff, 0xff]).unwrap();
    assert!(matches!(
        s.get_secret(&env("prod"), "K"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        s.list_secrets(&env("prod")),
        Err(StoreError::Corrupt { .. })
    ));
}

fn sealed_reason(err: StoreError) -> String {
    match err {
        StoreError::Sealed { reason } => reason,
        other => panic!("expected Sealed, got {other:?}"),
    }
}

fn assert_sealed_but_listable(fx: &Fixture, expect: &str) {
    let s = &fx.store;
    assert!(s.is_sealed());
    let reason = s.sealed_reason().unwrap();
    assert!(reason.contains(expect), "{reason}");
    for err in [
        s.get_secret(&env("prod"), "K").unwrap_err(),
        s.resolve("prod", Some("team-a"), "K").unwrap_err(),
        s.set_secret(&env("prod"), "K", &val("new")).unwrap_err(),
        s.rotate_kek().unwrap_err(),
        s.rotate_dek(&env("prod")).unwrap_err(),
    ] {
        assert!(err.is_unavailable());
        let msg = err.to_string();
        assert!(msg.starts_with("sealed: master key"), "{msg}");
        assert_eq!(sealed_reason(err), reason);
    }
    // Metadata still works.
    assert_eq!(s.list_environments().unwrap().len(), 2);
    assert_eq!(s.list_spaces(Some("prod")).unwrap().len(), 2);
    assert_eq!(s.list_secrets(&env("prod")).unwrap()[0].name, "K");
    let eff = s.list_effective("prod", Some("team-a")).unwrap();
    assert!(eff.iter().any(|e| e.meta.name == "K"));
}

#[test]
fn wrong_key_opens_sealed_and_changes_nothing() {
    let fx = Fixture::new().with_layout();
    fx.store.set_secret(&env("prod"), "K", &val("v")).unwrap();
    fx.store
        .set_secret(&space("team-a"), "S", &val("v"))
        .unwrap();
    fx.store.flush().unwrap();
    let before = snapshot(&fx.store);

    let wrong = fx.keys.path().join("wrong.key");
    keyhole_store::SecretStore::init_key_file(&wrong).unwrap();
    let fx = fx.reopen(KeySource::File(wrong.clone()));
    let expect = format!("master key at {} does not open this store", wrong.display());
    assert_sealed_but_listable(&fx, &expect);
    assert_eq!(snapshot(&fx.store), before, "sealed open wrote nothing");

    let fx = fx.reopen(KeySource::Inline(
        keyhole_store::SecretStore::generate_key_text(),
    ));
    assert_sealed_but_listable(&fx, "does not open this store");
    assert_eq!(snapshot(&fx.store), before);

    // The right key still works afterwards.
    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    assert_eq!(
        fx.store.get_secret(&env("prod"), "K").unwrap().expose(),
        "v"
    );
}

#[test]
fn missing_key_opens_sealed_and_changes_nothing() {
    let fx = Fixture::new().with_layout();
    fx.store.set_secret(&env("prod"), "K", &val("v")).unwrap();
    fx.store.flush().unwrap();
    let before = snapshot(&fx.store);
    let missing = fx.keys.path().join("not-there.key");
    let fx = fx.reopen(KeySource::File(missing.clone()));
    let expect = format!("master key not available at {}", missing.display());
    assert_sealed_but_listable(&fx, &expect);
    assert_eq!(snapshot(&fx.store), before);
    assert!(!missing.exists(), "sealed open created no key file");
    let fx = fx.reopen(KeySource::None);
    assert_sealed_but_listable(&fx, "master key not available");
    assert_eq!(snapshot(&fx.store), before);
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused_until_chmod_600() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let fx = Fixture::new().with_layout();
    fx.store.set_secret(&env("prod"), "K", &val("v")).unwrap();
    fx.store.flush().unwrap();
    let before = snapshot(&fx.store);
    let key = fx.key_path.clone();
    let mut fx = fx;
    for (mode, how) in [
        (0o644, "readable"),
        (0o640, "readable"),
        (0o620, "writable"),
    ] {
        chmod(&key, mode);
        fx = fx.reopen_with_file();
        let expect = format!(
            "key file {} is {how} by others (mode {mode:04o}); run: chmod 600 {}",
            key.display(),
            key.display()
        );
        assert_eq!(fx.store.sealed_reason().as_deref(), Some(&*expect));
        let err = fx.store.get_secret(&env("prod"), "K").unwrap_err();
        assert_eq!(err.to_string(), format!("sealed: {expect}"));
        assert!(fx.store.set_secret(&env("prod"), "K", &val("x")).is_err());
        assert!(fx.store.rotate_kek().is_err());
        assert_eq!(fx.store.list_secrets(&env("prod")).unwrap().len(), 1);
        assert_eq!(snapshot(&fx.store), before, "a refused key changed nothing");
    }
    chmod(&key, 0o600);
    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    assert_eq!(
        fx.store.get_secret(&env("prod"), "K").unwrap().expose(),
        "v"
    );
    // Owner-only modes stricter than 0600 are fine too.
    chmod(&key, 0o400);
    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    chmod(&key, 0o600);
}

#[test]
fn malformed_key_file_is_a_key_file_error() {
    let fx = Fixture::new();
    let bad = fx.keys.path().join("bad.key");
    std::fs::write(&bad, "v1 not-hex\n").unwrap();
    #[cfg(unix)]
    {
        // Private, or it is refused (sealed) before it is parsed.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let data = fx.data.path().to_path_buf();
    drop(fx.store);
    let mut result = keyhole_store::SecretStore::open(&data, KeySource::File(bad.clone()));
    for _ in 0..200 {
        if !matches!(result, Err(StoreError::Locked { .. })) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
        result = keyhole_store::SecretStore::open(&data, KeySource::File(bad.clone()));
    }
    match result {
        Err(StoreError::KeyFile { path, reason }) => {
            assert_eq!(path, bad);
            assert!(reason.contains("64 hex"), "{reason}");
        }
        other => panic!("expected KeyFile, got {:?}", other.map(|_| ())),
    }
}
