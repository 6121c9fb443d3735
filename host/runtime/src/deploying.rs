//! Deploying, undeploying and loading: the operations that change which
//! listeners are ready to run.
//!
//! Each deployment is kept as a pre-linked [`Listener`] so an event costs
//! one instantiation, never a link or a compile; the link happens here, at
//! deploy and at open. Deployment records live in the bucket
//! `deployments`, by name (`deploy_record.rs`); writes to it are flushed
//! before `deploy` and `undeploy` return, and every check runs before
//! anything is written. After writing, a deploy checks its scope once more
//! (its fence): a deletion of the scope that began meanwhile may already
//! have undeployed the scope's listeners, so the deploy puts back what it
//! replaced and fails (`lifecycle.rs`).
//!
//! A deployment's grants are bound to the module they were given to: a
//! deploy binds the spec's grants to the module deployed, and
//! [`Runtime::deploy_keeping_grants`] carries the previous deployment's
//! over to a new module. What a run may read follows from the binding
//! (`access.rs`), decided here once rather than per event.

use std::sync::Arc;

use keyhole_store::Scope;

use wasmtime::component::Component;

use crate::access::Access;
use crate::artifacts::sha256_hex;
use crate::deploy::{self, DeploySpec, Deployment};
use crate::deploy_record;
use crate::deployments::{Deployments, ReadyDeployment};
use crate::error::RuntimeError;
use crate::http::AllowedOrigin;
use crate::inject::Rules;
use crate::run::call::Listener;
use crate::runtime::Runtime;
use crate::secrets::Reader;

/// How often a deploy or undeploy that lost a race for its name's record
/// tries again.
const REPLACE_ATTEMPTS: usize = 16;

/// What [`Runtime::deploy_replacing`] did.
#[derive(Clone, Debug)]
pub struct Deployed {
    pub deployment: Deployment,
    /// The module hash of the deployment of the same name it replaced;
    /// `None` on a first deploy.
    pub previous_module_hash: Option<String>,
}

impl Runtime {
    /// Makes every stored deployment ready to run (at open).
    pub(crate) fn load_all(&self) -> Result<(), RuntimeError> {
        let mut index = Deployments::default();
        for (_, entry) in self.inner.deployment_records.scan(b"")? {
            let record = deploy_record::decode(&entry.value)?;
            let component = self.inner.artifacts.load(&record.module_hash)?;
            index.insert(Arc::new(self.prepare(record, &component)?));
        }
        *self
            .inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index;
        Ok(())
    }

    /// Links `component` for `record` and checks it is a listener. Grants
    /// given to another module than `record`'s are not applied: no extra
    /// scopes, and no origin allowed (wasi:http is still linked, so the
    /// module loads, but every request is denied).
    pub(crate) fn prepare(
        &self,
        record: Deployment,
        component: &Component,
    ) -> Result<ReadyDeployment, RuntimeError> {
        let origins = deploy::check_spec(&record.spec)?;
        let http = !origins.is_empty();
        deploy::check_imports(&self.inner.engine, component, http)?;
        let access = Access::of(&record)?;
        // Injections are grants: none for a module they were not given to
        // (its requests go nowhere anyway); the names stay withheld.
        let inject = match access.unbound {
            None => Rules::of(&record.spec.inject).map_err(RuntimeError::InvalidSpec)?,
            Some(_) => None,
        };
        let origins: Arc<[AllowedOrigin]> = if access.unbound.is_none() {
            origins.into()
        } else {
            Arc::new([])
        };
        let linker = if http {
            &self.inner.http_linker
        } else {
            &self.inner.linker
        };
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let pure = deploy::imports_only_keyhole(&self.inner.engine, component);
        let listener = Listener::new(instance_pre, pure)?;
        let name: Arc<str> = record.spec.name.as_str().into();
        let reader = Arc::new(Reader {
            environment: record.spec.environment.as_str().into(),
            access: Arc::new(access),
            deployment: name.clone(),
            module_hash: record.module_hash.as_str().into(),
        });
        Ok(ReadyDeployment {
            topics: crate::topics::TopicFilter::new(&record.spec.topics)?,
            http,
            origins,
            inject,
            space: record.spec.space.as_deref().map(Into::into),
            name,
            reader,
            listener,
            record,
        })
    }

    /// Validates and stores a deployment, replacing one of the same name.
    /// Its grants are exactly those `spec` states, bound to `module`.
    /// Nothing is written unless every check passes.
    /// [`Runtime::deploy_replacing`] also says what it replaced.
    pub fn deploy(&self, spec: DeploySpec, module: &[u8]) -> Result<Deployment, RuntimeError> {
        Ok(self.deploy_replacing(spec, module)?.deployment)
    }

    /// [`Runtime::deploy`], reporting the module hash of the deployment of
    /// the same name it replaced, if any.
    pub fn deploy_replacing(
        &self,
        spec: DeploySpec,
        module: &[u8],
    ) -> Result<Deployed, RuntimeError> {
        self.deploy_checked(spec, module, None)
    }

    /// Deploys `module` as [`Runtime::deploy_replacing`] does, with the
    /// grants of `previous`, the deployment of the same name now stored,
    /// bound to the new module. `spec` must state no grants of its own. If
    /// another deploy or undeploy replaced `previous` meanwhile (on this
    /// host or another), nothing is written ([`RuntimeError::Changed`]):
    /// the grants kept are exactly those the caller saw (and checked).
    pub fn deploy_keeping_grants(
        &self,
        mut spec: DeploySpec,
        module: &[u8],
        previous: &Deployment,
    ) -> Result<Deployed, RuntimeError> {
        if spec.has_grants() {
            return Err(RuntimeError::InvalidSpec(
                "keeping the previous deployment's grants replaces them all: state grants, \
                 or keep them, not both"
                    .into(),
            ));
        }
        if previous.spec.name != spec.name {
            return Err(RuntimeError::InvalidSpec(format!(
                "the grants kept must be those of listener {}",
                spec.name
            )));
        }
        spec.keep_grants_of(&previous.spec);
        self.deploy_checked(spec, module, Some(previous))
    }

