//! Injected secrets (`deploy --inject`): the listener uses a credential it
//! cannot read. Real guest, real loopback servers that echo every header
//! and the body back, and a grep of everything the run left.

use keyhole_audit::{AuditQuery, Entry, ReadOutcome};
use keyhole_runtime::{DeploySpec, Injection, Outcome, RunRecord, RuntimeError};
use keyhole_store::Scope;
use keyhole_tests::*;
use serde_json::{Value, json};

const PLANTED: &str = "xoxb-INJECTED-planted-7f3a9c";
const PLANTED_TEAM: &str = "xoxb-INJECTED-team-a-51d2";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn text(hex: &Value) -> String {
    String::from_utf8(unhex(hex.as_str().expect("hex string"))).expect("utf-8")
}

/// The prober in `prod`, with `SLACK_TOKEN` injected into requests to
/// `injected` (which is on no allow-list: the injection allows it) and
/// `others` allowed plainly.
fn spec(injected: &StubServer, others: &[&StubServer]) -> DeploySpec {
    let mut spec = DeploySpec::new("prober", "prod");
    spec.allow_http = others.iter().map(|s| s.origin()).collect();
    spec.inject = vec![
        Injection::parse(&format!(
            "SLACK_TOKEN@{}/Authorization: Bearer {{}}",
            injected.origin()
        ))
        .expect("an injection"),
    ];
    spec
}

fn harness() -> Harness {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.scopes("staging", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", PLANTED);
    h.set(Scope::Space("team-a".into()), "SLACK_TOKEN", PLANTED_TEAM);
    h.set(
        Scope::Environment("staging".into()),
        "SLACK_TOKEN",
        "staging-v",
    );
    h
}

/// The run, and what the guest returned (everything it saw, hex-encoded).
fn probe(h: &Harness, space: Option<&str>, payload: Value) -> (RunRecord, Value) {
    let run = h.run_of("prober", "probe", "prod", space, &payload.to_string());
    let Outcome::Ok { value } = &run.outcome else {
        panic!("the prober failed: {:?}", run.outcome)
    };
    let seen = serde_json::from_str(value).expect("the prober returns JSON");
    (run, seen)
}

/// Every byte the guest saw, decoded: header values, bodies, values read.
fn everything_seen(seen: &Value) -> Vec<u8> {
    let mut all = Vec::new();
    for r in seen["responses"].as_array().unwrap() {
        for kv in r["headers"].as_array().into_iter().flatten() {
            all.extend(kv[0].as_str().unwrap().as_bytes());
            all.extend(unhex(kv[1].as_str().unwrap()));
        }
        all.extend(r["body"].as_str().map(unhex).unwrap_or_default());
        all.extend(r["error"].as_str().unwrap_or_default().as_bytes());
    }
    for read in seen["reads"].as_array().unwrap() {
        let result = read["result"].as_str().unwrap();
        all.extend(
            result
                .strip_prefix("ok:")
                .map_or(result.as_bytes().to_vec(), unhex),
        );
    }
    all
}

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a Value> {
    response["headers"]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == name)
        .map(|kv| &kv[1])
}

/// Every audit entry of `event_id`'s reads: (name, outcome, injected into).
fn reads(h: &Harness, event_id: &str) -> Vec<(String, ReadOutcome, Option<String>)> {
    crate::audit::secret_reads(h, event_id)
        .into_iter()
        .filter_map(|e| match e {
            Entry::SecretRead {
                name,
                outcome,
                injected,
                ..
            } => Some((
                name,
                outcome,
                injected.map(|i| format!("{} {}", i.origin, i.header)),
            )),
            _ => None,
        })
        .collect()
}

