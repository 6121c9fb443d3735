//! kill -9 under load never leaves a recorded run whose secret reads are
//! missing from the audit log, and the log verifies after every crash.
//!
//! 20 rounds on one data directory: a daemon serves events that read a
//! secret and admin writes, from several clients at once, and is killed
//! with SIGKILL at a random moment; then the embedded CLI checks the log's
//! chain and matches every run record against the audit entries.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use keyhole_tests::SECRET_READER;
use serde_json::{Value, json};

const ROUNDS: usize = 20;

fn load(server: &Server, stop: Arc<AtomicBool>, admin: bool) -> std::thread::JoinHandle<()> {
    let http = server.http();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let body = if admin {
                json!({"name": format!("W{}", i % 16), "value": format!("written-{i}"), "environmentId": "prod"})
            } else {
                json!({"topic": "read", "environmentId": "prod",
                       "payload": {"reads": [{"name": "SLACK_TOKEN"}, {"name": "MISSING"}]}})
            };
            let path = if admin { "/v1/secrets" } else { "/v1/events" };
            // Killed mid-request: the client sees a failure and stops.
            if !http.try_post_json(path, &body) {
                return;
            }
            i += 1;
        }
    })
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn kill_9_under_load_leaves_every_recorded_read_in_a_verifiable_audit_log() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        "xoxb-crash-test",
    );
    k.ok(&["deploy", SECRET_READER, "--name", "reader", "--env", "prod"]);
    let mut checked_runs = 0;
    for round in 0..ROUNDS {
        let mut server = Server::start(&k, &token, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = [false, false, true]
            .into_iter()
            .map(|admin| load(&server, stop.clone(), admin))
            .collect();
        std::thread::sleep(Duration::from_millis(150 + (round as u64 * 37) % 400));
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let _ = std::fs::remove_file(k.data.join("serve.json"));

        let out = k.run(&["audit", "verify"]);
        assert_eq!(out.code, 0, "round {round}: {out:?}");
        let runs: Value =
            serde_json::from_str(&k.ok(&["runs", "--json", "--limit", "1000000"])).unwrap();
        let audit = json_lines(&k.ok(&[
            "audit",
            "tail",
            "--json",
            "--limit",
            "1000000",
            "--deployment",
            "reader",
        ]));
        let audited: HashSet<(String, String)> = audit
            .iter()
            .map(|e| {
                (
                    e["event_id"].as_str().unwrap().to_owned(),
                    e["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for run in runs.as_array().unwrap() {
            let event = run["eventId"].as_str().unwrap();
            for name in ["SLACK_TOKEN", "MISSING"] {
                assert!(
                    audited.contains(&(event.to_owned(), name.to_owned())),
                    "round {round}: run {} read {name} but the audit log lacks it",
                    run["id"]
                );
            }
        }
        checked_runs = runs.as_array().unwrap().len();
    }
    assert!(checked_runs > 0, "no run was ever recorded");
}
