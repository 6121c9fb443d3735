//! The keyhole side of the benchmark: a real store and runtime in a temp dir,
//! driven through the public API exactly as the daemon drives it.
//!
//! Every fixture is built from scratch (`SecretStore::init_key_file`,
//! `SecretStore::open`, an environment, a secret, `Runtime::open`, deploys),
//! so an event pays for everything a production event pays for: policy,
//! the backend read, AES-GCM decryption, scrubbing and the run record.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use keyhole_runtime::{DeploySpec, Event, Outcome, RunRecord, Runtime, RuntimeConfig};
use keyhole_store::{KeySource, Scope, SecretStore, SecretValue};
use tempfile::TempDir;

use crate::stats::Samples;
use crate::{ENVIRONMENT, SECRET_NAME, SECRET_VALUE, TOPIC};

/// A keyhole store and runtime with `listeners` deployments of one module.
pub struct Keyhole {
    pub runtime: Runtime,
    pub store: SecretStore,
    data: PathBuf,
    key: PathBuf,
    _dir: TempDir,
}

/// How long a restart took, and what it found.
pub struct Restart {
    pub store_open: Duration,
    pub runtime_open: Duration,
    pub deployments: usize,
    pub loaded_from_artifact: u64,
}

impl Keyhole {
    /// Fresh store (env `prod`, `SLACK_TOKEN` set) and runtime, with the
    /// module deployed under `listeners` names. Returns the fixture and the
    /// time the deploys took.
    pub fn new(module: &[u8], listeners: usize) -> Result<(Self, Duration)> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("master.key");
        let data = dir.path().join("data");
        let (store, runtime, deploy) = setup(&data, &key, module, listeners)?;
        let fixture = Keyhole {
            runtime,
            store,
            data,
            key,
            _dir: dir,
        };
        Ok((fixture, deploy))
    }

    /// Drops the runtime and store (releasing the data directory's lock) and opens both
    /// again, timing each step.
    pub fn restart(self) -> Result<(Self, Restart)> {
        let Keyhole {
            runtime,
            store,
            data,
            key,
            _dir,
        } = self;
        runtime.flush()?;
        drop(runtime);
        drop(store);
        let t = Instant::now();
        let store = SecretStore::open(&data, KeySource::File(key.clone()))?;
        let store_open = t.elapsed();
        let t = Instant::now();
        let runtime = Runtime::open(store.clone(), &data, RuntimeConfig::default())?;
        let runtime_open = t.elapsed();
        let stats = runtime.stats();
        ensure!(
            stats.compiled == 0,
            "restart compiled {} modules; artifacts should make that 0",
            stats.compiled
        );
        let restart = Restart {
            store_open,
            runtime_open,
            deployments: stats.deployments,
            loaded_from_artifact: stats.loaded_from_artifact,
        };
        let fixture = Keyhole {
            runtime,
            store,
            data,
            key,
            _dir,
        };
        Ok((fixture, restart))
    }
}

/// Creates a store in `data` keyed by a new key file `key` (which must be
/// outside `data`), environment `prod` with `SLACK_TOKEN`, and a runtime with
/// `module` deployed under `listeners` names. Returns the deploy time too.
pub fn setup(
    data: &Path,
    key: &Path,
    module: &[u8],
    listeners: usize,
) -> Result<(SecretStore, Runtime, Duration)> {
    SecretStore::init_key_file(key)?;
    let store = SecretStore::open(data, KeySource::File(key.to_owned()))?;
    store.create_environment(ENVIRONMENT)?;
    store.set_secret(
        &Scope::Environment(ENVIRONMENT.into()),
        SECRET_NAME,
        &SecretValue::new(SECRET_VALUE.into()),
    )?;
    let runtime = Runtime::open(store.clone(), data, RuntimeConfig::default())?;
    let start = Instant::now();
    for i in 0..listeners {
        let name = if listeners == 1 {
            "bench".to_owned()
        } else {
            format!("bench-{i:04}")
        };
        runtime.deploy(DeploySpec::new(&name, ENVIRONMENT), module)?;
    }
    Ok((store, runtime, start.elapsed()))
}

/// Environment of the bystander deployments ([`add_bystanders`]).
pub const BYSTANDER_ENVIRONMENT: &str = "elsewhere";

