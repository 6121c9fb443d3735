//! The [`Runtime`]: deployments on disk and in memory, ready to run.
//!
//! Each deployment is kept as a pre-linked [`Listener`] so an event costs
//! one instantiation, never a link or a compile. Deployment records live in
//! the sled tree `deployments`; writes to it are flushed before `deploy` and
//! `undeploy` return.

use std::path::Path;
use std::sync::{Arc, RwLock};

use keyhole_store::SecretStore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::artifacts::{Artifacts, sha256_hex};
use crate::deploy::{self, DeploySpec, Deployment};
use crate::deployments::Deployments;
use crate::engine::{EngineConfig, EpochTicker, new_engine};
use crate::error::RuntimeError;
use crate::http::AllowedOrigin;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::runs::RunLog;
use crate::sandbox::RunState;

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
    pub engine: EngineConfig,
    /// Runs that may execute at once (across all `emit` calls).
    pub max_concurrent_runs: usize,
    /// Run records kept; older ones are trimmed.
    pub max_run_records: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        RuntimeConfig {
            engine: EngineConfig::default(),
            max_concurrent_runs: cores * 4,
            max_run_records: 100_000,
        }
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

/// A deployment ready to run.
pub(crate) struct Loaded {
    pub(crate) record: Deployment,
    pub(crate) listener: Listener,
    pub(crate) topics: crate::topics::TopicFilter,
    pub(crate) origins: Arc<[AllowedOrigin]>,
    pub(crate) grants: Arc<deploy::Grants>,
    pub(crate) environment: Arc<str>,
    pub(crate) space: Option<Arc<str>>,
}

pub(crate) struct Inner {
    pub(crate) store: SecretStore,
    pub(crate) engine: Engine,
    linker: Linker<RunState>,
    http_linker: Linker<RunState>,
    artifacts: Artifacts,
    deployments_tree: sled::Tree,
    pub(crate) deployments: RwLock<Deployments>,
    /// Serializes changes to `deployments_tree` + `deployments`.
    deploy_writes: std::sync::Mutex<()>,
    pub(crate) runs: RunLog,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// The async runtime `emit_blocking` drives runs on, built on first use.
    pub(crate) blocking: BlockingRuntime,
    _ticker: EpochTicker,
}

