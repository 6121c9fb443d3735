//! A cluster host's runtime (`Runtime::open_clustered`) on embedded
//! backends, one shared and one per host, some of whose buckets a test
//! breaks: a run record the shared bucket or the audit log cannot take is
//! the run's error (so the queue does not ack its event), and a deploy made
//! on another host that could not be applied here is applied once it can,
//! without holding back other names or running the older version; what a
//! host has not applied holds back only the events it would receive, and
//! a host that followed as far as an event's stamp has its deploys.
//! (Cluster mode on a real nats-server: `host/cli/tests/cluster*.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyhole_kv::Backend;
use keyhole_kv::breakable::BreakableBackend;
use keyhole_kv_embedded::EmbeddedKv;
use keyhole_runtime::{DeploySpec, Event, Runtime, RuntimeConfig, RuntimeError};
use keyhole_store::{KeySource, Scope, SecretStore};
use keyhole_tests::*;

use crate::lagging::Lagging;

/// A backend in `dir/path` whose buckets in `names` `broken` breaks.
fn breakable(dir: &Path, path: &str, names: &[&str], broken: &Arc<AtomicBool>) -> Arc<dyn Backend> {
    Arc::new(BreakableBackend {
        inner: Arc::new(EmbeddedKv::open(&dir.join(path)).unwrap()),
        names: names.iter().map(|n| n.to_string()).collect(),
        broken: broken.clone(),
    })
}

/// A host of the cluster on `shared`, its own backend and data in
/// `dir/NAME-host` and `dir/NAME-data`.
fn host(dir: &Path, name: &str, shared: Arc<dyn Backend>, own: Arc<dyn Backend>) -> Runtime {
    let store = SecretStore::open_on(shared, KeySource::File(dir.join("master.key"))).unwrap();
    Runtime::open_clustered(
        store,
        own,
        &dir.join(format!("{name}-data")),
        RuntimeConfig::default(),
    )
    .unwrap()
}

/// A fresh directory with the master key, and the cluster's shared
/// backend in it.
fn cluster_dir() -> (tempfile::TempDir, Arc<dyn Backend>) {
    let dir = tempfile::tempdir().unwrap();
    SecretStore::init_key_file(&dir.path().join("master.key")).unwrap();
    let shared = Arc::new(EmbeddedKv::open(&dir.path().join("shared")).unwrap());
    (dir, shared)
}

/// [`host`] with its own embedded backend in `dir/NAME-host`.
fn embedded_host(dir: &Path, name: &str, shared: Arc<dyn Backend>) -> Runtime {
    let own = Arc::new(EmbeddedKv::open(&dir.join(format!("{name}-host"))).unwrap());
    host(dir, name, shared, own)
}

/// One host: `broken` breaks the writes of the shared buckets in `shared`
/// and of the host's own buckets in `own`.
fn clustered(shared: &[&str], own: &[&str], broken: &Arc<AtomicBool>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    SecretStore::init_key_file(&dir.path().join("master.key")).unwrap();
    let shared = breakable(dir.path(), "shared", shared, broken);
    let own = breakable(dir.path(), "a-host", own, broken);
    let runtime = host(dir.path(), "a", shared, own);
    Harness { dir, runtime }
}

/// Hosts A and B of one cluster, on a shared backend in a new directory;
/// `broken` breaks B's `artifacts` bucket (B cannot store a compiled
/// artifact's digest, so it cannot apply a deploy).
struct Pair {
    _dir: tempfile::TempDir,
    shared: Arc<dyn Backend>,
    a: Runtime,
    b: Runtime,
}

fn pair(broken: &Arc<AtomicBool>) -> Pair {
    let (dir, shared) = cluster_dir();
    let own = |name: &str, names: &[&str]| breakable(dir.path(), name, names, broken);
    let a = host(dir.path(), "a", shared.clone(), own("a-host", &[]));
    let b = host(
        dir.path(),
        "b",
        shared.clone(),
        own("b-host", &["artifacts"]),
    );
    Pair {
        _dir: dir,
        shared,
        a,
        b,
    }
}

