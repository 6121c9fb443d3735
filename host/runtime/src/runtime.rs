//! The [`Runtime`] handle: what it owns, how it opens, and what it reports.
//!
//! Everything the runtime does is a method on this one cheap-to-clone
//! handle, but the work lives by phase in other files: deploying and
//! loading in `deploying.rs`, matching and emitting in `dispatch.rs`, one
//! run in `run/`. This file only holds the shared state they all read
//! ([`Inner`]), so that opening the runtime (engine, linkers, artifacts,
//! run log, the epoch ticker) is in one place and in one order.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keyhole_audit::AuditLog;
use keyhole_store::SecretStore;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::artifacts::Artifacts;
use crate::budget::{MemoryBudget, MemoryGauges, MemoryStats};
use crate::deploy::Deployment;
use crate::deployments::Deployments;
use crate::engine::{EngineConfig, EpochTicker, new_engine};
use crate::error::RuntimeError;
use crate::metrics::Metrics;
use crate::runs::jsonl::{JsonlRunLog, Retention};
use crate::runs::{RunLog, RunPage, RunQuery, RunRecord};
use crate::sandbox::RunState;
use crate::secrets::SecretsHost;

/// The bucket of deployment records (name -> `Deployment`, as JSON:
/// `deploy_record.rs`).
const DEPLOYMENTS_BUCKET: &str = "deployments";
/// A tokio runtime for callers outside of one (`emit_blocking`: the CLI, the
/// benchmark, tests). Futures run on the calling thread via `block_on`; the
/// runtime supplies the timers and I/O that WASI and outbound HTTP need.
#[derive(Default)]
pub(crate) struct BlockingRuntime(std::sync::OnceLock<tokio::runtime::Runtime>);

impl BlockingRuntime {
    pub(crate) fn get(&self) -> Result<&tokio::runtime::Runtime, RuntimeError> {
        if let Some(rt) = self.0.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyhole-io")
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Engine(format!("starting the async runtime: {e}")))?;
        Ok(self.0.get_or_init(|| rt))
    }
}

impl Drop for BlockingRuntime {
    /// Dropping a tokio runtime blocks, which panics inside another runtime
    /// (a `Runtime` may be dropped last from an async task); don't wait.
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runtime-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The pool; [`RuntimeConfig::with_max_memory`] sizes it to the budget.
    pub engine: EngineConfig,
    /// Runs that may execute at once (across all `emit` calls).
    pub max_concurrent_runs: usize,
    /// Run records kept: readers see only the newest this many, and older
    /// ones are deleted (by the default run log; see
    /// [`Runtime::open_with_run_log`]).
    pub max_run_records: usize,
    /// If set, run records are kept only this long after their run
    /// started (same terms as `max_run_records`).
    pub max_run_age: Option<Duration>,
    /// Audit entries kept; older segments are deleted, and the deletion is
    /// itself recorded.
    pub max_audit_entries: usize,
    /// The host memory budget: live runs' memory limits plus what the pool
    /// may keep resident (see `budget.rs`). Defaults to
    /// [`default_max_memory`](crate::default_max_memory), half the
    /// machine's memory.
    pub max_memory_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        RuntimeConfig {
            engine: EngineConfig::default(),
            max_concurrent_runs: cores * 4,
            max_run_records: 100_000,
            max_run_age: None,
            max_audit_entries: 10_000_000,
            max_memory_bytes: 0,
        }
        .with_max_memory(crate::machine::default_max_memory())
    }
}

impl RuntimeConfig {
    /// This config with a memory budget of `bytes`, and a pool sized to
    /// it ([`EngineConfig::for_budget`], but never smaller than
    /// `max_concurrent_runs` allows for).
    pub fn with_max_memory(mut self, bytes: u64) -> Self {
        let concurrent = u32::try_from(self.max_concurrent_runs).unwrap_or(u32::MAX);
        let pool = EngineConfig::for_budget(bytes).pool_instances;
        self.engine.pool_instances = pool.max(concurrent.min(crate::engine::MAX_POOL_INSTANCES));
        self.max_memory_bytes = bytes;
        self
    }
}

/// Counters that show whether restarts reuse compiled artifacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Modules compiled by this process (deploys, or artifacts that failed
    /// verification).
    pub compiled: u64,
    /// Artifacts loaded from disk without compiling.
    pub loaded_from_artifact: u64,
    pub deployments: usize,
}

