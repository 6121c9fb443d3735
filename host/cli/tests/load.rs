//! The daemon under load: 10,000 `POST /v1/events` from 32 concurrent
//! keep-alive clients, with secret writes interleaved; then SIGTERM, a clean
//! exit, and a restart on the same data directory that finds every
//! acknowledged write, the deployment and all run records.
//!
//! Its own test binary: it is the heavy one.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use keyhole_tests::{PURE_READER, fnv};
use serde_json::json;

const CLIENTS: usize = 32;
const EVENTS: usize = 10_000;
const WRITES: usize = 200;
const TOKEN_VALUE: &str = "load-test-token-value-0c7d";

#[test]
fn ten_thousand_events_from_32_clients_then_sigterm_and_restart() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let out = k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        TOKEN_VALUE,
    );
    assert_eq!(out.code, 0, "{out:?}");
    k.ok(&[
        "deploy",
        PURE_READER,
        "--name",
        "pure",
        "--env",
        "prod",
        "--topic",
        "tick",
    ]);

    let server = Server::start(&k, &token, &[]);
    let expected = fnv(TOKEN_VALUE);
    let next = AtomicUsize::new(0);
    let acknowledged = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let h = server.http();
                let body = json!({"topic": "tick", "environmentId": "prod", "payload": {"n": 1}});
                while next.fetch_add(1, Ordering::Relaxed) < EVENTS {
                    let r = h.post_json("/v1/events", &body);
                    assert_eq!(r.status, 200, "{r:?}");
                    let v = r.json();
                    let runs = v["runs"].as_array().unwrap();
                    assert_eq!(runs.len(), 1, "{v}");
                    assert_eq!(runs[0]["outcome"]["kind"], "ok", "{v}");
                    assert_eq!(runs[0]["outcome"]["value"], expected.as_str());
                }
            });
        }
        // Secret writes while the events run; each acknowledged one must
        // survive the restart.
        s.spawn(|| {
            let h = server.http();
            for i in 0..WRITES {
                let name = format!("WRITE_{i}");
                let r = h.post_json(
                    "/v1/secrets",
                    &json!({"name": name, "value": format!("v{i}"), "environmentId": "prod"}),
                );
                assert_eq!(r.status, 200, "{r:?}");
                acknowledged.lock().unwrap().push(name);
            }
        });
    });
    let elapsed = start.elapsed();
    eprintln!(
        "{EVENTS} events from {CLIENTS} clients in {elapsed:.2?} ({:.0}/s)",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    let metrics = server.http().get("/metrics").body;
    assert!(
        metrics.contains(&format!("keyhole_runs_total{{outcome=\"ok\"}} {EVENTS}")),
        "{metrics}"
    );

    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "serve must exit 0 on SIGTERM");
    assert!(!k.data.join("serve.json").exists());

    // Restart on the same data directory.
    let server = Server::start(&k, &token, &[]);
    let h = server.http();
    let secrets = h.get("/v1/secrets?environmentId=prod").json()["data"].clone();
    let names: Vec<&str> = secrets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), WRITES);
    for name in acknowledged
        .iter()
        .map(String::as_str)
        .chain(["SLACK_TOKEN"])
    {
        assert!(names.contains(&name), "{name} lost across restart");
    }
    assert_eq!(h.get("/v1/listeners").json()[0]["name"], "pure");
    let runs = all_runs(&h, "listener=pure");
    assert_eq!(runs.len(), EVENTS, "run records lost");
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "tick", "environmentId": "prod"}),
    );
    assert_eq!(r.json()["runs"][0]["outcome"]["value"], expected.as_str());
    assert_eq!(server.terminate().code(), Some(0));
}
