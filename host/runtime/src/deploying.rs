//! Deploying, undeploying and loading: the operations that change which
//! listeners are ready to run.
//!
//! Each deployment is kept as a pre-linked [`Listener`] so an event costs
//! one instantiation, never a link or a compile; the link happens here, at
//! deploy and at open. Deployment records live in the sled tree
//! `deployments`; writes to it are flushed before `deploy` and `undeploy`
//! return, and every check runs before anything is written.

use std::sync::Arc;

use wasmtime::component::Component;

use crate::artifacts::sha256_hex;
use crate::deploy::{self, DeploySpec, Deployment};
use crate::deployments::{Deployments, ReadyDeployment};
use crate::error::RuntimeError;
use crate::http::AllowedOrigin;
use crate::run::call::Listener;
use crate::runtime::Runtime;

impl Runtime {
    /// Makes every stored deployment ready to run (at open).
    pub(crate) fn load_all(&self) -> Result<(), RuntimeError> {
        let mut index = Deployments::default();
        for item in self.inner.deployments_tree.iter() {
            let (_, bytes) = item?;
            let record: Deployment = postcard::from_bytes(&bytes)
                .map_err(|e| RuntimeError::Corrupt(format!("deployment record: {e}")))?;
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

    /// Links `component` for `record` and checks it is a listener.
    fn prepare(
        &self,
        record: Deployment,
        component: &Component,
    ) -> Result<ReadyDeployment, RuntimeError> {
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
        Ok(ReadyDeployment {
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
        let ready = self.prepare(record.clone(), &component)?;
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
            .insert(Arc::new(ready));
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
}
