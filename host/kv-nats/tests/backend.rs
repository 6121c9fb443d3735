//! The NATS backend against the seam's conformance suite, on a real
//! nats-server (Debian's 2.9.10 in CI), plus what is NATS's own: two
//! connections (two hosts) see each other's writes and watches, a stream
//! that differs from what keyhole needs is refused by name, and
//! acknowledged writes survive a server restart, and erased history is gone
//! from the server's files.

use std::time::Duration;

use keyhole_kv::{Backend, Cas};
use keyhole_kv_nats::test_server::{TestServer, available};
use keyhole_kv_nats::{NatsConfig, NatsKv};

fn connect(server: &TestServer, namespace: &str) -> NatsKv {
    NatsKv::connect(NatsConfig {
        url: server.url(),
        namespace: namespace.into(),
        replicas: 1,
    })
    .expect("connect to nats-server")
}

#[test]
fn conformance() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    keyhole_kv::conformance::run_all(&connect(&server, "conf"));
}

#[test]
fn two_hosts_share_buckets_and_race_fairly() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    let (a, b) = (connect(&server, "kh"), connect(&server, "kh"));
    let (ba, bb) = (a.bucket("store").unwrap(), b.bucket("store").unwrap());
    let mut watch_b = bb.watch(0).unwrap();
    let r1 = ba.put(b"secret/one", b"sealed-1").unwrap();
    assert_eq!(
        bb.written().unwrap(),
        r1,
        "B knows A's write was made before B has watched it"
    );
    assert_eq!(
        bb.get(b"secret/one").unwrap().unwrap().revision,
        r1,
        "B reads A's write"
    );
    let c = watch_b
        .next_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("B's watch sees A's write");
    assert_eq!(c.revision(), r1);
    // Compare-and-set across hosts: one of two updates from the same
    // revision wins.
    let wa = ba.update(b"secret/one", b"from a", r1).unwrap();
    let wb = bb.update(b"secret/one", b"from b", r1).unwrap();
    assert_eq!(
        [wa, wb]
            .iter()
            .filter(|c| matches!(c, Cas::Written(_)))
            .count(),
        1,
        "{wa:?} {wb:?}"
    );
    // Keys of any bytes round-trip, in key order.
    for k in [&b"a.b*c>d e"[..], b"", b"\xff\x00"] {
        ba.put(k, k).unwrap();
    }
    let keys: Vec<Vec<u8>> = bb.scan(b"").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b""[..], b"a.b*c>d e", b"secret/one", b"\xff\x00"]);
    // Another namespace is another set of buckets.
    let other = connect(&server, "other").bucket("store").unwrap();
    assert!(other.get(b"secret/one").unwrap().is_none());
}

/// Makes a stream on `server` directly, as someone other than this keyhole
/// would have.
fn create_stream(server: &TestServer, config: async_nats::jetstream::stream::Config) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(config).await.unwrap();
    });
}

#[test]
fn a_stream_that_differs_from_what_keyhole_needs_is_refused_by_name() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    // Someone made the bucket's stream with one version per key.
    create_stream(
        &server,
        async_nats::jetstream::stream::Config {
            name: "KV_kh-store".into(),
            subjects: vec!["$KV.kh-store.>".into()],
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        },
    );
    let kv = connect(&server, "kh");
    let err = kv.bucket("store").err().expect("refused").to_string();
    assert!(err.contains("KV_kh-store"), "{err}");
    assert!(
        err.contains("max_msgs_per_subject (history) is 1, keyhole needs 8"),
        "{err}"
    );
    assert!(err.contains("allow_rollup_hdrs is false"), "{err}");
    // Other buckets still open.
    kv.bucket("tokens").unwrap();
}

#[test]
fn a_bucket_made_before_history_was_erased_is_used_and_erases_by_purging() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    // The stream as keyhole made it before: message deletes denied, which
    // JetStream never lets a stream take back.
    create_stream(
        &server,
        async_nats::jetstream::stream::Config {
            name: "KV_kh-conformance-erase".into(),
            subjects: vec!["$KV.kh-conformance-erase.>".into()],
            max_messages_per_subject: 8,
            max_bytes: -1,
            max_message_size: -1,
            max_messages: -1,
            num_replicas: 1,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        },
    );
    let kv = connect(&server, "kh");
    keyhole_kv::conformance::erasing_history(&kv);
}

#[test]
fn acknowledged_writes_survive_a_server_restart() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    let written: Vec<u64> = {
        let kv = connect(&server, "kh");
        let b = kv.bucket("store").unwrap();
        (0..200u32)
            .map(|i| b.put(format!("k{i}").as_bytes(), &i.to_le_bytes()).unwrap())
            .collect()
    };
    let server = server.restart();
    let kv = connect(&server, "kh");
    let b = kv.bucket("store").unwrap();
    for (i, r) in written.iter().enumerate() {
        let e = b.get(format!("k{i}").as_bytes()).unwrap().expect("kept");
        assert_eq!(
            (e.value.as_slice(), e.revision),
            (&(i as u32).to_le_bytes()[..], *r)
        );
    }
}

fn on_disk(server: &TestServer, needle: &[u8]) -> Vec<std::path::PathBuf> {
    keyhole_kv::conformance::files_containing(&server.store_dir(), needle)
}

#[test]
fn erased_history_leaves_no_bytes_in_the_servers_files() {
    if !available() {
        return;
    }
    let server = TestServer::start();
    let kv = connect(&server, "kh");
    let b = kv.bucket("store").unwrap();
    b.put(b"k", b"PLANTED-old-one").unwrap();
    b.put(b"k", b"PLANTED-old-two").unwrap();
    b.put(b"k", b"the-current-value").unwrap();
    b.put(b"gone", b"PLANTED-deleted").unwrap();
    let r = b.get(b"gone").unwrap().unwrap().revision;
    assert!(b.delete(b"gone", r).unwrap().written().is_some());
    // The server writes its files asynchronously: wait (bounded) until the
    // newest value is there, so the check below looks at real files.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while on_disk(&server, b"PLANTED-deleted").is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing on disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !on_disk(&server, b"PLANTED-old-one").is_empty(),
        "kept as history"
    );

    b.erase_history(b"k").unwrap();
    b.erase_history(b"gone").unwrap();
    for planted in ["PLANTED-old-one", "PLANTED-old-two", "PLANTED-deleted"] {
        let found = on_disk(&server, planted.as_bytes());
        assert!(found.is_empty(), "{planted} still in {found:?}");
    }
    assert_eq!(b.get(b"k").unwrap().unwrap().value, b"the-current-value");
    assert!(b.get(b"gone").unwrap().is_none());
    // And after a restart, which rebuilds the server's indexes from its files.
    let server = server.restart();
    let kv = connect(&server, "kh");
    let b = kv.bucket("store").unwrap();
    assert_eq!(b.get(b"k").unwrap().unwrap().value, b"the-current-value");
    assert!(b.get(b"gone").unwrap().is_none());
    assert!(on_disk(&server, b"PLANTED-old-two").is_empty());
}
