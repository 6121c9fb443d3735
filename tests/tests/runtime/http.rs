//! Opt-in outbound HTTP against a real loopback server.

use keyhole_runtime::{DeploySpec, Outcome};
use keyhole_store::Scope;
use keyhole_tests::*;

fn caller(name: &str, allow: &[String]) -> DeploySpec {
    let mut spec = DeploySpec::new(name, "prod");
    spec.allow_http = allow.to_vec();
    spec
}

/// Acceptance: an allowed origin is reached; a host not on the list gets an
/// error and its server receives nothing; requests are recorded without
/// headers.
#[test]
pub fn http_caller() {
    let allowed = StubServer::start(200, "{}");
    let other = StubServer::start(200, "{}");
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.deploy(HTTP_CALLER, caller("caller", &[allowed.origin()]));

    let run = h.run_of(
        "caller",
        "x",
        "prod",
        None,
        &format!(r#"{{"url":"{}/ping"}}"#, allowed.origin()),
    );
    assert_eq!(
        run.outcome,
        Outcome::Ok {
            value: "status 200".into()
        }
    );
    assert_eq!(allowed.received().len(), 1);
    assert_eq!(allowed.received()[0].path, "/ping");
    assert_eq!(run.http.len(), 1);
    assert_eq!(
        (
            run.http[0].method.as_str(),
            run.http[0].path.as_str(),
            run.http[0].status
        ),
        ("GET", "/ping", Some(200))
    );

    let run = h.run_of(
        "caller",
        "x",
        "prod",
        None,
        &format!(r#"{{"url":"{}/steal"}}"#, other.origin()),
    );
    match &run.outcome {
        Outcome::GuestError { message } => {
            assert!(message.contains("HttpRequestDenied"), "{message}")
        }
        o => panic!("expected a denial, got {o:?}"),
    }
    assert!(
        other.received().is_empty(),
        "the other server must see nothing"
    );
    assert_eq!(
        run.http[0].error.as_deref(),
        Some("destination not on the allow-list")
    );

    // Same host, other scheme: denied too.
    let https = format!(r#"{{"url":"https://127.0.0.1:{}/x"}}"#, allowed.port);
    let run = h.run_of("caller", "x", "prod", None, &https);
    assert!(
        matches!(run.outcome, Outcome::GuestError { .. }),
        "{:?}",
        run.outcome
    );
    assert_eq!(allowed.received().len(), 1);
}

/// A secret a listener sends to an allowed origin (here in the URL path)
/// reaches it, but the run record's HTTP call is scrubbed like its output.
#[test]
fn a_secret_in_a_request_path_is_scrubbed_from_the_record() {
    let server = StubServer::start(200, "{}");
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(
        Scope::Environment("prod".into()),
        "API_KEY",
        "k3y-planted-in-url",
    );
    h.deploy(HTTP_CALLER, caller("caller", &[server.origin()]));
    let payload = format!(
        r#"{{"url":"{}/v1/{{secret}}/x","secret":"API_KEY"}}"#,
        server.origin()
    );
    let run = h.run_of("caller", "x", "prod", None, &payload);
    assert_eq!(
        run.outcome,
        Outcome::Ok {
            value: "status 200".into()
        }
    );
    assert_eq!(server.received()[0].path, "/v1/k3y-planted-in-url/x");
    assert_eq!(run.http[0].path, "/v1/[redacted:API_KEY]/x");
    assert_eq!(run.secrets_read, vec!["API_KEY".to_owned()]);
    h.runtime.flush().unwrap();
    assert!(!contains(&all_bytes(&h.data_dir()), "k3y-planted-in-url"));
}

#[test]
fn http_request_count_is_limited() {
    let server = StubServer::start(200, "{}");
    let h = Harness::new();
    h.scopes("prod", &[]);
    let mut spec = caller("caller", &[server.origin()]);
    spec.limits.max_http_requests = 0;
    h.deploy(HTTP_CALLER, spec);
    let run = h.run_of(
        "caller",
        "x",
        "prod",
        None,
        &format!(r#"{{"url":"{}/"}}"#, server.origin()),
    );
    assert!(matches!(run.outcome, Outcome::GuestError { .. }));
    assert_eq!(
        run.http[0].error.as_deref(),
        Some("per-run request limit reached")
    );
    assert!(server.received().is_empty());
}