    /// A deploy; with `expected`, only if the stored record of the name is
    /// still that deployment when ours replaces it.
    fn deploy_checked(
        &self,
        spec: DeploySpec,
        module: &[u8],
        expected: Option<&Deployment>,
    ) -> Result<Deployed, RuntimeError> {
        deploy::check_spec(&spec)?;
        self.check_scopes(&spec)?;
        deploy::check_header(module)?;
        // Before compiling, and for a module already compiled too: the
        // deployment's own memory limit may be what it does not fit.
        crate::needs::check(module, &spec.limits)?;
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
            grants_sha256: module_hash.clone(),
            module_hash,
            deployed_at_ms: crate::now_ms(),
        };
        let ready = self.prepare(record.clone(), &component)?;
        if let Some(artifact) = artifact {
            self.inner
                .artifacts
                .persist(&record.module_hash, module, &artifact, &component)?;
        }
        let bytes = deploy_record::encode(&record)?;
        let _writing = self.writing();
        let (previous, revision) = self.replace_record(&record.spec.name, &bytes, expected)?;
        // The fence: a deletion that marked the scope after `check_scopes`
        // may have undeployed its listeners already; put back what was
        // there and answer that the scope is gone.
        let spec = &record.spec;
        if let Err(e) = self
            .inner
            .store
            .check_scope(&spec.environment, spec.space.as_deref())
        {
            self.restore_record(&spec.name, previous.as_ref(), revision)?;
            return Err(e.into());
        }
        self.inner.deployment_records.flush()?;
        self.inner
            .deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Arc::new(ready));
        let previous_module_hash = previous
            .and_then(|old| deploy_record::decode(&old).ok())
            .map(|old| old.module_hash);
        Ok(Deployed {
            deployment: record,
            previous_module_hash,
        })
    }

    /// Writes the deployment record `name` (compare-and-set, so two hosts
    /// deploying one name each learn what they replaced); with `expected`,
    /// only over a record of that deployment. Returns the record it
    /// replaced and the revision written.
    fn replace_record(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Option<&Deployment>,
    ) -> Result<(Option<Vec<u8>>, keyhole_kv::Revision), RuntimeError> {
        let records = &self.inner.deployment_records;
        for _ in 0..REPLACE_ATTEMPTS {
            let old = records.get(name.as_bytes())?;
            if let Some(expected) = expected {
                let stored = old.as_ref().map(|e| deploy_record::decode(&e.value));
                if !matches!(&stored, Some(Ok(d)) if d == expected) {
                    return Err(RuntimeError::Changed(format!(
                        "listener {name} was deployed or removed by someone else meanwhile"
                    )));
                }
            }
            let written = match &old {
                Some(e) => records.update(name.as_bytes(), bytes, e.revision)?,
                None => records.create(name.as_bytes(), bytes)?,
            };
            if let Some(revision) = written.written() {
                return Ok((old.map(|e| e.value), revision));
            }
        }
        Err(RuntimeError::Store(keyhole_store::StoreError::Contended(
            format!("listener {name}"),
        )))
    }

    /// Undoes [`Runtime::replace_record`] at `revision`: the old record
    /// back, or none. A conflict means a later deploy or undeploy of the
    /// name has replaced ours, and it stands.
    fn restore_record(
        &self,
        name: &str,
        previous: Option<&Vec<u8>>,
        revision: keyhole_kv::Revision,
    ) -> Result<(), RuntimeError> {
        let records = &self.inner.deployment_records;
        let _ = match previous {
            Some(old) => records.update(name.as_bytes(), old, revision)?,
            None => records.delete(name.as_bytes(), revision)?,
        };
        records.flush()?;
        Ok(())
    }

    /// The deployment's scope, and every scope it is granted, must exist.
    fn check_scopes(&self, spec: &DeploySpec) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        store.check_scope(&spec.environment, spec.space.as_deref())?;
        for env in &spec.grants.environments {
            store.require_scope(&Scope::Environment(env.clone()))?;
        }
        for space in &spec.grants.spaces {
            store.require_scope(&Scope::Space(space.clone()))?;
        }
        Ok(())
    }

    /// Removes a deployment. Its stored module stays (others may share it).
    pub fn undeploy(&self, name: &str) -> Result<(), RuntimeError> {
        let _writing = self.writing();
        let records = &self.inner.deployment_records;
        // Bounded as a deploy's race is: other hosts rewriting the name
        // without pause must not hold this call forever.
        for _ in 0..REPLACE_ATTEMPTS {
            let Some(entry) = records.get(name.as_bytes())? else {
                return Err(RuntimeError::UnknownListener(name.to_string()));
            };
            if records
                .delete(name.as_bytes(), entry.revision)?
                .written()
                .is_some()
            {
                records.flush()?;
                self.inner
                    .deployments
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
                return Ok(());
            }
        }
        Err(RuntimeError::Store(keyhole_store::StoreError::Contended(
            format!("listener {name}"),
        )))
    }

    /// Held while the deployment records and the in-memory index change
    /// together, so concurrent deploys and undeploys of one name leave them
    /// agreeing. Events never take it.
    pub(crate) fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .deploy_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