/// keyhole's listener runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl Runtime {
    /// Opens the runtime on `store`'s database, with modules and artifacts
    /// under `data_dir`, and makes every stored deployment ready to run.
    pub fn open(
        store: SecretStore,
        data_dir: &Path,
        config: RuntimeConfig,
    ) -> Result<Self, RuntimeError> {
        let engine = new_engine(&config.engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::engine)?;
        crate::secrets::add_to_linker(&mut linker).map_err(RuntimeError::engine)?;
        let mut http_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(RuntimeError::engine)?;

        let db = store.db().clone();
        let runtime = Runtime {
            inner: Arc::new(Inner {
                artifacts: Artifacts::open(&engine, data_dir, &db)?,
                deployments_tree: db.open_tree("deployments")?,
                runs: RunLog::open(&data_dir.join("runs"), config.max_run_records)?,
                deployments: RwLock::default(),
                deploy_writes: std::sync::Mutex::default(),
                metrics: Arc::default(),
                permits: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_runs.max(1),
                )),
                _ticker: EpochTicker::start(engine.clone()),
                blocking: BlockingRuntime::default(),
                store,
                engine,
                linker,
                http_linker,
            }),
        };
        runtime.load_all()?;
        Ok(runtime)
    }

    fn load_all(&self) -> Result<(), RuntimeError> {
        let mut loaded = Deployments::default();
        for item in self.inner.deployments_tree.iter() {
            let (_, bytes) = item?;
            let record: Deployment = postcard::from_bytes(&bytes)
                .map_err(|e| RuntimeError::Corrupt(format!("deployment record: {e}")))?;
            let component = self.inner.artifacts.load(&record.module_hash)?;
            loaded.insert(Arc::new(self.prepare(record, &component)?));
        }
        *self
            .inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// Links `component` for `record` and checks it is a listener.
    fn prepare(&self, record: Deployment, component: &Component) -> Result<Loaded, RuntimeError> {
        let origins: Arc<[AllowedOrigin]> = deploy::check_spec(&record.spec)?.into();
        deploy::check_imports(&self.inner.engine, component, !origins.is_empty())?;
        let linker = if origins.is_empty() {
            &self.inner.linker
        } else {
            &self.inner.http_linker
        };
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let pure = deploy::imports_only_keyhole(&self.inner.engine, component);
        let listener = Listener::new(instance_pre, pure)?;
        Ok(Loaded {
            topics: crate::topics::TopicFilter::new(&record.spec.topics)?,
            origins,
            grants: Arc::new(record.spec.grants.clone()),
            environment: record.spec.environment.as_str().into(),
            space: record.spec.space.as_deref().map(Into::into),
            listener,
            record,
        })
    }

    /// Validates and stores a deployment, replacing one of the same name.
    /// Nothing is written unless every check passes.
    pub fn deploy(&self, spec: DeploySpec, module: &[u8]) -> Result<Deployment, RuntimeError> {
        deploy::check_spec(&spec)?;
        self.check_scopes(&spec)?;
        deploy::check_header(module)?;
        let module_hash = sha256_hex(module);
        let (component, artifact) = match self.inner.artifacts.load_cached(&module_hash) {
            Some(c) => (c, None),
            None => {
                let (c, a) = self.inner.artifacts.compile(module)?;
                (c, Some(a))
            }
        };
        let record = Deployment {
            spec,
            module_hash,
            deployed_at_ms: crate::now_ms(),
        };
        let loaded = self.prepare(record.clone(), &component)?;
        if let Some(artifact) = artifact {
            self.inner
                .artifacts
                .persist(&record.module_hash, module, &artifact, &component)?;
        }
        let bytes =
            postcard::to_allocvec(&record).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        let _writing = self.writing();
        self.inner
            .deployments_tree
            .insert(record.spec.name.as_bytes(), bytes)?;
        self.inner.deployments_tree.flush()?;
        self.inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Arc::new(loaded));
        Ok(record)
    }

    fn check_scopes(&self, spec: &DeploySpec) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        if store.environment(&spec.environment)?.is_none() {
            return Err(
                keyhole_store::StoreError::UnknownEnvironment(spec.environment.clone()).into(),
            );
        }
        if let Some(space) = &spec.space {
            match store.space(space)? {
                None => return Err(keyhole_store::StoreError::UnknownSpace(space.clone()).into()),
                Some(info) if info.environment != spec.environment => {
                    return Err(keyhole_store::StoreError::SpaceNotInEnvironment {
                        space: space.clone(),
                        environment: spec.environment.clone(),
                    }
                    .into());
                }
                Some(_) => {}
            }
        }
        for env in &spec.grants.environments {
            if store.environment(env)?.is_none() {
                return Err(keyhole_store::StoreError::UnknownEnvironment(env.clone()).into());
            }
        }
        for space in &spec.grants.spaces {
            if store.space(space)?.is_none() {
                return Err(keyhole_store::StoreError::UnknownSpace(space.clone()).into());
            }
        }
        Ok(())
    }

    /// Removes a deployment. Its stored module stays (others may share it).
    pub fn undeploy(&self, name: &str) -> Result<(), RuntimeError> {
        let _writing = self.writing();
        if self
            .inner
            .deployments_tree
            .remove(name.as_bytes())?
            .is_none()
        {
            return Err(RuntimeError::UnknownListener(name.to_string()));
        }
        self.inner.deployments_tree.flush()?;
        self.inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    /// Held while the deployments tree and the in-memory index change
    /// together, so concurrent deploys and undeploys of one name leave them
    /// agreeing. Events never take it.
    fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .deploy_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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

    /// Recent run records, newest first.
    pub fn runs(
        &self,
        listener: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::RunRecord>, RuntimeError> {
        self.inner.runs.recent(listener, limit)
    }

    pub fn store(&self) -> &SecretStore {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
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

    /// Flushes run records and everything else to disk.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        self.inner.runs.sync()?;
        self.inner.store.db().flush()?;
        Ok(())
    }
}
