//! A data directory written by release 0.1 (`tests/fixtures/`, made with
//! the commands in its README) opens in this release: scopes, secrets
//! (after a KEK and a DEK rotation), the deployed listener, its run record
//! and the admin token all carry over, migrated on first open, and the
//! directory keeps working afterwards.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn unpack() -> (Install, String) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/release-0.1-data.tar.gz"
    );
    let status = Command::new("tar")
        .args(["xzf", fixture, "-C"])
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(status.success());
    let token = std::fs::read_to_string(dir.path().join("token.txt")).unwrap();
    let install = Install {
        data: dir.path().join("data"),
        key: dir.path().join("keys/master.key"),
        dir,
    };
    (install, token.trim().to_string())
}

fn json(k: &Install, args: &[&str]) -> Value {
    serde_json::from_str(&k.ok(args)).unwrap()
}

#[test]
fn a_release_0_1_data_directory_opens_and_keeps_working() {
    let (k, token) = unpack();

    // Scopes and secret metadata.
    assert!(k.ok(&["env", "list"]).contains("staging"));
    assert!(k.ok(&["space", "list"]).contains("team-a"));
    let listed = json(
        &k,
        &[
            "secrets", "list", "--env", "prod", "--space", "team-a", "--json",
        ],
    );
    let names: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["provenance"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("LATE", "environment"), ("SLACK_TOKEN", "space-override")]
    );

    // The listener, its earlier run, and values that still decrypt.
    let listeners = json(&k, &["listeners", "list", "--json"]);
    assert_eq!(listeners[0]["name"], "hello");
    assert!(
        listeners[0]["moduleHash"]
            .as_str()
            .unwrap()
            .starts_with("bc964dc93d510f9f")
    );
    let out = k.ok(&["emit", "greet:again", "--env", "prod", "--space", "team-a"]);
    assert!(out.contains("token has 23 characters"), "{out}");
    let out = k.ok(&["emit", "greet:again", "--env", "prod"]);
    assert!(out.contains("token has 20 characters"), "{out}");
    let runs = json(&k, &["runs", "--json"]);
    let ids: Vec<u64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [3, 2, 1],
        "the 0.1 run record is kept and ids continue"
    );

    // Keys rotate on, and the result opens again.
    let out = k.ok(&["keys", "rotate"]);
    assert!(out.contains("v2 -> v3"), "{out}");
    k.ok(&["keys", "rotate", "--scope", "env:staging"]);
    let out = k.ok(&["emit", "greet:again", "--env", "prod"]);
    assert!(out.contains("token has 20 characters"), "{out}");

    // The 0.1 admin token still opens the API.
    let server = Server::start(&k, &token, &[]);
    let envs = server.http().get("/v1/environments");
    assert_eq!(envs.status, 200, "{envs:?}");
    assert_eq!(envs.json().as_array().unwrap().len(), 2);
    let secrets = server.http().get("/v1/secrets?environmentId=staging");
    assert_eq!(secrets.json()["data"][0]["name"], "DB_PASSWORD");
    assert!(server.terminate().success());
}
