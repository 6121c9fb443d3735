//! The runtime's part of the audit log: opening it with the store's key,
//! and the entry each `get-secret` call leaves (written in `secrets.rs`).
//!
//! The log lives in `DATA/audit/`, its head in the bucket `audit`. Its key
//! comes from the store, so a sealed store has no audit log, and then
//! nothing that must be audited (secret reads, admin writes) is served.

use std::path::Path;
use std::sync::Arc;

use keyhole_audit::{AuditError, AuditLog};
use keyhole_store::SecretStore;

use crate::error::RuntimeError;

/// The bucket holding the audit chain's head.
pub const HEADS_BUCKET: &str = "audit";

/// Opens the audit log of `data_dir`, keeping about `keep` entries; `None`
/// while `store` is sealed.
pub fn open(
    store: &SecretStore,
    data_dir: &Path,
    keep: usize,
) -> Result<Option<Arc<AuditLog>>, RuntimeError> {
    open_on(store, &**store.backend(), data_dir, keep)
}

/// [`open`], with the chain's head in `heads` (in cluster mode the host's
/// own backend: each host's log is its own chain, in its own files, so
/// its head must not be another host's).
pub fn open_on(
    store: &SecretStore,
    heads: &dyn keyhole_kv::Backend,
    data_dir: &Path,
    keep: usize,
) -> Result<Option<Arc<AuditLog>>, RuntimeError> {
    if store.is_sealed() {
        return Ok(None);
    }
    let root = store.audit_root_key()?;
    let heads = heads.bucket(HEADS_BUCKET)?;
    let dir = data_dir.join("audit");
    let log = AuditLog::open(&dir, &root, heads, keep).map_err(|e| audit_error(&dir, e))?;
    Ok(Some(Arc::new(log)))
}

/// An audit log failure as a runtime error.
pub fn audit_error(dir: &Path, e: AuditError) -> RuntimeError {
    match e {
        AuditError::Io(io) => RuntimeError::io(dir, io),
        AuditError::Storage(kv) => kv.into(),
        AuditError::Corrupt { .. } => RuntimeError::Corrupt(e.to_string()),
    }
}