/// In cluster mode a run's record is one write to the shared bucket `runs`.
/// When that write fails the run is an error, not a record with id 0: the
/// queue then does not ack the event (`events_queue.rs`), and the event
/// delivered again runs the listener that has no record, once.
#[test]
fn a_run_whose_shared_record_is_not_written_is_an_error_and_runs_again() {
    let broken = Arc::new(AtomicBool::new(false));
    let h = clustered(&["runs"], &[], &broken);
    h.scopes("prod", &[]);
    h.deploy(PANICKER, DeploySpec::new("moody", "prod"));
    let event = Event::new("t", "prod", None)
        .with_id("ev_unrecorded")
        .with_payload(r#"{"mood":"calm"}"#);

    broken.store(true, Ordering::SeqCst);
    let err = h.runtime.emit_blocking(&event).unwrap_err();
    assert!(err.to_string().contains("refused the write"), "{err}");
    broken.store(false, Ordering::SeqCst);
    assert!(h.runtime.runs(None, 10).unwrap().is_empty());

    let again = h
        .runtime
        .emit_blocking(&event.clone().with_delivery(2))
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].outcome.label(), again[0].delivery), ("ok", 2));
    // Recorded now: a third delivery runs nothing.
    let third = h.runtime.emit_blocking(&event.with_delivery(3)).unwrap();
    assert!(third.is_empty(), "{third:?}");
    let runs = h.runtime.runs(None, 10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
}

/// A shared run record is written only once the run's audit entries are in
/// the host's audit log, as the default log's are: while the audit log
/// cannot write, a run that read a secret is an error and is not recorded;
/// once it heals, the event delivered again is recorded with its reads in
/// the audit log.
#[test]
fn a_shared_run_record_waits_for_its_audit_entries() {
    let broken = Arc::new(AtomicBool::new(false));
    let h = clustered(&[], &[keyhole_runtime::audit::HEADS_BUCKET], &broken);
    h.scopes("prod", &[]);
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-AUDIT-FIRST-7c1d",
    );
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    let payload = r#"{"reads":[{"name":"SLACK_TOKEN"}]}"#;
    let event = Event::new("t", "prod", None)
        .with_id("ev_audited")
        .with_payload(payload);

    broken.store(true, Ordering::SeqCst);
    let err = h.runtime.emit_blocking(&event).unwrap_err();
    assert!(matches!(err, RuntimeError::AuditUnavailable(_)), "{err:?}");
    assert!(h.runtime.runs(None, 10).unwrap().is_empty());

    // Healed (by itself, in the background); then delivered again.
    broken.store(false, Ordering::SeqCst);
    let audit = h.runtime.audit().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = audit.sync(Duration::from_secs(1)) {
        assert!(Instant::now() < deadline, "not healed: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The failed run's read may be in the log too (accepted before the
    // log saw its sink fail, written once healed): counted before.
    let failed_runs_reads = super::audit::secret_reads(&h, "ev_audited").len();
    let runs = h
        .runtime
        .emit_blocking(&event.clone().with_delivery(2))
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].secrets_read, ["SLACK_TOKEN"]);
    let reads = super::audit::secret_reads(&h, "ev_audited");
    assert_eq!(
        reads.len(),
        failed_runs_reads + 1,
        "the recorded run's read is audited"
    );
    assert_eq!(h.runtime.runs(None, 10).unwrap().len(), 1);
}

/// A deploy made on host A that host B fails to apply (B cannot store the
/// compiled artifact's digest) is applied on B once it can be, without
/// another change to the deployment: B keeps trying.
#[test]
fn a_deploy_another_host_could_not_apply_is_applied_once_it_can_be() {
    let broken = Arc::new(AtomicBool::new(false));
    let Pair { _dir, a, b, .. } = pair(&broken);
    broken.store(true, Ordering::SeqCst);
    a.store().create_environment("prod").unwrap();
    a.deploy(DeploySpec::new("moody", "prod"), &wasm(PANICKER))
        .unwrap();
    // B sees the change and fails to apply it, more than once.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(b.deployment("moody").is_none());

    assert!(b.deployments_behind(), "B says it is behind");

    broken.store(false, Ordering::SeqCst);
    until(|| b.deployment("moody").is_some(), "B applies the deploy");
    until(|| !b.deployments_behind(), "B is no longer behind");
    let event = Event::new("t", "prod", None).with_payload(r#"{"mood":"calm"}"#);
    let runs = b.emit_blocking(&event).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.label(), "ok");
}