pub(crate) struct Inner {
    pub(crate) store: SecretStore,
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<RunState>,
    pub(crate) http_linker: Linker<RunState>,
    pub(crate) artifacts: Artifacts,
    /// Deployment records by name (bucket `deployments`).
    pub(crate) deployment_records: Arc<dyn keyhole_kv::Bucket>,
    pub(crate) deployments: RwLock<Deployments>,
    /// Serializes changes to `deployment_records` + `deployments`.
    pub(crate) deploy_writes: std::sync::Mutex<()>,
    /// Cluster mode: how far other hosts' deployment changes are applied
    /// here, and which are not (`follow.rs`, `unapplied.rs`).
    pub(crate) followed: crate::unapplied::Followed,
    /// Where run records go: the JSONL segment files unless chosen at open.
    /// Declared before `audit`, so it is dropped (and has written what it
    /// holds, after the audit entries its runs wait for) first.
    pub(crate) runs: Arc<dyn RunLog>,
    /// The audit log; `None` while the store is sealed (nothing can be
    /// audited then, so secret reads and admin writes are refused).
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) metrics: Arc<Metrics>,
    /// The store, metrics and audit log, as every run's secret reads use
    /// them (one shared reference per run).
    pub(crate) secrets: Arc<SecretsHost>,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// Every run reserves its memory limit here first (`budget.rs`).
    pub(crate) budget: Arc<MemoryBudget>,
    memory: MemoryGauges,
    /// The async runtime `emit_blocking` drives runs on, built on first use.
    pub(crate) blocking: BlockingRuntime,
    _ticker: EpochTicker,
}

/// keyhole's listener runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// The default run log: JSON-lines files under `data_dir/runs`, kept as
/// `config` says, opened once the audit log is.
fn jsonl_runs<'a>(
    data_dir: &'a Path,
    config: &RuntimeConfig,
) -> impl FnOnce(Option<&Arc<AuditLog>>) -> Result<Arc<dyn RunLog>, RuntimeError> + 'a {
    let retention = Retention {
        keep: config.max_run_records,
        max_age: config.max_run_age,
    };
    move |audit| {
        Ok(Arc::new(JsonlRunLog::open(
            &data_dir.join("runs"),
            retention,
            audit.cloned(),
        )?))
    }
}

impl Runtime {
    /// Opens the runtime on `store`'s database, with modules and artifacts
    /// under `data_dir`, and makes every stored deployment ready to run.
    /// Run records go to JSON-lines files under `data_dir/runs`, kept as
    /// `config.max_run_records` and `config.max_run_age` say.
    pub fn open(
        store: SecretStore,
        data_dir: &Path,
        config: RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let runs = jsonl_runs(data_dir, &config);
        Self::open_inner(store, None, data_dir, config, runs)
    }

    /// Like [`Runtime::open`], for a host of a cluster: `store` is on a
    /// backend the hosts share, and `host` is this host's own (artifact
    /// digests). Modules are shared, deployments made on other hosts are
    /// followed (`cluster.rs`), and run records go to the shared bucket
    /// `runs`, one per (event, listener) (`runs/shared.rs`). The audit log
    /// stays in `data_dir`.
    pub fn open_clustered(
        store: SecretStore,
        host: Arc<dyn keyhole_kv::Backend>,
        data_dir: &Path,
        config: RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let bucket = store.backend().bucket("runs")?;
        let keep = config.max_run_records;
        Self::open_inner(store, Some(host), data_dir, config, |audit| {
            Ok(Arc::new(crate::runs::shared::SharedRunLog::new(
                bucket,
                keep,
                audit.cloned(),
            )))
        })
    }

    /// Like [`Runtime::open`], with run records going to `runs` instead of
    /// the JSON-lines files (`config.max_run_records` and
    /// `config.max_run_age` are then the log's business).
    pub fn open_with_run_log(
        store: SecretStore,
        data_dir: &Path,
        config: RuntimeConfig,
        runs: Arc<dyn RunLog>,
    ) -> Result<Self, RuntimeError> {
        Self::open_inner(store, None, data_dir, config, |_| Ok(runs))
    }

