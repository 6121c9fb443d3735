//! What a runtime does when its store's backend is shared with other hosts
//! (cluster mode, `keyhole serve --cluster`):
//!
//! - **Modules** go to the shared bucket `modules` too, in chunks under
//!   their sha256 ([`SharedModules`]), so a host that never saw the upload
//!   can compile a deployment made elsewhere. Compiled artifacts stay on
//!   each host (native code is never shared) with their digests in the
//!   host's own backend.
//! - **Deployments** made or removed on another host reach this one through
//!   a watch of the `deployments` bucket (`follow.rs`); what is not applied
//!   here yet, and how far this host has followed, is what the event queue
//!   asks before it acknowledges an event (`unapplied.rs`).

use std::sync::Arc;

use keyhole_kv::Bucket;
use sha2::{Digest, Sha256};

use crate::error::RuntimeError;
use crate::runs::{Outcome, RunRecord};
use crate::runtime::Runtime;

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

impl Runtime {
    /// Records a `failed` run saying `why` for each listener `event` would
    /// run that has no record of it yet, without running any: for an event
    /// a cluster's queue will not deliver again. That includes the
    /// listeners whose deploy from another host is not applied here but
    /// whose record could be read (`unapplied.rs`); one whose record this
    /// host cannot read is logged, as it cannot be named.
    pub fn give_up(
        &self,
        event: &crate::Event,
        why: &str,
    ) -> Result<Vec<crate::runs::RunRecord>, RuntimeError> {
        let (applied, unapplied, unknown) =
            self.with_unapplied(event, || self.unrun_targets(event))?;
        if unknown {
            tracing::warn!(
                event = %event.id,
                "giving up on an event while some deployments from other hosts are not readable here: their listeners get no failed run"
            );
        }
        // The applied ones have no record of it (`unrun_targets` asked the
        // run log); an unapplied one is asked here, and named once.
        let mut deployments: Vec<&crate::deploy::Deployment> =
            applied.iter().map(|t| &t.record).collect();
        for u in &unapplied {
            let name = &u.record.spec.name;
            if !deployments.iter().any(|d| &d.spec.name == name)
                && !self.inner.runs.recorded(&event.id, name)?
            {
                deployments.push(&u.record);
            }
        }
        let mut out = Vec::with_capacity(deployments.len());
        for deployment in deployments {
            let outcome = Outcome::Failed {
                message: why.to_owned(),
            };
            let mut record = RunRecord::not_run(event, deployment, outcome, crate::now_ms(), 0);
            self.inner.runs.append(&mut record)?;
            out.push(record);
        }
        Ok(out)
    }
}
