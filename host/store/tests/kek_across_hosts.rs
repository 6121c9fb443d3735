//! A master key (KEK) rotation across hosts that share a backend but each
//! have their own key file, rolled out host by host: one host prepares the
//! new version (claims it, adds it to its key file, does not switch); the
//! operator copies that file to every host; then a rotation on any host
//! switches to the prepared version. No host is stopped, and no read fails
//! on a host that holds both versions.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keyhole_kv::Backend;
use keyhole_kv_embedded::EmbeddedKv;
use keyhole_store::{KeySource, SecretStore, StoreError};

struct Hosts {
    _data: tempfile::TempDir,
    keys: tempfile::TempDir,
    backend: Arc<dyn Backend>,
}

impl Hosts {
    fn new() -> Hosts {
        let data = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        SecretStore::init_key_file(&keys.path().join("a.key")).unwrap();
        let backend = EmbeddedKv::open(data.path()).unwrap().into_backend();
        Hosts {
            _data: data,
            keys,
            backend,
        }
    }

    fn key(&self, host: &str) -> PathBuf {
        self.keys.path().join(format!("{host}.key"))
    }

    /// Copies host `from`'s key file over host `to`'s, as an operator
    /// distributing it would (mode 0600 kept).
    fn copy_key(&self, from: &str, to: &str) {
        let (from, to) = (self.key(from), self.key(to));
        let tmp = to.with_extension("tmp");
        std::fs::copy(&from, &tmp).unwrap();
        std::fs::rename(&tmp, &to).unwrap();
    }

    fn open(&self, host: &str) -> SecretStore {
        SecretStore::open_on(self.backend.clone(), KeySource::File(self.key(host))).unwrap()
    }
}

fn versions(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix('v')?.split_once(' ')?.0.parse().ok())
        .collect()
}

fn read(store: &SecretStore, scope: &keyhole_store::Scope, name: &str) -> String {
    store.get_secret(scope, name).unwrap().expose().to_owned()
}

#[test]
fn a_prepared_master_key_is_rolled_out_host_by_host() {
    let h = Hosts::new();
    h.copy_key("a", "b");
    h.copy_key("a", "before");
    let a = h.open("a");
    let b = h.open("b");
    a.create_environment("prod").unwrap();
    a.create_space("team-a", "prod").unwrap();
    a.set_secret(&env("prod"), "DB", &val("db-1")).unwrap();
    b.set_secret(&space("team-a"), "DB", &val("db-a")).unwrap();

    // Prepare on a: a's file gains v2, b's does not; nothing switches.
    let prepared = a.prepare_kek().unwrap();
    assert!(prepared.prepared_only);
    assert_eq!(
        (prepared.previous_version, prepared.new_version),
        (Some(1), 2)
    );
    assert_eq!(versions(&h.key("a")), [1, 2]);
    assert_eq!(versions(&h.key("b")), [1]);
    assert_eq!(a.prepare_kek().unwrap().new_version, 2, "prepared once");
    // New data keys are still wrapped under v1, even by a store opened
    // with the prepared file: b, which lacks v2, reads them.
    let reopened = h.open("a");
    reopened.create_environment("staging").unwrap();
    reopened
        .set_secret(&env("staging"), "DB", &val("db-s"))
        .unwrap();
    assert!(
        b.wait_for(reopened.revision(), Duration::from_secs(5))
            .unwrap()
    );
    assert_eq!(read(&b, &env("staging"), "DB"), "db-s");

    // b cannot switch before it holds v2, and says what to do.
    let err = b.rotate_kek().unwrap_err();
    assert!(matches!(err, StoreError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains("v2 was prepared"), "{err}");

    // The operator copies a's file to b; b switches (a rotation on any
    // host does), with no restart.
    h.copy_key("a", "b");
    let report = b.rotate_kek().unwrap();
    assert!(!report.prepared_only);
    assert_eq!((report.previous_version, report.new_version), (Some(1), 2));
    assert_eq!(report.retired_versions, [1]);
    assert_eq!(report.records_rewritten, 3, "prod, team-a and staging DEKs");
    assert_eq!(versions(&h.key("b")), [2]);

    // a still runs with v1 and v2 in its file, reads everything, and
    // writes under v2 (a new scope's DEK) which b reads.
    assert!(a.wait_for(b.revision(), Duration::from_secs(5)).unwrap());
    for store in [&a, &b] {
        assert_eq!(read(store, &env("prod"), "DB"), "db-1");
        assert_eq!(read(store, &space("team-a"), "DB"), "db-a");
        assert_eq!(read(store, &env("staging"), "DB"), "db-s");
    }
    a.create_environment("dev").unwrap();
    a.set_secret(&env("dev"), "DB", &val("db-d")).unwrap();
    assert!(b.wait_for(a.revision(), Duration::from_secs(5)).unwrap());
    assert_eq!(read(&b, &env("dev"), "DB"), "db-d");

    // Fresh opens: with either new file every value opens; a copy of the
    // key file from before the rotation no longer opens the store.
    assert!(h.open("before").is_sealed());
    for host in ["a", "b"] {
        let fresh = h.open(host);
        assert_eq!(read(&fresh, &env("dev"), "DB"), "db-d");
        assert_eq!(read(&fresh, &space("team-a"), "DB"), "db-a");
    }
}

/// A version claimed but held by no key file (the host that prepared it
/// lost its file) does not block rotation for good: preparing again claims
/// a newer one, and the rotation retires the orphan.
#[test]
fn a_prepared_version_nobody_holds_is_passed_over() {
    let h = Hosts::new();
    h.copy_key("a", "b");
    let a = h.open("a");
    let b = h.open("b");
    a.create_environment("prod").unwrap();
    a.set_secret(&env("prod"), "DB", &val("db-1")).unwrap();
    assert_eq!(a.prepare_kek().unwrap().new_version, 2);
    // a's file is lost (restored from before the prepare).
    h.copy_key("b", "a");
    assert!(matches!(b.rotate_kek(), Err(StoreError::KeyFile { .. })));
    let prepared = b.prepare_kek().unwrap();
    assert_eq!(prepared.new_version, 3);
    assert_eq!(versions(&h.key("b")), [1, 3]);
    let report = b.rotate_kek().unwrap();
    assert_eq!(report.new_version, 3);
    assert_eq!(report.retired_versions, [1, 2]);
    assert_eq!(read(&b, &env("prod"), "DB"), "db-1");
}
