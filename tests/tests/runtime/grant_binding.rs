//! Least privilege from real guests, part two: grants hold for the module
//! sha256 they were given to. The same listener is built twice
//! (`SECRET_READER`, `PURE_SECRET_READER`: two modules, two hashes), so a
//! redeploy under the same name is "different code".

use keyhole_audit::ReadOutcome;
use keyhole_runtime::{DeploySpec, Deployment, Grants, RuntimeError, module_sha256};
use keyhole_store::Scope;
use keyhole_tests::*;
use serde_json::json;

use crate::least_privilege::{audited, reads, results};

fn granted_reader() -> DeploySpec {
    let mut spec = DeploySpec::new("reader", "prod");
    spec.grants = Grants {
        environments: vec!["staging".into()],
        spaces: vec![],
    };
    spec.secrets = vec!["DB_*".into()];
    spec
}

fn harness() -> Harness {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.scopes("staging", &[]);
    h.set(Scope::Environment("staging".into()), "DB_URL", "staging-db");
    h
}

fn across() -> String {
    reads(json!([{ "name": "DB_URL", "environment": "staging" }]))
}

/// Acceptance: module A, granted staging, reads across; module B
/// redeployed under the same name without grants is denied; B redeployed
/// keeping the grants reads across, and the grants are bound to B.
#[test]
pub fn pure_secret_reader() {
    let h = harness();
    let a = h.deploy(SECRET_READER, granted_reader());
    assert_eq!(a.grants_sha256, a.module_hash, "bound to A");
    let run = h.run_of("reader", "t", "prod", None, &across());
    assert_eq!(results(&run)[0]["fnv"], fnv("staging-db"));

    // B, stating no grants: it has none.
    let b = h.deploy(PURE_SECRET_READER, DeploySpec::new("reader", "prod"));
    assert_ne!(b.module_hash, a.module_hash, "different code");
    assert!(!b.spec.has_grants());
    let run = h.run_of("reader", "t", "prod", None, &across());
    assert_eq!(results(&run)[0]["error"], "access-denied");
    assert_eq!(
        audited(&h, &run.event_id)[0],
        (
            "DB_URL".into(),
            ReadOutcome::AccessDenied,
            Some("scope not granted".into())
        )
    );

    // A again, then B keeping A's grants: re-bound to B.
    let a = h.deploy(SECRET_READER, granted_reader());
    let b = h
        .runtime
        .deploy_keeping_grants(
            DeploySpec::new("reader", "prod"),
            &wasm(PURE_SECRET_READER),
            &a,
        )
        .unwrap()
        .deployment;
    assert_eq!(b.spec.grants, a.spec.grants);
    assert_eq!(b.spec.secrets, ["DB_*"]);
    assert_eq!(b.grants_sha256, module_sha256(&wasm(PURE_SECRET_READER)));
    assert_eq!(b.grants_sha256, b.module_hash);
    let run = h.run_of("reader", "t", "prod", None, &across());
    assert_eq!(results(&run)[0]["fnv"], fnv("staging-db"));
    // The kept declared secrets still restrict it.
    let other = reads(json!([{ "name": "OTHER", "environment": "staging" }]));
    let run = h.run_of("reader", "t", "prod", None, &other);
    assert_eq!(results(&run)[0]["error"], "access-denied");

    // And across a restart.
    let h = h.restart();
    assert_eq!(h.runtime.deployment("reader").unwrap(), b);
    let run = h.run_of("reader", "t", "prod", None, &across());
    assert_eq!(results(&run)[0]["fnv"], fnv("staging-db"));
}

/// Keeping grants needs a spec that states none, and the previous
/// deployment the caller saw: if it was replaced meanwhile, nothing is
/// written.
#[test]
fn keeping_grants_keeps_exactly_those_seen() {
    let h = harness();
    let a = h.deploy(SECRET_READER, granted_reader());
    let module = wasm(PURE_SECRET_READER);
    let e = h
        .runtime
        .deploy_keeping_grants(granted_reader(), &module, &a)
        .unwrap_err();
    assert!(matches!(e, RuntimeError::InvalidSpec(_)), "{e:?}");
    let replaced = h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    let e = h
        .runtime
        .deploy_keeping_grants(DeploySpec::new("reader", "prod"), &module, &a)
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Changed(_)), "{e:?}");
    assert_eq!(h.runtime.deployment("reader").unwrap(), replaced);
}

/// Grants stored for another module than the one a deployment runs (here
/// by editing the stored record, as nothing keyhole does writes one) are
/// not applied: no extra scope, every run's notes say so, and a read they
/// would have allowed is denied with the reason in the audit entry. Its
/// declared secrets still restrict it.
#[test]
fn grants_given_to_another_module_are_not_applied() {
    let h = harness();
    h.deploy(SECRET_READER, granted_reader());
    {
        // The bucket handle goes before the restart, which opens the store.
        let bucket = h.store().backend().bucket("deployments").unwrap();
        let stored = bucket.get(b"reader").unwrap().unwrap();
        let mut record: Deployment = serde_json::from_slice(&stored.value).unwrap();
        record.grants_sha256 = "00".repeat(32);
        bucket
            .put(b"reader", &serde_json::to_vec(&record).unwrap())
            .unwrap();
    }
    let h = h.restart();
    let loaded = h.runtime.deployment("reader").unwrap();
    assert!(!loaded.grants_bound());

    let p = reads(json!([
        { "name": "DB_URL", "environment": "staging" },
        { "name": "DB_URL", "environment": "elsewhere" },
        { "name": "OTHER" },
    ]));
    let run = h.run_of("reader", "t", "prod", None, &p);
    let r = results(&run);
    assert_eq!(r[0]["error"], "access-denied");
    assert_eq!(r[1]["error"], "access-denied");
    assert_eq!(
        r[2]["error"], "access-denied",
        "declared secrets still hold"
    );
    let entries = audited(&h, &run.event_id);
    let reasons: Vec<_> = entries.iter().map(|e| e.2.as_deref()).collect();
    assert_eq!(
        reasons,
        [
            Some("grant not bound to this module"),
            Some("scope not granted"),
            Some("name not declared by the deployment"),
        ]
    );
    let note = format!(
        "grants not applied: they were given to module sha256:{}, this is sha256:{}",
        "0".repeat(16),
        &loaded.module_hash[..16]
    );
    assert_eq!(run.notes[0], note, "{:?}", run.notes);
}
