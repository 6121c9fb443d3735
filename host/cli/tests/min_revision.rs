//! `emit --min-revision` on one host, without a daemon: each command is a
//! new process, so the store reopens between the write and the event. A
//! revision a write printed runs at once (it was written before the store
//! opened, so it counts as applied); one no write has reached is refused
//! at once, in the user's terms, rather than waited for 10 s and failed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keyhole_tests::EXAMPLE_RUST_LISTENER;

#[test]
fn a_printed_revision_runs_after_a_reopen_and_one_ahead_is_refused() {
    let k = Install::new();
    k.init();
    k.scopes("prod", &[]);
    let set = k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        "xoxb-min-revision-7c2e\n",
    );
    assert_eq!(set.code, 0, "{set:?}");
    let revision: u64 = set
        .stdout
        .split_once("store revision ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no store revision printed: {set:?}"));
    k.ok(&[
        "deploy",
        EXAMPLE_RUST_LISTENER,
        "--name",
        "hello",
        "--env",
        "prod",
        "--topic",
        "t",
    ]);

    // `emit t --min-revision R`: what it printed, and how long it took.
    let emit_after = |r: u64| {
        let started = Instant::now();
        let out = k.run(&[
            "emit",
            "t",
            "--env",
            "prod",
            "--min-revision",
            &r.to_string(),
        ]);
        (out, started.elapsed())
    };

    let (ran, took) = emit_after(revision);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("1 run"), "{ran:?}");
    assert!(took < Duration::from_secs(5), "not waited for");

    // Far ahead: every reopen moves the store's revision on by up to a few
    // million (sled's id generator skips ahead on recovery), and all below
    // it counts as applied.
    let (ahead, took) = emit_after(revision + (1 << 50));
    assert_eq!(ahead.code, 2, "{ahead:?}");
    assert!(ahead.stderr.contains("ahead of every write"), "{ahead:?}");
    assert!(took < Duration::from_secs(5), "not waited for");
    let runs: serde_json::Value =
        serde_json::from_str(&k.ok(&["runs", "--json"])).expect("runs --json");
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(1),
        "nothing ran for the refused event: {runs}"
    );
}
