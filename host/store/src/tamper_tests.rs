//! Record-level tamper tests: these edit the fields of stored records
//! (nonce, ciphertext, tag, versions) directly, which needs the private
//! record types, so they live inside the crate.

use crate::crypto::{NONCE_LEN, TAG_LEN};
use crate::layout;
use crate::records::{self, SecretRecord};
use crate::{KeySource, Scope, SecretStore, SecretValue, StoreError};

/// A store on fresh temporary dirs (key file outside the data dir) with
/// environment `prod`. Shared with `race_tests`.
pub(crate) fn setup() -> (tempfile::TempDir, tempfile::TempDir, SecretStore) {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    SecretStore::init_key_file(&key).unwrap();
    let store = SecretStore::open(data.path(), KeySource::File(key)).unwrap();
    store.create_environment("prod").unwrap();
    (data, keys, store)
}

/// Opens the store of [`setup`]'s directories again.
pub(crate) fn reopen(data: &tempfile::TempDir, keys: &tempfile::TempDir) -> SecretStore {
    for _ in 0..200 {
        match SecretStore::open(data.path(), KeySource::File(keys.path().join("k"))) {
            Err(StoreError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(25))
            }
            other => return other.unwrap(),
        }
    }
    panic!("data dir stayed locked");
}

/// Drops every cached DEK and record, so the next read starts from the
/// backend. Shared with `race_tests`.
pub(crate) fn forget_caches(store: &SecretStore) {
    store.inner.keys.deks.clear();
    store.inner.sealed_cache.invalidate();
}

fn secret_key(name: &str) -> Vec<u8> {
    layout::secret(&Scope::Environment("prod".into()), name)
}

