//! `keyhole emit TOPIC --env ENV --batch FILE`: a file of payloads, one
//! event per line, through `POST /v1/events/batch`, on the data directory
//! and through a running daemon; a bad line sends nothing.

mod common;

use common::*;
use keyhole_tests::EXAMPLE_RUST_LISTENER;

const VALUE: &str = "xoxb-batch-planted-value-5be1d";

#[test]
fn a_file_of_payloads_runs_one_event_per_line() {
    let k = Install::new();
    let token = token_from(&k.ok(&["init"]));
    let mut seen = k.scopes("prod", &[]);
    seen += &k.scopes("dev", &[]);
    let out = k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        &format!("{VALUE}\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    for env in ["prod", "dev"] {
        let name = format!("hello-{env}");
        k.ok(&[
            "deploy",
            EXAMPLE_RUST_LISTENER,
            "--name",
            &name,
            "--env",
            env,
        ]);
    }
    let file = k.dir.path().join("events.ndjson");
    std::fs::write(
        &file,
        "{\"action\":\"a\"}\n\n{\"action\":\"b\"}\n  {\"n\":3}  \n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // On the data directory: three events, blank lines skipped.
    let out = k.ok(&["emit", "action:triggered", "--env", "prod", "--batch", file]);
    assert!(
        out.contains("3 events on action:triggered (env prod): 3 runs: ok 3"),
        "{out}"
    );
    seen += &out;
    let runs = k.ok(&["runs", "--listener", "hello-prod"]);
    assert_eq!(runs.matches(" ok ").count(), 3, "{runs}");

    // A failing guest is printed, and is not a failure of `emit`.
    let out = k.ok(&["emit", "x", "--env", "dev", "--batch", file]);
    assert_eq!(out.matches("hello-dev guest_error").count(), 3, "{out}");
    assert!(out.contains("set SLACK_TOKEN first"), "{out}");
    assert!(out.contains("3 runs: guest_error 3"), "{out}");

    // A file with a bad line: its answer (nothing of the file is sent).
    let refused = |file: &str, text: String| {
        let path = k.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let args = ["emit", "action:triggered", "--env", "prod", "--batch"];
        let out = k.run(&[&args[..], &[path.to_str().unwrap()]].concat());
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("line 2") && out.stderr.contains("nothing was sent"),
            "{out:?}"
        );
        out
    };
    // A line that is not JSON is named.
    refused("bad.ndjson", "{\"ok\":1}\nnot json\n".into());
    // A line the daemon would refuse (a payload over 1 MiB) is caught
    // before any batch is sent too (it was sent, and refused after the
    // batches before it had run).
    let huge = format!("{{\"ok\":1}}\n{{\"x\":\"{}\"}}\n", "x".repeat(1 << 20));
    let out = refused("big.ndjson", huge);
    assert!(out.stderr.contains("larger than"), "{out:?}");
    let runs = k.ok(&["runs", "--listener", "hello-prod"]);
    assert_eq!(
        runs.matches(" ok ").count(),
        3,
        "the good line did not run: {runs}"
    );
    // --payload and --batch are one or the other.
    let out = k.run(&[
        "emit",
        "t",
        "--env",
        "prod",
        "--payload",
        "{}",
        "--batch",
        file,
    ]);
    assert_eq!(out.code, 2, "{out:?}");

    // Through a daemon, from standard input: the same.
    let server = Server::start(&k, &token, &[]);
    let out = k.run_stdin(
        &["emit", "action:triggered", "--env", "prod", "--batch", "-"],
        "{}\n{}\n",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("2 events on action:triggered (env prod): 2 runs: ok 2"),
        "{out:?}"
    );
    seen += &out.stdout;
    seen += &out.stderr;
    assert!(server.terminate().success());
    assert!(!seen.contains(VALUE), "a secret value was printed: {seen}");
}