/// Waits (at most 20 s) for `done`.
fn until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deployment record host B can never apply (one it cannot read, as a
/// newer host's might be) holds back no other name's changes: an undeploy
/// made on A after it is applied on B (before, B stopped at the first
/// failing name, in name order, and never reached it). And a listener
/// whose new record B cannot apply no longer runs its older version there.
#[test]
fn a_deployment_one_host_cannot_apply_holds_back_no_other() {
    let Pair { _dir, shared, a, b } = pair(&Arc::default());
    a.store().create_environment("prod").unwrap();
    for name in ["yyy", "zzz"] {
        a.deploy(DeploySpec::new(name, "prod"), &wasm(PANICKER))
            .unwrap();
    }
    until(
        || b.deployment("yyy").is_some() && b.deployment("zzz").is_some(),
        "B applies both deploys",
    );
    assert!(!b.deployments_behind());
    // Each change applied on B is counted (the queue hands back an event
    // whose run saw the count change); A applied none of its own.
    assert_eq!(b.followed_changes(), 2);
    assert_eq!(a.followed_changes(), 0);

    let records = shared.bucket("deployments").unwrap();
    records.put(b"aaa", b"a record of a newer kind").unwrap();
    a.undeploy("zzz").unwrap();
    until(|| b.deployment("zzz").is_none(), "B applies the undeploy");
    assert_eq!(b.followed_changes(), 3);

    records.put(b"yyy", b"a record of a newer kind").unwrap();
    until(
        || b.deployment("yyy").is_none(),
        "B stops running the older version",
    );
    assert!(b.deployments_behind(), "B says it is behind");
    let event = Event::new("t", "prod", None).with_payload(r#"{"mood":"calm"}"#);
    assert!(b.emit_blocking(&event).unwrap().is_empty());
}

/// Host B cannot apply A's deploy of a listener of `orders:*` in `prod`
/// (its artifacts cannot be written): only the events that listener would
/// receive may have missed it there (B's queue hands those back and
/// acknowledges the rest; before, B handed back every event it took until
/// each was dead-lettered). Giving up on one records a `failed` run for the
/// listener B never applied (before, only for those it had). A record B
/// cannot read at all may be any listener's: every event may miss it.
#[test]
fn an_unapplied_listener_holds_back_only_the_events_it_would_receive() {
    let broken = Arc::new(AtomicBool::new(false));
    let Pair { _dir, shared, a, b } = pair(&broken);
    for env in ["prod", "dev"] {
        a.store().create_environment(env).unwrap();
    }
    let orders = Event::new("orders:new", "prod", None).with_id("ev_orders");
    let billing = Event::new("billing:due", "prod", None);
    let elsewhere = Event::new("orders:new", "dev", None);
    for event in [&orders, &billing, &elsewhere] {
        assert!(!b.may_miss_listeners(event));
    }

    broken.store(true, Ordering::SeqCst);
    let mut spec = DeploySpec::new("orders", "prod");
    spec.topics = vec!["orders:*".into()];
    a.deploy(spec, &wasm(PANICKER)).unwrap();
    until(
        || b.deployments_behind() && b.deployments_applied() >= a.deployments_seen(),
        "B fails to apply the deploy",
    );
    assert!(b.deployment("orders").is_none());
    assert!(b.may_miss_listeners(&orders));
    assert!(!b.may_miss_listeners(&billing), "another topic");
    assert!(!b.may_miss_listeners(&elsewhere), "another environment");

    let why = "not run: delivered too often";
    let failed = b.give_up(&orders.clone().with_delivery(5), why).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].listener, "orders");
    assert_eq!(failed[0].outcome.label(), "failed");
    assert!(b.give_up(&orders, why).unwrap().is_empty(), "recorded once");
    // Recorded (as another host's run would be): it misses nothing now.
    assert!(!b.may_miss_listeners(&orders));

    // A newer keyhole's record, with a field this one does not know: not
    // applied, but who it is and what it receives are read.
    let records = shared.bucket("deployments").unwrap();
    let newer = serde_json::json!({
        "spec": {"name": "newer", "environment": "dev", "space": null,
                 "topics": ["audit:*"], "quota": 3},
        "module_hash": "0".repeat(64), "deployed_at_ms": 1, "shiny": true,
    });
    let revision = records.put(b"newer", newer.to_string().as_bytes()).unwrap();
    until(
        || b.deployments_applied() >= revision,
        "B follows the newer record",
    );
    assert!(b.may_miss_listeners(&Event::new("audit:read", "dev", None)));
    assert!(!b.may_miss_listeners(&elsewhere), "not its topic");

    // A record not even that can be read of may be anyone's.
    let revision = records.put(b"zzz", b"a record of a newer kind").unwrap();
    until(
        || b.deployments_applied() >= revision,
        "B follows the unreadable record",
    );
    assert!(
        b.may_miss_listeners(&elsewhere),
        "an unreadable record holds back every event"
    );
}