/// Rewrites the stored record of `name` with `edit` applied, behind the
/// store's back (the store sees it through its watch).
fn edit(store: &SecretStore, name: &str, edit: impl FnOnce(&mut SecretRecord<'_>, &mut Vec<u8>)) {
    let bucket = &store.inner.bucket;
    let key = secret_key(name);
    let bytes = bucket.get(&key).unwrap().unwrap().value;
    let mut rec: SecretRecord<'_> = records::decode_secret(&bytes).unwrap();
    let mut sealed = rec.sealed.to_vec();
    edit(&mut rec, &mut sealed);
    rec.sealed = &sealed;
    bucket.put(&key, &records::encode_secret(&rec)).unwrap();
}

fn assert_integrity(store: &SecretStore, name: &str, what: &str) {
    let prod = Scope::Environment("prod".into());
    match store.get_secret(&prod, name) {
        Err(StoreError::Integrity { .. }) => {}
        other => panic!("{what}: expected Integrity, got {other:?}"),
    }
    match store.resolve("prod", None, name) {
        Err(e @ StoreError::Integrity { .. }) => assert!(!e.to_string().contains("VALUE-64")),
        other => panic!("{what}: expected Integrity from resolve, got {other:?}"),
    }
}

#[test]
fn every_single_bit_flip_in_nonce_ciphertext_and_tag_fails_integrity() {
    let (_d, _k, store) = setup();
    let prod = Scope::Environment("prod".into());
    let value = format!("VALUE-64-{}", "v".repeat(55));
    assert_eq!(value.len(), 64);
    store
        .set_secret(&prod, "K", &SecretValue::new(value.clone()))
        .unwrap();
    let original = store.inner.bucket.get(&secret_key("K")).unwrap().unwrap();
    let restore = || {
        store
            .inner
            .bucket
            .put(&secret_key("K"), &original.value)
            .unwrap();
        assert_eq!(store.get_secret(&prod, "K").unwrap().expose(), value);
    };

    for bit in 0..NONCE_LEN * 8 {
        edit(&store, "K", |r, _| r.nonce[bit / 8] ^= 1 << (bit % 8));
        assert_integrity(&store, "K", &format!("nonce bit {bit}"));
        restore();
    }
    let sealed_len = 64 + TAG_LEN;
    for bit in 0..sealed_len * 8 {
        edit(&store, "K", |_, s| {
            assert_eq!(s.len(), sealed_len);
            s[bit / 8] ^= 1 << (bit % 8);
        });
        let part = if bit / 8 < 64 { "ciphertext" } else { "tag" };
        assert_integrity(&store, "K", &format!("{part} bit {bit}"));
        restore();
    }
    // Truncation and extension.
    edit(&store, "K", |_, s| {
        s.pop();
    });
    assert_integrity(&store, "K", "truncated");
    restore();
    edit(&store, "K", |_, s| s.push(0));
    assert_integrity(&store, "K", "extended");
    restore();
    // Metadata that the AD binds: the secret version.
    edit(&store, "K", |r, _| r.version += 1);
    assert_integrity(&store, "K", "version bumped");
    restore();
}

#[test]
fn record_claiming_another_dek_version_never_yields_garbage() {
    let (_d, _k, store) = setup();
    let prod = Scope::Environment("prod".into());
    store
        .set_secret(&prod, "K", &SecretValue::new("v1".into()))
        .unwrap();
    store.rotate_dek(&prod).unwrap(); // DEK v1 retired, v2 current
    store
        .set_secret(&prod, "K", &SecretValue::new("v2".into()))
        .unwrap();

    // Points at a DEK that does not exist: corrupt (after re-reads).
    edit(&store, "K", |r, _| r.dek_version = 1);
    assert!(matches!(
        store.get_secret(&prod, "K"),
        Err(StoreError::Corrupt { .. })
    ));
    // A record the store cannot read blocks DEK rotation instead of being
    // silently dropped.
    assert!(matches!(
        store.rotate_dek(&prod),
        Err(StoreError::Corrupt { .. })
    ));

    // Points at a DEK that exists but did not seal it: integrity failure.
    let sk = records::scope_key(&prod);
    let ring = store.inner.keys.ring();
    let (kv, kek) = ring.current().unwrap();
    let other = crate::keys::wrap_dek(&kek.cipher, kv, &sk, 9, &crate::crypto::random_key());
    store
        .inner
        .bucket
        .put(&layout::dek(&prod, 9), &other)
        .unwrap();
    edit(&store, "K", |r, _| r.dek_version = 9);
    assert_integrity(&store, "K", "foreign DEK");
}

#[test]
fn tampered_wrapped_dek_fails_integrity() {
    let (_d, _k, store) = setup();
    let prod = Scope::Environment("prod".into());
    store
        .set_secret(&prod, "K", &SecretValue::new("v".into()))
        .unwrap();
    forget_caches(&store);
    let bucket = &store.inner.bucket;
    let (k, e) = bucket
        .scan(layout::DEK_PREFIX)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let mut rec: records::DekRecord<'_> = records::decode(&e.value, "t").unwrap();
    let mut wrapped = rec.wrapped.to_vec();
    wrapped[0] ^= 1;
    rec.wrapped = &wrapped;
    bucket.put(&k, &records::encode(&rec)).unwrap();
    assert!(matches!(
        store.get_secret(&prod, "K"),
        Err(StoreError::Integrity { .. })
    ));
}

/// A topic binding is sealed into the value's AD: a record whose binding
/// was widened, narrowed, dropped or added behind the store's back fails
/// to open (for the host's read too), while an unbound record keeps
/// release 0.1's AD and opens as before.
#[test]
fn an_edited_topic_binding_fails_to_open() {
    let (_d, _k, store) = setup();
    let prod = Scope::Environment("prod".into());
    let action = vec!["action:*".to_string()];
    store
        .set_secret_with_topics(
            &prod,
            "K",
            &SecretValue::new("VALUE-64".into()),
            Some(&action),
        )
        .unwrap();
    store
        .set_secret(&prod, "PLAIN", &SecretValue::new("VALUE-64-plain".into()))
        .unwrap();
    let original = store.inner.bucket.get(&secret_key("K")).unwrap().unwrap();
    let restore = || {
        store
            .inner
            .bucket
            .put(&secret_key("K"), &original.value)
            .unwrap();
        forget_caches(&store);
        let r = store
            .resolve_on_topic("prod", None, "K", "action:go")
            .unwrap();
        assert_eq!(r.value.expose(), "VALUE-64");
    };
    restore();
    let edits: [(&str, Vec<String>); 4] = [
        ("widened", vec!["*".into()]),
        (
            "widened by one",
            vec!["action:*".into(), "records:*".into()],
        ),
        ("narrowed", vec!["action:go".into()]),
        ("dropped", vec![]),
    ];
    for (what, topics) in edits {
        edit(&store, "K", |r, _| r.topics = topics.clone());
        forget_caches(&store);
        for topic in ["action:go", "records:created"] {
            match store.resolve_on_topic("prod", None, "K", topic) {
                Err(e @ StoreError::Integrity { .. }) => {
                    assert!(!e.to_string().contains("VALUE-64"), "{e}")
                }
                // Narrowed: the other topic is refused without opening.
                Err(StoreError::TopicBound { .. }) if what == "narrowed" => {}
                other => panic!("{what}, {topic}: expected Integrity, got {other:?}"),
            }
        }
        assert!(
            matches!(
                store.get_secret(&prod, "K"),
                Err(StoreError::Integrity { .. })
            ),
            "{what}"
        );
        restore();
    }
    // A binding added to an unbound record.
    edit(&store, "PLAIN", |r, _| r.topics = vec!["*x".into()]);
    forget_caches(&store);
    assert_integrity(&store, "PLAIN", "binding added");
}

/// An unbound value's AD is release 0.1's, byte for byte.
#[test]
fn unbound_values_keep_release_0_1_associated_data() {
    let mut expected = b"keyhole-store/value/v1\0".to_vec();
    for part in [&b"e:prod"[..], b"SLACK_TOKEN"] {
        expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
        expected.extend_from_slice(part);
    }
    expected.extend_from_slice(&3u64.to_be_bytes());
    expected.extend_from_slice(&2u64.to_be_bytes());
    assert_eq!(
        records::value_ad(b"e:prod", "SLACK_TOKEN", 3, 2, &[]),
        expected
    );
}

/// Rough hot-path timing; run with
/// `cargo test --release -p keyhole-store resolve_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn resolve_speed() {
    let (_d, _k, store) = setup();
    store.create_space("team-a", "prod").unwrap();
    let prod = Scope::Environment("prod".into());
    store
        .set_secret(&prod, "K", &SecretValue::new("v".repeat(64)))
        .unwrap();
    let n = 200_000;
    for (label, space) in [("env only", None), ("via space", Some("team-a"))] {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let r = store.resolve("prod", space, "K").unwrap();
            assert_eq!(r.value.expose().len(), 64);
        }
        println!("resolve {label}: {:?} per call", t.elapsed() / n);
    }
}
