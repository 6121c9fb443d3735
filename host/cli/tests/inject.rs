//! `deploy --inject` as a user drives it, through a running daemon: the
//! spec is checked before upload, survives the API's JSON, and every view
//! (deploy, listeners list and show, runs, audit tail) names the injection and
//! never the value.

mod common;

use common::*;
use keyhole_tests::{EXAMPLE_SLACK_NOTIFIER, StubServer};

const VALUE: &str = "xoxb-cli-injected-planted-5e2b";

#[test]
fn deploy_inject_through_the_daemon() {
    let k = Install::new();
    let token = k.init();
    let mut seen = k.scopes("prod", &[]);
    let out = k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        &format!("{VALUE}\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let server = Server::start(&k, &token, &[]);
    let slack = StubServer::start(200, r#"{"ok":true}"#);
    let inject = format!("SLACK_TOKEN@{}/Authorization: Bearer {{}}", slack.origin());
    let base = format!("slack_api_base={}", slack.origin());
    let deploy = |name: &str, inject: &str| {
        k.run(&[
            "deploy",
            EXAMPLE_SLACK_NOTIFIER,
            "--name",
            name,
            "--env",
            "prod",
            "--inject",
            inject,
            "--setting",
            "slack_token_injected=true",
            "--setting",
            &base,
        ])
    };

    // A mistake is a usage error in the user's terms, before any upload.
    let bad = deploy(
        "bad",
        &format!("SLACK_TOKEN@{}/Authorization: Bearer", slack.origin()),
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("exactly once"), "{bad:?}");

    // An injection is a grant: --keep-grants carries it, never beside it.
    let both = k.run(&[
        "deploy",
        EXAMPLE_SLACK_NOTIFIER,
        "--name",
        "notifier",
        "--env",
        "prod",
        "--keep-grants",
        "--inject",
        &inject,
    ]);
    assert_eq!(both.code, 2, "{both:?}");
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");

    let out = deploy("notifier", &inject);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "injects SLACK_TOKEN into Authorization of requests to {}",
            slack.origin()
        )),
        "{out:?}"
    );
    seen += &out.stdout;
    for verb in [
        &["listeners", "list"][..],
        &["listeners", "show", "notifier"],
    ] {
        let show = k.ok(verb);
        assert!(show.contains(&format!("inject:     {inject}")), "{show}");
        seen += &show;
    }

    let emitted = k.ok(&[
        "emit",
        "action:triggered",
        "--env",
        "prod",
        "--payload",
        r#"{"action":"notify-team","text":"hi"}"#,
    ]);
    seen += &emitted;
    let got = slack.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );

    let runs = k.ok(&["runs"]);
    assert!(runs.contains("(injected SLACK_TOKEN)"), "{runs}");
    seen += &runs;
    let json = k.ok(&["runs", "--json"]);
    let records: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        records[0]["http"][0]["injected"],
        serde_json::json!(["SLACK_TOKEN"]),
        "{json}"
    );
    assert!(
        records[0]["secrets_read"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{json}"
    );
    seen += &json;
    let audit = k.ok(&["audit", "tail", "--limit", "100"]);
    assert!(
        audit.contains(&format!("injected into {} authorization", slack.origin())),
        "{audit}"
    );
    seen += &audit;
    assert!(!seen.contains(VALUE), "the value reached the CLI's output");
    assert!(server.terminate().success());
}
