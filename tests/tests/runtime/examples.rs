//! The guest examples under guest-examples/, built and run as a user would.

use keyhole_runtime::{DeploySpec, Outcome};
use keyhole_store::Scope;
use keyhole_tests::*;

/// The notifier deployed to `prod`, allowed to reach only `slack`.
fn notifier_spec(slack: &StubServer) -> DeploySpec {
    let mut spec = DeploySpec::new("notifier", "prod");
    spec.topics = vec!["action:*".into()];
    spec.allow_http = vec![slack.origin()];
    spec.settings = vec![
        ("slack_api_base".into(), slack.origin()),
        ("slack_channel".into(), "#deploys".into()),
    ];
    spec
}

/// The JSON text a run returned as `ok`.
#[cfg(any(python_guest, js_guest))]
fn ok_json(run: &keyhole_runtime::RunRecord) -> serde_json::Value {
    let Outcome::Ok { value } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    serde_json::from_str(value).expect("the example returns JSON")
}

#[test]
pub fn example_rust_listener() {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-1234",
    );
    h.set(
        Scope::Space("team-a".into()),
        "SLACK_TOKEN",
        "xoxb-team-a-123456",
    );
    h.deploy(EXAMPLE_RUST_LISTENER, DeploySpec::new("hello", "prod"));
    let run = h.run_of("hello", "greet:now", "prod", Some("team-a"), "{}");
    assert_eq!(
        run.outcome,
        Outcome::Ok {
            value:
                "hello from prod/team-a: token has 18 characters (environment value present: true)"
                    .into()
        }
    );
    assert!(run.stdout.starts_with("handling ev_"), "{}", run.stdout);
}

/// Issue 5 acceptance: the notifier posts with exactly the right token for
/// each scope, picks up a rotated value, and never records the token.
#[test]
pub fn example_slack_notifier() {
    let slack = StubServer::start(200, r#"{"ok":true}"#);
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-PLANTED-env",
    );
    h.set(
        Scope::Space("team-a".into()),
        "SLACK_TOKEN",
        "xoxb-PLANTED-team-a",
    );
    h.deploy(EXAMPLE_SLACK_NOTIFIER, notifier_spec(&slack));

    let payload = r#"{"action":"notify-team","text":"Deploy finished"}"#;
    let env_run = h.run_of("notifier", "action:triggered", "prod", None, payload);
    let space_run = h.run_of(
        "notifier",
        "action:triggered",
        "prod",
        Some("team-a"),
        payload,
    );
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-PLANTED-rotated",
    );
    let rotated_run = h.run_of("notifier", "action:triggered", "prod", None, payload);
    for run in [&env_run, &space_run, &rotated_run] {
        assert_eq!(
            run.outcome,
            Outcome::Ok {
                value: "posted to #deploys".into()
            }
        );
        assert_eq!(run.http.len(), 1);
        assert_eq!(run.http[0].status, Some(200));
        assert_eq!(run.http[0].path, "/chat.postMessage");
    }

    let got = slack.received();
    assert_eq!(got.len(), 3, "one POST per event");
    let tokens: Vec<_> = got
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        tokens,
        [
            "Bearer xoxb-PLANTED-env",
            "Bearer xoxb-PLANTED-team-a",
            "Bearer xoxb-PLANTED-rotated"
        ]
    );
    for r in &got {
        assert_eq!(r.method, "POST");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"channel": "#deploys", "text": "Deploy finished"})
        );
    }

    // Ignored actions make no request; Slack errors become guest errors.
    let ignored = h.run_of(
        "notifier",
        "action:triggered",
        "prod",
        None,
        r#"{"action":"other"}"#,
    );
    assert_eq!(
        ignored.outcome,
        Outcome::Ok {
            value: "ignored action \"other\"".into()
        }
    );
    assert_eq!(slack.received().len(), 3);

    h.runtime.flush().unwrap();
    assert!(
        !contains(&all_bytes(&h.data_dir()), "xoxb-PLANTED"),
        "token reached the data directory"
    );
}

/// The notifier with its token injected by the host (`--inject`, setting
/// `slack_token_injected=true`): Slack gets the same header, the listener
/// never read the token, and the record says it was injected.
#[test]
fn example_slack_notifier_with_an_injected_token() {
    let slack = StubServer::start(200, r#"{"ok":true}"#);
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-PLANTED-injected",
    );
    let mut spec = notifier_spec(&slack);
    // The injection allows its own origin.
    spec.allow_http.clear();
    spec.inject = vec![
        keyhole_runtime::Injection::parse(&format!(
            "SLACK_TOKEN@{}/Authorization: Bearer {{}}",
            slack.origin()
        ))
        .unwrap(),
    ];
    spec.settings
        .push(("slack_token_injected".into(), "true".into()));
    h.deploy(EXAMPLE_SLACK_NOTIFIER, spec);
    let payload = r#"{"action":"notify-team","text":"Deploy finished"}"#;
    let run = h.run_of("notifier", "action:triggered", "prod", None, payload);
    assert_eq!(
        run.outcome,
        Outcome::Ok {
            value: "posted to #deploys".into()
        }
    );
    assert!(run.secrets_read.is_empty());
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"]);
    let got = slack.received();
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer xoxb-PLANTED-injected")
    );
    h.runtime.flush().unwrap();
    assert!(!contains(&all_bytes(&h.data_dir()), "xoxb-PLANTED"));
}