/// Acceptance: the injected origin receives the value in place of the
/// guest's header; the guest sees none of it in the echo (headers, body
/// streamed in 5-byte chunks), cannot read it with `get-secret`, and a
/// second allowed origin never gets it; the audit log says where it went;
/// the run record and the data directory hold no value.
#[test]
pub fn injection_prober() {
    let slack = StubServer::start(200, "{}");
    let other = StubServer::start(200, "{}");
    let h = harness();
    h.deploy(INJECTION_PROBER, spec(&slack, &[&other]));
    let guest_auth = json!(["authorization", "Bearer guest-own"]);
    let payload = json!({
        "requests": [
            {"url": format!("{}/echo?chunk=5", slack.origin()), "method": "POST",
             "headers": [guest_auth, ["accept-encoding", "gzip"]], "body": "hello"},
            {"url": format!("{}/echo", other.origin()), "headers": [guest_auth]},
        ],
        "read": [{"name": "SLACK_TOKEN"}, {"name": "SLACK_TOKEN", "env": "prod"},
                 {"name": "SLACK_TOKEN", "env": "staging"}],
    });
    let (run, seen) = probe(&h, None, payload.clone());

    // The injected origin got the value, instead of the guest's header,
    // and was asked for no encoding.
    let got = slack.received();
    assert_eq!(got.len(), 1);
    let auths: Vec<_> = got[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(auths.len(), 1, "the guest's header is replaced");
    assert_eq!(auths[0].1, format!("Bearer {PLANTED}"));
    assert_eq!(got[0].header("accept-encoding"), Some("identity"));
    assert_eq!(got[0].body, "hello");
    // The other origin got the guest's header, and nothing of the value.
    let got = other.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("authorization"), Some("Bearer guest-own"));
    assert!(got[0].headers.iter().all(|(_, v)| !v.contains(PLANTED)));

    // The guest's view: the echo, scrubbed everywhere it held the value.
    let echo = &seen["responses"][0];
    assert_eq!(echo["status"], 200, "{echo}");
    let body = text(&echo["body"]);
    assert!(
        body.contains("authorization: Bearer [redacted:SLACK_TOKEN]\n"),
        "{body}"
    );
    assert!(body.ends_with("\n\nhello"), "{body}");
    let echoed = header(echo, "echo-authorization").expect("echoed header");
    assert_eq!(text(echoed), "Bearer [redacted:SLACK_TOKEN]");
    assert!(header(echo, "content-length").is_none());
    let plain = text(&seen["responses"][1]["body"]);
    assert!(
        plain.contains("authorization: Bearer guest-own\n"),
        "{plain}"
    );
    let denied: Vec<_> = seen["reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["access-denied"; 3], "like any other denial");
    let all = everything_seen(&seen);
    assert!(!contains(&all, PLANTED), "the guest saw the value");
    assert!(
        !contains(&all, &PLANTED[..PLANTED.len() - 1]),
        "or most of it"
    );

    // The record names the injection per call, and no read.
    assert_eq!(run.http.len(), 2);
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"]);
    assert!(run.http[1].injected.is_empty());
    assert!(run.secrets_read.is_empty());
    // The denials are the operator's to see: one note, however many calls.
    assert_eq!(
        run.notes,
        [
            "get-secret SLACK_TOKEN: access-denied (secret injected into the listener's \
          requests (deploy --inject), never handed to it)"
        ]
    );
    // The audit log: the injected read with where it went, then three
    // denials shaped like any other.
    let origin = format!("{} authorization", slack.origin());
    let ok = (
        "SLACK_TOKEN".to_owned(),
        ReadOutcome::Ok,
        Some(origin.clone()),
    );
    let deny = ("SLACK_TOKEN".to_owned(), ReadOutcome::AccessDenied, None);
    assert_eq!(
        reads(&h, &run.event_id),
        [ok.clone(), deny.clone(), deny.clone(), deny]
    );

    // A space event injects the space's override.
    let (_, seen) = probe(&h, Some("team-a"), payload);
    assert_eq!(
        slack.received()[1].header("authorization"),
        Some(format!("Bearer {PLANTED_TEAM}").as_str())
    );
    assert!(!contains(&everything_seen(&seen), PLANTED_TEAM));

    h.runtime.flush().unwrap();
    let data = all_bytes(&h.data_dir());
    for value in [PLANTED, PLANTED_TEAM] {
        assert!(!contains(&data, value), "{value} in the data directory");
    }
}

/// The host follows no redirect: the injected origin's 302 goes back to
/// the guest, and the guest's own follow-up to another allowed origin is a
/// new request, which does not carry the value.
#[test]
fn a_redirect_from_the_injected_origin_does_not_carry_the_value() {
    let slack = StubServer::start(200, "{}");
    let other = StubServer::start(200, "{}");
    let h = harness();
    h.deploy(INJECTION_PROBER, spec(&slack, &[&other]));
    let away = format!("{}/redirect?to={}/echo", slack.origin(), other.origin());

    let (_, seen) = probe(&h, None, json!({"requests": [{"url": away}], "read": []}));
    assert_eq!(seen["responses"][0]["status"], 302);
    assert!(other.received().is_empty(), "the host followed a redirect");

    let (run, seen) = probe(
        &h,
        None,
        json!({"requests": [{"url": away, "follow": 1}], "read": []}),
    );
    let hops: Vec<_> = seen["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(hops, [302, 200]);
    let got = slack.received();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|r| r.header("authorization") == Some(format!("Bearer {PLANTED}").as_str()))
    );
    let followed = other.received();
    assert_eq!(followed.len(), 1);
    assert!(followed[0].header("authorization").is_none());
    assert!(
        followed[0]
            .headers
            .iter()
            .all(|(_, v)| !v.contains(PLANTED))
    );
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"]);
    assert!(run.http[1].injected.is_empty());
    assert!(!contains(&everything_seen(&seen), PLANTED));
}

