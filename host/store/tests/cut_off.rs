//! A host cut off from a network backend (NATS) does not serve what it
//! cached: another host may have changed it meanwhile. Host B reaches the
//! nats-server through a proxy the test cuts; host A stays connected and
//! replaces a value B has cached. While cut off, B's read fails rather than
//! return the old value; once B is back, it reads the new one at once,
//! whether or not its watch has delivered the change yet.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use keyhole_kv::{Backend, Bucket};
use keyhole_kv_nats::test_server::{CutProxy, TestServer, available};
use keyhole_kv_nats::{NatsConfig, NatsKv};
use keyhole_store::{KeySource, SecretStore};

fn connect(url: String) -> Arc<dyn Backend> {
    Arc::new(
        NatsKv::connect(NatsConfig {
            url,
            namespace: "kh".into(),
            replicas: 1,
        })
        .expect("connect to nats-server"),
    )
}

/// Waits (at most 30 s) until `probe`'s backend is `live` or not.
fn until_live(probe: &dyn Bucket, live: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.health().live != live {
        assert!(Instant::now() < deadline, "still live = {}", !live);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_host_cut_off_from_nats_does_not_serve_what_it_cached() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    let proxy = CutProxy::new(&server);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    SecretStore::init_key_file(&key).unwrap();
    let a = SecretStore::open_on(connect(server.url()), KeySource::File(key.clone())).unwrap();
    let b_backend = connect(proxy.url());
    let probe = b_backend.bucket("probe").unwrap();
    let b = SecretStore::open_on(b_backend, KeySource::File(key)).unwrap();
    a.create_environment("prod").unwrap();
    a.set_secret(&env("prod"), "K", &val("one")).unwrap();
    assert!(b.wait_for(a.revision(), Duration::from_secs(10)).unwrap());
    for _ in 0..3 {
        assert_eq!(b.get_secret(&env("prod"), "K").unwrap().expose(), "one");
    }
    let before = probe.health().breaks;

    proxy.cut();
    until_live(&*probe, false);
    assert_eq!(probe.health().breaks, before + 1);
    a.set_secret(&env("prod"), "K", &val("two")).unwrap();
    let read = b.get_secret(&env("prod"), "K");
    assert!(
        read.is_err(),
        "served {:?} while cut off",
        read.map(|v| v.expose().to_owned())
    );
    let resolved = b.resolve("prod", None, "K");
    assert!(resolved.is_err(), "resolved while cut off");

    proxy.restore();
    until_live(&*probe, true);
    assert_eq!(b.get_secret(&env("prod"), "K").unwrap().expose(), "two");
    assert_eq!(b.resolve("prod", None, "K").unwrap().value.expose(), "two");
}