/// Slack saying no is a guest error, not a trap.
#[test]
fn slack_refusal_is_a_guest_error() {
    let slack = StubServer::start(200, r#"{"ok":false,"error":"invalid_auth"}"#);
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "xoxb-bad");
    let spec = notifier_spec(&slack);
    h.deploy(EXAMPLE_SLACK_NOTIFIER, spec);
    let run = h.run_of(
        "notifier",
        "action:triggered",
        "prod",
        None,
        r#"{"action":"notify-team","text":"x"}"#,
    );
    assert_eq!(
        run.outcome,
        Outcome::GuestError {
            message: "Slack refused the message: invalid_auth".into()
        }
    );
}

/// The Python example (componentize-py, `--stub-wasi`): same door, same
/// rules. Compiled out where componentize-py is missing; CI requires it.
#[cfg(python_guest)]
#[test]
pub fn example_python_listener() {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.scopes("staging", &[]);
    h.set(
        Scope::Space("team-a".into()),
        "SLACK_TOKEN",
        "xoxb-python-123",
    );
    let mut spec = DeploySpec::new("py", "prod");
    spec.limits.memory_bytes = 256 << 20;
    h.deploy(EXAMPLE_PYTHON_LISTENER, spec);
    let run = h.run_of(
        "py",
        "records:created",
        "prod",
        Some("team-a"),
        r#"{"id": 7}"#,
    );
    let v = ok_json(&run);
    assert_eq!(
        v,
        serde_json::json!({
            "language": "python", "topic": "records:created", "space": "team-a",
            "token_length": 15, "staging": "SecretError_AccessDenied", "payload_keys": ["id"],
        })
    );
    let missing = h.run_of("py", "x", "prod", None, "{}");
    assert_eq!(
        missing.outcome,
        Outcome::GuestError {
            message: "cannot read SLACK_TOKEN: SecretError_NotFound".into()
        }
    );
}

/// The JavaScript example (componentize-js, every WASI feature disabled):
/// same door, same rules. Compiled out where `npm ci` has not installed
/// componentize-js; CI requires it.
#[cfg(js_guest)]
#[test]
pub fn example_js_listener() {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.scopes("staging", &[]);
    h.set(
        Scope::Space("team-a".into()),
        "SLACK_TOKEN",
        "xoxb-js-12345",
    );
    h.set(
        Scope::Environment("staging".into()),
        "SLACK_TOKEN",
        "xoxb-staging",
    );
    h.deploy(EXAMPLE_JS_LISTENER, DeploySpec::new("js", "prod"));
    let run = h.run_of(
        "js",
        "records:created",
        "prod",
        Some("team-a"),
        r#"{"id": 7, "by": "ana"}"#,
    );
    let v = ok_json(&run);
    assert_eq!(
        v,
        serde_json::json!({
            "language": "javascript", "topic": "records:created", "space": "team-a",
            "token_length": 13, "staging": "access-denied", "payload_keys": ["by", "id"],
        })
    );
    // A thrown string is the export's `err`.
    let missing = h.run_of("js", "x", "prod", None, "{}");
    assert_eq!(
        missing.outcome,
        Outcome::GuestError {
            message: "cannot read SLACK_TOKEN: not-found".into()
        }
    );

    // With a grant the explicit staging scope is readable.
    let mut granted = DeploySpec::new("js-granted", "prod");
    granted.grants.environments = vec!["staging".into()];
    h.deploy(EXAMPLE_JS_LISTENER, granted);
    let run = h.run_of("js-granted", "x", "prod", Some("team-a"), "{}");
    let v = ok_json(&run);
    assert_eq!(v["staging"], "readable");
    assert_eq!(v["payload_keys"], serde_json::json!([]));
}

/// Outbound response bodies are capped per run: a larger answer becomes an
/// error for the guest (recorded as a guest error), not a trap or a hang.
#[test]
fn oversize_http_response_is_cut_off() {
    let slack = StubServer::start(
        200,
        r#"{"ok":true,"padding":"0123456789012345678901234567890123456789"}"#,
    );
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "xoxb-x");
    let mut spec = notifier_spec(&slack);
    spec.limits.max_http_response_bytes = 16;
    h.deploy(EXAMPLE_SLACK_NOTIFIER, spec);
    let run = h.run_of(
        "notifier",
        "action:triggered",
        "prod",
        None,
        r#"{"action":"notify-team","text":"x"}"#,
    );
    match &run.outcome {
        Outcome::GuestError { message } => {
            assert!(message.starts_with("reading response"), "{message}")
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert_eq!(slack.received().len(), 1);
}
