//! Shared fixtures: a real store on the embedded backend in a temp dir, with
//! its key file in a sibling temp dir (never inside the data dir).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use keyhole_store::{KeySource, Scope, SecretStore, SecretValue};

pub const PLANTED: &str = "PLANTED-PLAINTEXT-4f1c9e";

pub struct Fixture {
    pub data: tempfile::TempDir,
    pub keys: tempfile::TempDir,
    pub key_path: PathBuf,
    pub store: SecretStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        let data = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let key_path = keys.path().join("master.key");
        SecretStore::init_key_file(&key_path).unwrap();
        let store = SecretStore::open(data.path(), KeySource::File(key_path.clone())).unwrap();
        assert!(!store.is_sealed());
        Fixture {
            data,
            keys,
            key_path,
            store,
        }
    }

    /// Drops the store and opens the same data dir again with `key`.
    pub fn reopen(self, key: KeySource) -> Fixture {
        let Fixture {
            data,
            keys,
            key_path,
            store,
        } = self;
        drop(store);
        let store = open_retrying(data.path(), key);
        Fixture {
            data,
            keys,
            key_path,
            store,
        }
    }

    pub fn reopen_with_file(self) -> Fixture {
        let key = KeySource::File(self.key_path.clone());
        self.reopen(key)
    }

    /// env `prod` with spaces `team-a`, `team-b`; env `staging` with `team-s`.
    pub fn with_layout(self) -> Fixture {
        let s = &self.store;
        s.create_environment("prod").unwrap();
        s.create_environment("staging").unwrap();
        s.create_space("team-a", "prod").unwrap();
        s.create_space("team-b", "prod").unwrap();
        s.create_space("team-s", "staging").unwrap();
        self
    }
}

/// The embedded backend releases its file lock from background threads
/// shortly after the last handle drops; wait for that instead of failing.
pub fn open_retrying(dir: &Path, key: KeySource) -> SecretStore {
    for _ in 0..200 {
        match SecretStore::open(dir, key.clone()) {
            Err(keyhole_store::StoreError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(25))
            }
            other => return other.unwrap(),
        }
    }
    panic!("data dir stayed locked");
}

pub fn env(id: &str) -> Scope {
    Scope::Environment(id.to_owned())
}

pub fn space(id: &str) -> Scope {
    Scope::Space(id.to_owned())
}

pub fn val(s: &str) -> SecretValue {
    SecretValue::new(s.to_owned())
}

/// Every byte of every file under `dir`, file by file.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The store's bucket on its backend: tests look behind the store's back
/// through it (the layout is in `src/layout.rs`).
pub fn store_bucket(store: &SecretStore) -> std::sync::Arc<dyn keyhole_kv::Bucket> {
    store.backend().bucket("store").unwrap()
}

/// Where the value of `name` in `scope` is stored.
pub fn record_key(scope: &Scope, name: &str) -> Vec<u8> {
    match scope {
        Scope::Environment(id) => format!("secret/env={id}/{name}"),
        Scope::Space(id) => format!("secret/space={id}/{name}"),
    }
    .into_bytes()
}

/// Every record of the store: (key, value, revision).
pub type Snapshot = Vec<(Vec<u8>, Vec<u8>, u64)>;

/// A snapshot of the store's bucket, for before/after comparisons.
pub fn snapshot(store: &SecretStore) -> Snapshot {
    store_bucket(store)
        .scan(b"")
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value, e.revision))
        .collect()
}