/// A response that comes back encoded, though the request asked for
/// identity, could hide an echo from the scrubber: it is refused.
#[test]
fn an_encoded_answer_to_a_request_carrying_a_value_is_refused() {
    let slack = StubServer::start(200, "{}");
    let h = harness();
    h.deploy(INJECTION_PROBER, spec(&slack, &[]));
    let payload = json!({"requests": [{"url": format!("{}/encoded", slack.origin())}], "read": []});
    let (run, seen) = probe(&h, None, payload);
    let error = seen["responses"][0]["error"].as_str().expect("an error");
    assert!(error.contains("HttpResponseContentCoding"), "{error}");
    assert_eq!(slack.received().len(), 1, "the request went out");
    let why = run.http[0].error.as_deref().unwrap();
    assert!(why.contains("Content-Encoding"), "{why}");
    assert!(!contains(&everything_seen(&seen), PLANTED));
}

/// Without a value to inject the request does not go out (it would go
/// unauthenticated): the guest gets the policy's denial, the record says
/// why, the audit log has the failed read.
#[test]
fn a_secret_that_is_not_set_stops_the_request() {
    let slack = StubServer::start(200, "{}");
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.deploy(INJECTION_PROBER, spec(&slack, &[]));
    let payload = json!({"requests": [{"url": format!("{}/echo", slack.origin())}], "read": []});
    let (run, seen) = probe(&h, None, payload);
    let error = seen["responses"][0]["error"].as_str().unwrap();
    assert!(error.contains("HttpRequestDenied"), "{error}");
    assert!(slack.received().is_empty());
    assert_eq!(
        run.http[0].error.as_deref(),
        Some("injected secret SLACK_TOKEN is not set for this event's scope")
    );
    let into = Some(format!("{} authorization", slack.origin()));
    assert_eq!(
        reads(&h, &run.event_id),
        [("SLACK_TOKEN".to_owned(), ReadOutcome::NotFound, into)]
    );
}

/// Injections are checked at deploy, in the user's terms, and a deployment
/// with them is stored (as JSON) and back after a restart.
#[test]
fn injections_are_checked_at_deploy_and_survive_a_restart() {
    let slack = StubServer::start(200, "{}");
    let h = harness();
    let mut bad = spec(&slack, &[]);
    bad.inject[0].template = "Bearer".into();
    match h.runtime.deploy(bad, &wasm(INJECTION_PROBER)) {
        Err(RuntimeError::InvalidSpec(why)) => assert!(why.contains("exactly once"), "{why}"),
        other => panic!("expected an invalid spec, got {other:?}"),
    }
    let mut twice = spec(&slack, &[]);
    twice.inject.push(twice.inject[0].clone());
    assert!(matches!(
        h.runtime.deploy(twice, &wasm(INJECTION_PROBER)),
        Err(RuntimeError::InvalidSpec(_))
    ));
    let deployed = h.deploy(INJECTION_PROBER, spec(&slack, &[]));
    let h = h.restart();
    assert_eq!(h.runtime.deployments(), [deployed]);
    let payload = json!({"requests": [{"url": format!("{}/echo", slack.origin())}], "read": []});
    let (run, _) = probe(&h, None, payload);
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"]);
    assert_eq!(
        slack.received()[0].header("authorization"),
        Some(format!("Bearer {PLANTED}").as_str())
    );
}

