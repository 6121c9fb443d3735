//! Cluster mode, first part: two `keyhole serve --cluster` hosts on one
//! nats-server (Debian's, on a random loopback port) share environments,
//! sealed secrets, tokens, deployments and modules. A secret set through
//! host A is read by a run on host B; a listener deployed through A runs on
//! B, whose disk never saw its upload; a token made on A works on B; an
//! undeploy on A reaches B. An event through B naming the revision of a
//! write through A reads that write. What NATS stores holds no secret
//! value in clear. Events are queued (202) and run by any host.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Http, Install, Server};
use keyhole_kv_nats::test_server::{TestServer, available};
use keyhole_tests::{SECRET_READER, fnv, wasm};
use serde_json::{Value, json};

const V1: &str = "kh-cluster-value-one-5d1c";
const V2: &str = "kh-cluster-value-two-9e4a";

fn host(k: &Install, nats: &TestServer, token: &str) -> Server {
    common::cluster_host(k, &nats.url(), token, &[], true)
}

/// What `reader`'s run read for API_KEY, of an event queued through
/// `h`, optionally once the running host has seen `min_revision`; "no run"
/// if no run of it is recorded within 5 s.
fn read_through(h: &Http, min_revision: Option<u64>) -> String {
    read_within(h, min_revision, Duration::from_secs(5))
}

