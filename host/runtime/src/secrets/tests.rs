//! `get-secret` host-side: one revealed copy per value, and what a guest
//! is told when the store fails.

use super::*;
use keyhole_store::{KeySource, Scope, SecretValue};

fn store(dir: &std::path::Path) -> SecretStore {
    let key = dir.join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let store = SecretStore::open(&dir.join("data"), KeySource::File(key)).unwrap();
    store.create_environment("prod").unwrap();
    store
}

fn read(ctx: &mut SecretsCtx, name: &str) -> Arc<str> {
    let req = Request {
        name: name.into(),
        environment: None,
        space: None,
        explicit: false,
    };
    ctx.get_secret(req, false).unwrap().value
}

#[test]
fn reading_a_value_again_reveals_no_new_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let prod = Scope::Environment("prod".into());
    let set = |v: &str| {
        store
            .set_secret(&prod, "K", &SecretValue::new(v.into()))
            .unwrap()
    };
    set("first value");
    let mut ctx = SecretsCtx {
        host: Arc::new(SecretsHost {
            store: store.clone(),
            metrics: Arc::default(),
            audit: crate::audit::open(&store, dir.path(), 1_000).unwrap(),
        }),
        reader: Arc::new(Reader {
            environment: "prod".into(),
            access: Arc::default(),
            deployment: "reader".into(),
            module_hash: "00".into(),
        }),
        space: None,
        topic: "t".into(),
        event_id: "ev_1".into(),
        revealed: smallvec::SmallVec::new(),
        notes: Vec::new(),
    };
    let first = read(&mut ctx, "K");
    for _ in 0..1_000 {
        assert!(Arc::ptr_eq(&read(&mut ctx, "K"), &first));
    }
    assert_eq!(ctx.revealed.len(), 1);
    // A changed value is a new one to scrub.
    set("second value");
    assert_eq!(&*read(&mut ctx, "K"), "second value");
    assert_eq!(ctx.revealed.len(), 2);
    drop(first);
    // Once the guest's copies are gone, the run holds the only ones.
    assert!(
        ctx.revealed
            .iter()
            .all(|(_, v)| Arc::strong_count(&v.0) == 1)
    );
}

/// Every store failure a guest may meet: none of their texts, which name
/// the key file and the data directory, reaches the guest.
#[test]
fn a_guest_never_sees_the_store_s_paths() {
    use std::path::PathBuf;
    let key = "/srv/keys/master.key";
    let failures = [
        StoreError::Sealed {
            reason: format!("master key not available at {key}"),
        },
        StoreError::Sealed {
            reason: format!(
                "key file {key} is readable by others (mode 0644); run: chmod 600 {key}"
            ),
        },
        StoreError::KeyFile {
            path: PathBuf::from(key),
            reason: "permission denied".into(),
        },
        StoreError::Corrupt {
            what: format!("a data key is wrapped under master key v2, which {key} does not hold"),
        },
        StoreError::Locked {
            path: PathBuf::from("/srv/data"),
        },
        StoreError::Io(std::io::Error::other(format!("{key}: disk full"))),
        StoreError::AlreadyExists(format!("key file {key}")),
    ];
    for err in failures {
        let sealed = matches!(err, StoreError::Sealed { .. });
        let SecretError::Unavailable(text) = to_wit_error(err) else {
            panic!("store failures are unavailable");
        };
        assert_eq!(
            text,
            if sealed {
                STORE_SEALED
            } else {
                STORE_UNAVAILABLE
            }
        );
        assert!(!text.contains('/'), "{text}");
    }
    // A guest's own bad input is still explained to it.
    let SecretError::InvalidName(text) = to_wit_error(StoreError::InvalidName {
        name: "bad name".into(),
        rule: "letters only",
    }) else {
        panic!("invalid-name");
    };
    assert!(text.contains("letters only"), "{text}");
}
