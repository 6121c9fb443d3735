//! What a runtime does when its store's backend is shared with other hosts
//! (cluster mode, `keyhole serve --cluster`):
//!
//! - **Modules** go to the shared bucket `modules` too, in chunks under
//!   their sha256 ([`SharedModules`]), so a host that never saw the upload
//!   can compile a deployment made elsewhere. Compiled artifacts stay on
//!   each host (native code is never shared) with their digests in the
//!   host's own backend.
//! - **Deployments** made or removed on another host reach this one through
//!   a watch of the `deployments` bucket ([`follow_deployments`]): for each
//!   change, the name's current record is read and the index made to match
//!   it, so changes applied out of order or twice still end in the bucket's
//!   state.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keyhole_kv::Bucket;
use sha2::{Digest, Sha256};

use crate::deploy_record;
use crate::error::RuntimeError;
use crate::runtime::{Inner, Runtime};

/// Bytes per chunk: well under NATS's default 1 MB message limit.
const CHUNK: usize = 256 << 10;

/// Modules by sha256 in a shared bucket: chunks `HASH/000000`…, then the
/// manifest `HASH` (the chunk count), written last, so a manifest means
/// every chunk is there.
pub(crate) struct SharedModules {
    bucket: Arc<dyn Bucket>,
}

impl SharedModules {
    pub(crate) fn new(bucket: Arc<dyn Bucket>) -> Self {
        SharedModules { bucket }
    }

    pub(crate) fn put(&self, hash: &str, module: &[u8]) -> Result<(), RuntimeError> {
        if self.bucket.get(hash.as_bytes())?.is_some() {
            return Ok(());
        }
        let mut count = 0usize;
        for (i, chunk) in module.chunks(CHUNK).enumerate() {
            self.bucket
                .put(format!("{hash}/{i:06}").as_bytes(), chunk)?;
            count = i + 1;
        }
        self.bucket
            .put(hash.as_bytes(), count.to_string().as_bytes())?;
        self.bucket.flush()?;
        Ok(())
    }

    /// The module, checked against its hash; `None` if no host stored it.
    pub(crate) fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, RuntimeError> {
        let Some(manifest) = self.bucket.get(hash.as_bytes())? else {
            return Ok(None);
        };
        let corrupt = |what: &str| RuntimeError::Corrupt(format!("shared module {hash}: {what}"));
        let count: usize = std::str::from_utf8(&manifest.value)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| corrupt("unreadable manifest"))?;
        let mut module = Vec::new();
        for i in 0..count {
            let chunk = self
                .bucket
                .get(format!("{hash}/{i:06}").as_bytes())?
                .ok_or_else(|| corrupt("a chunk is missing"))?;
            module.extend_from_slice(&chunk.value);
        }
        if hex::encode(Sha256::digest(&module)) != hash {
            return Err(corrupt("does not match its hash"));
        }
        Ok(Some(module))
    }
}

/// How long the follower waits for a change before checking whether the
/// runtime is still there.
const POLL: Duration = Duration::from_millis(500);

/// Starts the thread that applies other hosts' deploys and undeploys.
///
/// A change that fails to apply (the backend unreachable, a module that
/// cannot be fetched or compiled yet) leaves this host behind: every name
/// is synced again, each poll, until that succeeds, so an undeploy made
/// elsewhere is never left unapplied here. A watch that fails is opened
/// again, and everything synced after.
pub(crate) fn follow_deployments(runtime: &Runtime) -> Result<(), RuntimeError> {
    let first = runtime.inner.deployment_records.watch(0)?;
    let weak: Weak<Inner> = Arc::downgrade(&runtime.inner);
    std::thread::Builder::new()
        .name("keyhole-deploy-follow".into())
        .spawn(move || {
            let mut watch = Some(first);
            let mut behind = false;
            loop {
                let change = match watch.as_mut().map(|w| w.next_timeout(POLL)) {
                    Some(Ok(change)) => change,
                    Some(Err(e)) => {
                        tracing::warn!("watching deployments: {e}; watching again");
                        watch = None;
                        std::thread::sleep(POLL);
                        None
                    }
                    None => None,
                };
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let runtime = Runtime { inner };
                if watch.is_none() {
                    let records = &runtime.inner.deployment_records;
                    match records.watch(records.revision()) {
                        Ok(w) => (watch, behind) = (Some(w), true),
                        Err(e) => {
                            tracing::warn!("watching deployments again: {e}");
                            drop(runtime);
                            std::thread::sleep(POLL);
                            continue;
                        }
                    }
                }
                let name = change
                    .as_ref()
                    .and_then(|c| c.key())
                    .map(String::from_utf8_lossy);
                let result = match (&change, &name) {
                    (Some(_), Some(name)) if !behind => runtime.sync_deployment(name),
                    (None, _) if !behind => continue,
                    // Missed changes, or a change that failed before.
                    _ => runtime.sync_all_deployments(),
                };
                match result {
                    Ok(()) => behind = false,
                    Err(e) => {
                        tracing::warn!(
                            "applying deployment changes from other hosts: {e}; trying again"
                        );
                        behind = true;
                        drop(runtime);
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
        .map_err(|e| RuntimeError::io(std::path::Path::new("keyhole-deploy-follow"), e))?;
    Ok(())
}

impl Runtime {
    /// Makes the index's deployment `name` match its record in the bucket.
    pub(crate) fn sync_deployment(&self, name: &str) -> Result<(), RuntimeError> {
        let _writing = self.writing();
        let stored = match self.inner.deployment_records.get(name.as_bytes())? {
            Some(e) => Some(deploy_record::decode(&e.value)?),
            None => None,
        };
        let current = self
            .inner
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|d| d.record.clone());
        match (stored, current) {
            (Some(s), Some(c)) if s == c => Ok(()),
            (None, None) => Ok(()),
            (None, Some(_)) => {
                self.inner
                    .deployments
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
                tracing::info!(listener = name, "undeployed on another host");
                Ok(())
            }
            (Some(record), _) => {
                let component = self.inner.artifacts.load(&record.module_hash)?;
                let ready = self.prepare(record, &component)?;
                self.inner
                    .deployments
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(Arc::new(ready));
                tracing::info!(listener = name, "deployed on another host");
                Ok(())
            }
        }
    }

    /// After missed changes: every name in the bucket or the index, synced.
    fn sync_all_deployments(&self) -> Result<(), RuntimeError> {
        let mut names: Vec<String> = self
            .inner
            .deployment_records
            .scan(b"")?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect();
        names.extend(
            self.inner
                .deployments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .all()
                .map(|d| d.name.to_string()),
        );
        names.sort();
        names.dedup();
        for name in names {
            self.sync_deployment(&name)?;
        }
        Ok(())
    }
}

impl Runtime {
    /// Records a `failed` run saying `why` for each listener `event` would
    /// run that has no record of it yet, without running any: for an event
    /// a cluster's queue will not deliver again.
    pub fn give_up(
        &self,
        event: &crate::Event,
        why: &str,
    ) -> Result<Vec<crate::runs::RunRecord>, RuntimeError> {
        let mut out = Vec::new();
        for target in self.accept(event)? {
            let outcome = crate::runs::Outcome::Failed {
                message: why.to_owned(),
            };
            let mut record =
                crate::runs::RunRecord::not_run(event, &target.record, outcome, crate::now_ms(), 0);
            self.inner.runs.append(&mut record)?;
            out.push(record);
        }
        Ok(out)
    }
}