/// [`read_through`], waiting at most `limit` for the run.
fn read_within(h: &Http, min_revision: Option<u64>, limit: Duration) -> String {
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod", "minRevision": min_revision,
                "payload": {"reads": [{"name": "API_KEY"}]}}),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["queued"], true);
    let id = r.json()["eventId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let runs = h.get(&format!("/v1/runs?eventId={id}")).json();
        if let Some(run) = runs["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["listener"] == "reader"))
        {
            let value = run["outcome"]["value"].as_str().unwrap_or_default();
            let v: Value = serde_json::from_str(value).unwrap_or_default();
            return v["results"][0]["fnv"]
                .as_str()
                .unwrap_or("no value")
                .to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    "no run".into()
}

/// Polls `f` (every 50 ms, at most 20 s) until it returns `want`.
fn eventually<T: PartialEq + std::fmt::Debug>(what: &str, want: T, mut f: impl FnMut() -> T) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = f();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_hosts_share_state_through_nats() {
    if !available() {
        return;
    }
    let nats = TestServer::start();
    let (a, token) = common::cluster_init(&nats.url());
    // Host B: its own data directory, the same master key, no init.
    let b = common::cluster_member(&a);

    let host_a = host(&a, &nats, &token);
    let host_b = host(&b, &nats, &token);
    let (ha, hb) = (host_a.http(), host_b.http());

    assert_eq!(
        ha.post_json("/v1/environments", &json!({"id": "prod"}))
            .status,
        201
    );
    let set = |value: &str| {
        let r = ha.post_json(
            "/v1/secrets",
            &json!({"name": "API_KEY", "value": value, "environmentId": "prod"}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["revision"].as_u64().expect("a write's revision")
    };
    set(V1);
    let r = ha.deploy(
        &json!({"name": "reader", "environmentId": "prod", "topics": ["t"]}),
        &wasm(SECRET_READER),
    );
    assert_eq!(r.status, 201, "{r:?}");
    // An event sent through A right after A answered the deploy runs the
    // listener on whichever host takes it: the event carries A's view of
    // the deployments, and B's worker waits until B has followed as far.
    // (Within 20 s: a host that took it while still compiling the module
    // may hand it back once, after a 1 s pause.)
    let within = Duration::from_secs(20);
    assert_eq!(
        read_within(&ha, None, within),
        fnv(V1),
        "the deploy is not missed"
    );

    // B sees the environment at once (the store reads NATS) and the
    // listener once its follower has compiled the shared module.
    let envs = hb.get("/v1/environments").json();
    assert_eq!(envs[0]["id"], "prod", "{envs}");
    eventually("B has the listener", 200, || {
        hb.get("/v1/listeners/reader").status
    });
    assert_eq!(read_through(&hb, None), fnv(V1), "B's run reads A's value");

    // A new value through A: an event through B that names the write's
    // revision reads it on the first try (read-your-writes across hosts).
    let revision = set(V2);
    assert_eq!(read_through(&hb, Some(revision)), fnv(V2));
    // A revision no write has reached (B asks NATS for the newest): not
    // a write's answer, refused at once rather than queued to wait.
    let started = Instant::now();
    let ahead = hb.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod", "minRevision": revision + 1_000_000}),
    );
    assert_eq!(
        (ahead.status, ahead.json()["code"].as_str()),
        (400, Some("invalid")),
        "{ahead:?}"
    );
    assert!(ahead.body.contains("ahead of every write"), "{ahead:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "not waited for");

    // A token made on A works on B.
    let ci = ha.create_token(&json!({"name": "ci", "role": "auditor"}));
    eventually("B accepts A's token", 200, || {
        hb.with_token(&ci).get("/v1/runs").status
    });

    // An undeploy on A reaches B.
    assert_eq!(ha.delete("/v1/listeners/reader").status, 204);
    eventually("B drops the listener", 404, || {
        hb.get("/v1/listeners/reader").status
    });
    assert_eq!(read_through(&hb, None), "no run");

    // Each host's audit chain is its own and verifies, also after a
    // restart of the host; every host's chain is also in the cluster's
    // copy, where either host verifies it and reads it.
    let r = hb.post_json(
        "/v1/secrets",
        &json!({"name": "SET_ON_B", "value": V1, "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let name = |k: &Install| {
        std::fs::read_to_string(k.data.join("host-name"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let mut names = [name(&a), name(&b)];
    assert_ne!(names[0], names[1]);
    let on_b = format!("/v1/audit?host={}&limit=10000", names[1]);
    names.sort();
    for h in [&ha, &hb] {
        let v = h.get("/v1/audit/verify").json();
        assert_eq!(v["ok"], true, "{v}");
        let hosts = v["hosts"].as_array().unwrap();
        let seen: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
        assert_eq!(seen, names, "{v}");
        for host in hosts {
            assert_eq!(host["ok"], true, "{v}");
            assert!(host["entries"].as_u64().unwrap() > 0, "{v}");
        }
    }
    let page = ha.get(&on_b).json();
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "admin"
                && e["action"] == "secret.set"
                && e["target"].as_str().unwrap().contains("SET_ON_B")),
        "A reads B's chain: {page}"
    );
    assert_eq!(page["host"], name(&b).as_str());
    drop(host_b);
    let host_b = host(&b, &nats, &token);
    let v = host_b.http().get("/v1/audit/verify").json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2, "{v}");

    // NATS holds sealed records only.
    drop((host_a, host_b));
    let mut files = vec![nats.store_dir()];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            checked += 1;
            for v in [V1, V2] {
                assert!(
                    !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                    "{} holds a value in clear",
                    p.display()
                );
            }
        }
    }
    assert!(checked > 0, "NATS wrote files");
}

/// A host whose settings differ from what the cluster's streams were made
/// with refuses to start, naming the difference, rather than run with
/// other semantics.
#[test]
fn a_host_refuses_streams_that_differ_from_what_it_needs() {
    if !available() {
        return;
    }
    let nats = TestServer::start();
    let (a, token) = common::cluster_init(&nats.url());
    let cluster = |k: &Install| {
        let mut c = k.cmd();
        c.env("KEYHOLE_CLUSTER", nats.url());
        c
    };
    // The first host makes the queue with a 3 s ack wait.
    drop(common::cluster_host(
        &a,
        &nats.url(),
        &token,
        &["--cluster-ack-wait", "3s"],
        false,
    ));
    let b = common::cluster_member(&a);
    let bounded = |mut c: std::process::Command| {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the host did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Another ack wait: the queue's consumer differs.
    let mut c = cluster(&b);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cluster-ack-wait",
        "30s",
    ]);
    let (ok, err) = bounded(c);
    assert!(!ok);
    assert!(err.contains("ack_wait is 3s, keyhole needs 30s"), "{err}");
    // Three replicas asked of streams made with one.
    let mut c = cluster(&b);
    c.args([
        "--cluster-replicas",
        "3",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (ok, err) = bounded(c);
    assert!(!ok);
    assert!(err.contains("num_replicas is 1, keyhole needs 3"), "{err}");
}

/// Key rotations while events run on both hosts: data-key rotations through
/// A, and a master key rotation rolled out host by host (A prepares v2 in
/// its own key file, the operator copies that file to B, B switches). No
/// run misses its value, and every value opens afterwards on both hosts.
#[test]
fn key_rotations_across_hosts_strand_no_run() {
    if !available() {
        return;
    }
    let nats = TestServer::start();
    let (a, token) = common::cluster_init(&nats.url());
    let b = common::cluster_member(&a);
    let host_a = host(&a, &nats, &token);
    let host_b = host(&b, &nats, &token);
    let (ha, hb) = (host_a.http(), host_b.http());
    assert_eq!(
        ha.post_json("/v1/environments", &json!({"id": "prod"}))
            .status,
        201
    );
    let r = ha.post_json(
        "/v1/secrets",
        &json!({"name": "API_KEY", "value": V1, "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200);
    let r = ha.deploy(
        &json!({"name": "reader", "environmentId": "prod", "topics": ["t"]}),
        &wasm(SECRET_READER),
    );
    assert_eq!(r.status, 201, "{r:?}");
    eventually("B has the listener", 200, || {
        hb.get("/v1/listeners/reader").status
    });

    let mut events = Vec::new();
    for i in 0..30 {
        if i % 3 == 0 {
            let r = ha.post_json("/v1/keys/rotate", &json!({"scope": "env:prod"}));
            assert_eq!(r.status, 200, "{r:?}");
        }
        if i == 10 {
            let r = ha.post_json("/v1/keys/rotate", &json!({"prepare": true}));
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(
                (r.json()["prepared"].clone(), r.json()["newVersion"].clone()),
                (json!(true), json!(2))
            );
            // Before B holds v2 it cannot switch, and nothing changed.
            let r = hb.post_json("/v1/keys/rotate", &json!({}));
            assert_eq!(r.status, 503, "{r:?}");
            let error = r.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains("master key v2 was prepared"), "{error}");
            // The operator replaces B's key file (atomically) with A's.
            let tmp = b.key.with_extension("new");
            std::fs::copy(&a.key, &tmp).unwrap();
            std::fs::rename(&tmp, &b.key).unwrap();
        }
        if i == 20 {
            let r = hb.post_json("/v1/keys/rotate", &json!({}));
            assert_eq!(r.status, 200, "{r:?}");
            let j = r.json();
            assert_eq!(
                (j["newVersion"].clone(), j["retiredVersions"].clone()),
                (json!(2), json!([1]))
            );
        }
        let via = if i % 2 == 0 { &hb } else { &ha };
        let r = via.post_json(
            "/v1/events",
            &json!({"topic": "t", "environmentId": "prod",
                    "payload": {"reads": [{"name": "API_KEY"}]}}),
        );
        assert_eq!(r.status, 202, "{r:?}");
        events.push(r.json()["eventId"].as_str().unwrap().to_owned());
    }
    eventually("every run recorded", 30, || {
        common::all_runs(&hb, "environmentId=prod").len()
    });
    for run in common::all_runs(&hb, "environmentId=prod") {
        assert!(events.iter().any(|e| run["eventId"] == e.as_str()), "{run}");
        assert_eq!(run["outcome"]["kind"], "ok", "{run}");
        let v: Value = serde_json::from_str(run["outcome"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(v["results"][0]["fnv"], fnv(V1).as_str(), "{run}");
    }
    // Afterwards the value opens through both hosts, and both key files
    // hold v2 (A's still v1 too, until the operator copies B's back).
    for h in [&ha, &hb] {
        assert_eq!(read_through(h, None), fnv(V1));
    }
    let versions = |k: &Install| -> Vec<String> {
        std::fs::read_to_string(&k.key)
            .unwrap()
            .lines()
            .filter_map(|l| Some(l.split_once(' ')?.0.to_owned()))
            .collect()
    };
    assert_eq!(versions(&a), ["v1", "v2"]);
    assert_eq!(versions(&b), ["v2"]);
}