/// Deploys `module` `n` times to another environment, where no benchmark
/// event goes: what it costs an event that other tenants deploy listeners.
pub fn add_bystanders(kh: &Keyhole, module: &[u8], n: usize) -> Result<()> {
    kh.store.create_environment(BYSTANDER_ENVIRONMENT)?;
    for i in 0..n {
        let spec = DeploySpec::new(&format!("bystander-{i:04}"), BYSTANDER_ENVIRONMENT);
        kh.runtime.deploy(spec, module)?;
    }
    Ok(())
}

/// A fresh event for the benchmark topic.
pub fn event() -> Event {
    Event::new(TOPIC, ENVIRONMENT, None)
}

/// Checks every run of an event succeeded with the right fingerprint.
pub fn check(records: &[RunRecord], expected_runs: usize) -> Result<()> {
    ensure!(
        records.len() == expected_runs,
        "{} runs, expected {expected_runs}",
        records.len()
    );
    let want = crate::floor::fingerprint(SECRET_VALUE);
    for r in records {
        match &r.outcome {
            Outcome::Ok { value } if *value == want => {}
            other => bail!("listener {} ended {other:?}", r.listener),
        }
    }
    Ok(())
}

/// One event through `emit_blocking`, timed (the event is built untimed).
pub fn timed_emit(rt: &Runtime, samples: &mut Samples, runs: usize) -> Result<()> {
    let ev = event();
    let records = samples.time(|| rt.emit_blocking(&ev))?;
    check(&records, runs)
}

/// `store.resolve` alone: policy-free secret read (sealed cache + AES-GCM open).
pub fn secret_read(store: &SecretStore, iterations: usize) -> Result<Samples> {
    let mut s = Samples::with_capacity(iterations);
    for _ in 0..iterations / 10 {
        store.resolve(ENVIRONMENT, None, SECRET_NAME)?;
    }
    for _ in 0..iterations {
        let r = s.time(|| store.resolve(ENVIRONMENT, None, SECRET_NAME))?;
        ensure!(r.value.expose() == SECRET_VALUE, "resolved the wrong value");
    }
    Ok(s)
}

/// What one `get-secret` call's audit entry costs the call: accepting the
/// entry into the log's buffer (the writer thread chains, authenticates
/// and writes it in the background, batched).
pub fn audit_entry(rt: &Runtime, iterations: usize) -> Result<Samples> {
    use keyhole_audit::{ReadOutcome, ResolvedScope, SecretRead};
    let log = rt
        .audit()
        .context("the runtime has no audit log (sealed store?)")?
        .clone();
    let entry = |time_ms| SecretRead {
        time_ms,
        event_id: "ev_0123456789abcdef0123456789abcdef",
        topic: "bench",
        deployment: "bench-listener",
        module_sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        name: SECRET_NAME,
        requested: None,
        resolved: Some(ResolvedScope {
            space: false,
            id: ENVIRONMENT,
            provenance: "environment",
            version: 1,
        }),
        injected: None,
        outcome: ReadOutcome::Ok,
        reason: None,
    };
    let mut s = Samples::with_capacity(iterations);
    for i in 0..iterations / 10 {
        log.secret_read(&entry(i as u64))
            .map_err(|e| anyhow::anyhow!("audit: {}", e.0))?;
    }
    for i in 0..iterations {
        s.time(|| log.secret_read(&entry(i as u64)))
            .map_err(|e| anyhow::anyhow!("audit: {}", e.0))?;
    }
    Ok(s)
}

/// Events per second with `threads` threads each looping `emit_blocking`
/// (on one shared runtime; clones share everything) for `span`.
pub fn throughput(rt: &Runtime, threads: usize, span: Duration) -> Result<f64> {
    crate::stats::throughput(threads, span, || check(&rt.emit_blocking(&event())?, 1))
}

/// One event per iteration through the async `emit` (runs on tokio's
/// blocking pool, in parallel across listeners), as the daemon does.
pub fn timed_emit_async(
    tokio: &tokio::runtime::Runtime,
    rt: &Runtime,
    samples: &mut Samples,
    runs: usize,
) -> Result<()> {
    let ev = event();
    let records = samples
        .time(|| tokio.block_on(rt.emit(ev)))
        .context("emit")?;
    check(&records, runs)
}