/// An event's accepting host stamps it with the deployments revision it
/// has seen (`deployments_seen`, which counts its own deploys at once);
/// once another host has followed as far (`deployments_applied`), that
/// deploy is applied there, so a worker that waits for the stamp cannot
/// choose the event's listeners without it.
#[test]
fn a_host_that_followed_as_far_as_the_stamp_has_the_deploy() {
    let Pair { _dir, a, b, .. } = pair(&Arc::default());
    a.store().create_environment("prod").unwrap();
    let mut seen = a.deployments_seen();
    for name in ["first", "second", "third"] {
        a.deploy(DeploySpec::new(name, "prod"), &wasm(PANICKER))
            .unwrap();
        let stamp = a.deployments_seen();
        assert!(stamp > seen, "a deploy moves the stamp on at once");
        seen = stamp;
        until(
            || b.deployments_applied() >= stamp,
            "B follows as far as the stamp",
        );
        assert!(b.deployment(name).is_some(), "{name} is applied on B");
        assert!(!b.may_miss_listeners(&Event::new("t", "prod", None)));
    }
    a.undeploy("second").unwrap();
    let stamp = a.deployments_seen();
    until(
        || b.deployments_applied() >= stamp,
        "B follows the undeploy",
    );
    assert!(b.deployment("second").is_none());
}

/// Host B reads A's redeploy from a lagging replica (the record as it was
/// before): B stops running the older version, holds back the events, and
/// applies the new one once its reads catch up (before, B took the old
/// state for the new one: it kept running the older version, which may
/// hold grants since taken away, and was not behind).
#[test]
fn a_lagging_read_is_not_taken_for_the_change_watched() {
    let (dir, shared) = cluster_dir();
    let lagging = Lagging::over(shared.clone());
    let pinned = lagging.pinned.clone();
    let a = embedded_host(dir.path(), "a", shared.clone());
    let b = embedded_host(dir.path(), "b", Arc::new(lagging));
    a.store().create_environment("prod").unwrap();
    a.deploy(DeploySpec::new("moody", "prod"), &wasm(PANICKER))
        .unwrap();
    let stamp = a.deployments_seen();
    until(|| b.deployments_applied() >= stamp, "B applies the deploy");
    assert!(b.deployment("moody").is_some());

    let records = shared.bucket("deployments").unwrap();
    *pinned.lock().unwrap() = records.get(b"moody").unwrap();
    let mut spec = DeploySpec::new("moody", "prod");
    spec.topics = vec!["moods:*".into()];
    a.deploy(spec, &wasm(PANICKER)).unwrap();
    let stamp = a.deployments_seen();
    until(
        || b.deployments_applied() >= stamp,
        "B follows the redeploy",
    );
    assert!(b.deployment("moody").is_none(), "the older version stops");
    assert!(b.may_miss_listeners(&Event::new("t", "prod", None)));

    *pinned.lock().unwrap() = None;
    until(
        || {
            b.deployment("moody")
                .is_some_and(|d| d.spec.topics == ["moods:*"])
        },
        "B applies the redeploy once its reads catch up",
    );
    until(|| !b.deployments_behind(), "B is no longer behind");
}

/// A redeploy written while host B loads its deployments at open, after
/// B's scan has read the name, and then read from a lagging replica: B
/// follows it as any later change (the older version stops, and the new
/// one is applied once reads catch up). Before, B took it for history its
/// index was loaded after (the newest write was read after the load), so
/// the lagging read was taken for the state, and B ran the older version
/// for good.
#[test]
fn a_change_written_while_a_host_loads_is_followed() {
    let (dir, shared) = cluster_dir();
    let a = embedded_host(dir.path(), "a", shared.clone());
    a.store().create_environment("prod").unwrap();
    a.deploy(DeploySpec::new("moody", "prod"), &wasm(PANICKER))
        .unwrap();

    let lagging = Lagging::over(shared.clone());
    let pinned = lagging.pinned.clone();
    let records = shared.bucket("deployments").unwrap();
    let redeploy = {
        let (a, pinned) = (a.clone(), pinned.clone());
        move || {
            *pinned.lock().unwrap() = records.get(b"moody").unwrap();
            let mut spec = DeploySpec::new("moody", "prod");
            spec.topics = vec!["moods:*".into()];
            a.deploy(spec, &wasm(PANICKER)).unwrap();
        }
    };
    *lagging.after_scan.lock().unwrap() = Some(Box::new(redeploy));
    let b = embedded_host(dir.path(), "b", Arc::new(lagging));
    let stamp = a.deployments_seen();
    until(
        || b.deployments_applied() >= stamp,
        "B follows the redeploy",
    );
    assert!(b.deployment("moody").is_none(), "the older version stops");

    *pinned.lock().unwrap() = None;
    until(
        || {
            b.deployment("moody")
                .is_some_and(|d| d.spec.topics == ["moods:*"])
        },
        "B applies the redeploy once its reads catch up",
    );
}