    /// `runs` is called where the run log has always been opened: after the
    /// engine, the artifacts and the deployments tree (and the audit log,
    /// which the default run log waits for).
    fn open_inner(
        store: SecretStore,
        host: Option<Arc<dyn keyhole_kv::Backend>>,
        data_dir: &Path,
        config: RuntimeConfig,
        runs: impl FnOnce(Option<&Arc<AuditLog>>) -> Result<Arc<dyn RunLog>, RuntimeError>,
    ) -> Result<Self, RuntimeError> {
        let engine = new_engine(&config.engine)?;
        let budget = Arc::new(MemoryBudget::new(config.max_memory_bytes, &config.engine)?);
        let memory = MemoryGauges::new(budget.clone(), &engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::engine)?;
        crate::secrets::add_to_linker(&mut linker).map_err(RuntimeError::engine)?;
        let mut http_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(RuntimeError::engine)?;

        let backend = store.backend().clone();
        let deployment_records = backend.bucket(DEPLOYMENTS_BUCKET)?;
        // Release 0.1 kept the same records (name -> deployment) in a tree.
        keyhole_kv::migrate_legacy(&*backend, "deployments", &*deployment_records, |k| {
            Ok(k.to_vec())
        })?;
        // In cluster mode the store's backend is shared; what is this
        // host's alone (artifact digests) stays in `host` (`cluster.rs`).
        let shared_modules = match &host {
            Some(_) => Some(crate::cluster::SharedModules::new(
                backend.bucket("modules")?,
            )),
            None => None,
        };
        let artifacts = Artifacts::open(
            &engine,
            data_dir,
            host.as_deref().unwrap_or(&*backend),
            shared_modules,
        )?;
        let audit = match &host {
            Some(host) => {
                crate::audit::open_clustered(&store, &**host, data_dir, config.max_audit_entries)?
            }
            None => crate::audit::open(&store, data_dir, config.max_audit_entries)?,
        };
        let metrics = Arc::new(Metrics::with_collector(Box::new(memory.clone())));
        let secrets = Arc::new(SecretsHost {
            store: store.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
        });
        let runtime = Runtime {
            inner: Arc::new(Inner {
                artifacts,
                deployment_records,
                runs: runs(audit.as_ref())?,
                audit,
                deployments: RwLock::default(),
                deploy_writes: std::sync::Mutex::default(),
                followed: Default::default(),
                metrics,
                secrets,
                permits: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_runs.max(1),
                )),
                budget,
                memory,
                _ticker: EpochTicker::start(engine.clone()),
                blocking: BlockingRuntime::default(),
                store,
                engine,
                linker,
                http_linker,
            }),
        };
        // Cluster mode: the changes up to here are history the index is
        // loaded after (read before the load, so a change written during it
        // is followed as any later one).
        let history = host
            .is_some()
            .then(|| runtime.inner.deployment_records.written().unwrap_or(0));
        runtime.load_all()?;
        runtime.finish_pending_deletions()?;
        if let Some(history) = history {
            crate::follow::follow_deployments(&runtime, history)?;
        }
        Ok(runtime)
    }

    /// Every deployment, by name.
    pub fn deployments(&self) -> Vec<Deployment> {
        let map = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Deployment> = map.all().map(|l| l.record.clone()).collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        out
    }

    /// The deployment called `name`, if there is one.
    pub fn deployment(&self, name: &str) -> Option<Deployment> {
        let map = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(name).map(|d| d.record.clone())
    }

    /// Recent run records, newest first.
    pub fn runs(
        &self,
        listener: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RuntimeError> {
        self.query_runs(&RunQuery::recent(listener, limit))
    }

    /// The run records `query` asks for, newest first.
    pub fn query_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError> {
        self.inner.runs.query(query)
    }

    /// A page of the runs `query` asks for, newest first, with the cursor
    /// of the next page if older runs match too (found by asking for one
    /// more than the page holds).
    pub fn runs_page(&self, query: &RunQuery) -> Result<RunPage, RuntimeError> {
        let mut runs = self.inner.runs.query(&RunQuery {
            limit: query.limit.saturating_add(1),
            ..query.clone()
        })?;
        let more = runs.len() > query.limit;
        runs.truncate(query.limit);
        let next = if more {
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    /// The run with this id, if it is recorded and still kept.
    pub fn run_record(&self, id: u64) -> Result<Option<RunRecord>, RuntimeError> {
        self.inner.runs.get(id)
    }

    /// The audit log, unless the store is sealed.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.inner.audit.as_ref()
    }

    pub fn store(&self) -> &SecretStore {
        &self.inner.store
    }

    /// The metrics, shareable (for callers that count into them too).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The memory budget and what the pool keeps resident, now.
    pub fn memory_stats(&self) -> MemoryStats {
        self.inner.memory.stats()
    }

    pub fn stats(&self) -> RuntimeStats {
        use std::sync::atomic::Ordering::Relaxed;
        RuntimeStats {
            compiled: self.inner.artifacts.compiled.load(Relaxed),
            loaded_from_artifact: self.inner.artifacts.loaded.load(Relaxed),
            deployments: self
                .inner
                .deployments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        }
    }

    /// Flushes the audit log, run records and everything else to disk; an
    /// audit log that cannot write its entries is an error here, not a
    /// quiet loss at shutdown.
    /// Every step is tried (but the run records, which wait for the audit
    /// entries before them, only once those are written); the first
    /// failure is returned, later ones logged.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        let audit = self.inner.audit.as_ref().map_or(Ok(()), |audit| {
            audit
                .sync(std::time::Duration::from_secs(10))
                .map_err(|e| RuntimeError::AuditUnavailable(e.0))
        });
        let runs = match &audit {
            Ok(()) => self.inner.runs.sync(),
            Err(_) => Ok(()), // they would only wait for it
        };
        let steps = [
            ("audit log", audit),
            ("run records", runs),
            (
                "deployment records",
                self.inner.deployment_records.flush().map_err(Into::into),
            ),
            ("secrets", self.inner.store.flush().map_err(Into::into)),
        ];
        let mut first = None;
        for (what, result) in steps {
            match (result, &first) {
                (Ok(()), _) => {}
                (Err(e), None) => first = Some(e),
                (Err(e), Some(_)) => tracing::error!("flushing {what}: {e}"),
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