/// An injection is a grant like the others, bound to the module it was
/// given to: other code redeployed under the name gets it only by keeping
/// the grants (`deploy_keeping_grants`), and stating grants of its own
/// drops it.
#[test]
fn an_injection_is_a_grant_bound_to_the_module() {
    let slack = StubServer::start(200, "{}");
    let other = StubServer::start(200, "{}");
    let h = harness();
    let a = h.deploy(INJECTION_PROBER, spec(&slack, &[]));
    assert!(a.spec.has_grants() && a.grants_bound());
    let call = json!({"url": format!("{}/echo", slack.origin())}).to_string();

    // B (other code) keeping A's grants: the injection holds for B.
    let kept = h
        .runtime
        .deploy_keeping_grants(DeploySpec::new("prober", "prod"), &wasm(HTTP_CALLER), &a)
        .expect("kept");
    let b = kept.deployment;
    assert_ne!(b.module_hash, a.module_hash, "different code");
    assert_eq!(
        (b.grants_sha256.as_str(), &b.spec.inject),
        (b.module_hash.as_str(), &a.spec.inject)
    );
    let run = h.run_of("prober", "t", "prod", None, &call);
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"], "{:?}", run.outcome);
    assert_eq!(
        slack.received()[0].header("authorization"),
        Some(format!("Bearer {PLANTED}").as_str())
    );

    // B stating grants of its own, without the injection: none.
    let mut own = DeploySpec::new("prober", "prod");
    own.allow_http = vec![other.origin()];
    let b = h.deploy(HTTP_CALLER, own);
    assert!(b.spec.inject.is_empty());
    let run = h.run_of("prober", "t", "prod", None, &call);
    assert!(run.http[0].injected.is_empty());
    assert_eq!(
        run.http[0].error.as_deref(),
        Some("destination not on the allow-list")
    );
    assert_eq!(slack.received().len(), 1, "nothing more reached the origin");
}

/// A secret bound to topics is injected only on events whose topic
/// matches: on another the request does not go out, and the audit entry
/// names the rule.
#[test]
fn a_topic_bound_secret_is_injected_only_on_its_topics() {
    let slack = StubServer::start(200, "{}");
    let h = harness();
    h.store()
        .set_secret_with_topics(
            &Scope::Environment("prod".into()),
            "SLACK_TOKEN",
            &keyhole_store::SecretValue::new(PLANTED.into()),
            Some(&["action:*".to_owned()]),
        )
        .expect("bound");
    h.deploy(INJECTION_PROBER, spec(&slack, &[]));
    let payload = json!({"requests": [{"url": format!("{}/echo", slack.origin())}], "read": []});

    let run = h.run_of("prober", "action:go", "prod", None, &payload.to_string());
    assert_eq!(run.http[0].injected, ["SLACK_TOKEN"], "{:?}", run.outcome);
    assert_eq!(slack.received().len(), 1);

    let run = h.run_of("prober", "other", "prod", None, &payload.to_string());
    assert_eq!(
        run.http[0].error.as_deref(),
        Some("injected secret SLACK_TOKEN is bound to other topics than this event's")
    );
    assert_eq!(slack.received().len(), 1, "the request did not go out");
    let audit = h.runtime.audit().expect("audited");
    let query = AuditQuery {
        limit: 10,
        ..Default::default()
    };
    let reasons: Vec<_> = audit
        .query(&query)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::SecretRead {
                event_id, reason, ..
            } if event_id == run.event_id => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Some("secret bound to other topics".to_owned())]);
}
